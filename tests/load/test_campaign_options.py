"""The Locust campaign's ``--tap-*`` fleet options are the shared fleet options
(simulator/fleet_options.py): what ``tap load`` passes reads back the same, and a
bad value is refused naming the option."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from simulator.fleet_options import CAMPAIGN_FLEET, FleetOptions, fleet_options
from simulator.load import campaign
from simulator.load import cli as load_cli
from simulator.load.shapes import ShapeName, ShapePlan

pytestmark = pytest.mark.load


def _campaign_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    campaign._add_options(parser)
    return parser


def test_what_tap_load_passes_the_campaign_reads_back() -> None:
    args = load_cli._parser().parse_args(
        ["--report", "r", "--devices", "300", "--rate", "2.5", "--poison-rate", "0.01"]
    )
    args.sse_listeners = 0  # main() fills this default after parsing
    plan = ShapePlan(ShapeName.RAMP, users=2, duration_s=10, drain_s=1, steps=1)
    argv = load_cli.locust_argv(args, plan, Path("r"), 30.0)
    tap_args = argv[argv.index("--tap-shape") :]
    known, _ = _campaign_parser().parse_known_args(tap_args)
    assert fleet_options(known, prefix="tap-") == FleetOptions(
        devices=300, rate=2.5, poison_rate=0.01
    )
    assert fleet_options(_campaign_parser().parse_args([]), prefix="tap-") == CAMPAIGN_FLEET


@pytest.mark.parametrize(
    ("flag", "value"), [("--tap-devices", "0"), ("--tap-rate", "-1"), ("--tap-anomaly-rate", "2")]
)
def test_a_bad_value_is_refused_naming_the_option(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _campaign_parser().parse_args([flag, value])
    assert f"argument {flag}: " in capsys.readouterr().err
