"""Shared by the stack tests: the configurations synthesized once per source tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lib.synthesized import SynthesizedStack
from local_pipeline.stack_synth import TEST_DEFAULT_CONFIG, TEST_PRODUCTION_CONFIG

#: What ``make synth`` produces, with a test suffix (defined with every other
#: configuration the project synthesizes, so one process synthesizes them all).
DEFAULT_CONFIG = TEST_DEFAULT_CONFIG
#: Every non-default flag flipped, so flag behaviour is tested in the same synth.
PRODUCTION_CONFIG = TEST_PRODUCTION_CONFIG


@dataclass(frozen=True)
class Synth:
    outdir: Path
    default: SynthesizedStack
    production: SynthesizedStack
    seconds: float
