"""Shared by the stack tests: the configurations synthesized once per session."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from lib.config import StackConfig
from lib.read_api_config import ReadApiConfig
from lib.synthesized import SynthesizedStack

#: The read API's settings of the test stacks (issue 13, item 3): HTTPS with OIDC.
PLANT_CIDRS = ("10.20.0.0/16", "192.168.50.0/24")
READ_API_CONFIG = ReadApiConfig(
    certificate_arn="arn:aws:acm:eu-west-2:123456789012:certificate/11111111-2222-3333-4444-555555555555",
    oidc_issuer="https://login.plant.example.com/realms/plant",
    oidc_authorization_endpoint="https://login.plant.example.com/realms/plant/protocol/openid-connect/auth",
    oidc_token_endpoint="https://login.plant.example.com/realms/plant/protocol/openid-connect/token",
    oidc_user_info_endpoint="https://login.plant.example.com/realms/plant/protocol/openid-connect/userinfo",
    oidc_client_id="tap-read-api",
    oidc_client_secret_id="arn:aws:secretsmanager:eu-west-2:123456789012:secret:tap-api-oidc-AbCdEf",
    plant_cidrs=PLANT_CIDRS,
)
#: The explicit development path: plain HTTP inside the VPC, no certificate, no OIDC.
DEV_HTTP_READ_API_CONFIG = ReadApiConfig(dev_allow_http=True, plant_cidrs=("10.20.0.0/16",))

#: What ``make synth`` produces, with a test suffix.
DEFAULT_CONFIG = StackConfig(environment="dev", suffix="ci01", read_api=READ_API_CONFIG)
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
    read_api=replace(READ_API_CONFIG, deletion_protection=True, min_tasks=3, max_tasks=9),
)
#: The development flag's stack (HTTP listener); synthesized beside the two others.
DEV_HTTP_CONFIG = StackConfig(environment="dev", suffix="ci03", read_api=DEV_HTTP_READ_API_CONFIG)


@dataclass(frozen=True)
class Synth:
    outdir: Path
    default: SynthesizedStack
    production: SynthesizedStack
    seconds: float
    dev_http: SynthesizedStack | None = None
