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
)


@dataclass(frozen=True)
class Synth:
    outdir: Path
    default: SynthesizedStack
    production: SynthesizedStack
    seconds: float
