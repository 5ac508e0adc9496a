"""Shared by the stack tests: the configurations synthesized once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lib.config import StackConfig
from lib.synthesized import SynthesizedStack

#: What ``make synth`` produces, with a test suffix.
DEFAULT_CONFIG = StackConfig(environment="dev", suffix="ci01")
#: Every non-default flag flipped, so flag behaviour is tested in the same synth.
PRODUCTION_CONFIG = StackConfig(
    environment="prod",
    suffix="ci02",
    az_count=3,
    single_nat_gateway=True,
    kinesis_on_demand=True,
    production=True,
    min_tasks=2,
    state_bucket="tap-terraform-state-example",
    state_kms_key_arn="arn:aws:kms:eu-west-2:123456789012:key/0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7",
    alarm_emails=("oncall@example.com", "plant-ops@example.org"),
    alarm_https_endpoints=("https://hooks.example.com/tap-alarms",),
    producer_principal="arn:aws:iam::210987654321:role/plant-gateways",
    redis_auth_token_version=2,
    rds_os_metrics_log_group=True,
)


@dataclass(frozen=True)
class Synth:
    outdir: Path
    default: SynthesizedStack
    production: SynthesizedStack
    seconds: float
