"""The fleet options, defined once (simulator/fleet_options.py) and used by
``tap simulate``, ``tap load``, ``tap demo`` and the generation benchmark (the
Locust campaign's copy is checked in tests/load/test_campaign_options.py): one
validator per option, bad values refused with a message naming the option."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from simulator.fleet_options import (
    CAMPAIGN_FLEET,
    OPTIONS,
    FleetOptions,
    add_fleet_arguments,
    fleet_options,
)

BAD = [
    ("--devices", "0", "at least 1"),
    ("--devices", "ten", "whole number"),
    ("--rate", "0", "readings/s per device"),
    ("--rate", "1001", "readings/s per device"),
    ("--seed", "x", "whole number"),
    ("--anomaly-rate", "1.5", "within [0, 1]"),
    ("--poison-rate", "-0.1", "within [0, 1]"),
    ("--poison-rate", "nan", "finite"),
]


def test_one_option_per_field() -> None:
    assert [o.field for o in OPTIONS] == [f.name for f in fields(FleetOptions)]


@pytest.mark.parametrize(("flag", "value", "says"), BAD)
def test_built_in_code_a_bad_value_is_refused_by_name(flag: str, value: str, says: str) -> None:
    field = flag.removeprefix("--").replace("-", "_")
    typed: object = value
    if value.lstrip("-").replace(".", "").isdigit():
        typed = float(value) if "." in value or field.endswith("rate") else int(value)
    with pytest.raises(ValueError, match=flag):
        FleetOptions(**{field: typed})  # type: ignore[arg-type]


def _simulate(argv: list[str]) -> None:
    from simulator.cli import parse_args

    parse_args([*argv, "--records", "10", "--sink", "memory"])


def _load(argv: list[str]) -> None:
    from simulator.load.cli import _parser

    _parser().parse_args(["--report", "r", *argv])


def _demo(argv: list[str]) -> None:
    from e2e.demo import _parser

    _parser().parse_args(argv)


def _generation_bench(argv: list[str]) -> None:
    from simulator.bench import main

    main(argv)


COMMANDS = {
    "tap simulate": _simulate,
    "tap load": _load,
    "tap demo": _demo,
    "simulator.bench": _generation_bench,
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("flag", "value", "says"), BAD)
def test_every_command_refuses_a_bad_value_naming_the_option(
    command: str, flag: str, value: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        COMMANDS[command]([f"{flag}={value}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and says in err, err


def test_defaults_are_the_definition_unless_a_command_says_otherwise() -> None:
    from e2e.demo import _parser as demo_parser
    from simulator.cli import parse_args
    from simulator.load.cli import _parser as load_parser

    assert fleet_options(parse_args(["--records", "1"])) == FleetOptions()
    assert fleet_options(load_parser().parse_args(["--report", "r"])) == CAMPAIGN_FLEET
    demo = fleet_options(demo_parser().parse_args([]))
    assert demo == FleetOptions(anomaly_rate=0.0015, poison_rate=0.005)


def test_argv_reads_back_the_same_options_under_a_prefix() -> None:
    parser = argparse.ArgumentParser()
    add_fleet_arguments(parser, prefix="tap-")
    chosen = FleetOptions(devices=1_234, rate=0.5, seed=-3, anomaly_rate=0.01, poison_rate=1.0)
    parsed = parser.parse_args(chosen.argv(prefix="tap-"))
    assert fleet_options(parsed, prefix="tap-") == chosen
