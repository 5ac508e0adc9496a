"""The read benchmark's goals from a campaign's summary.json (pure: no campaign)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.reads import ReadsOptions, campaign_argv, figures
from simulator.load.read_mix import ReadKind


def summary(latest_p99: float, board_p99: float, stream_p99: float | None, **over: Any) -> Any:
    def ep(p50: float, p99: float) -> dict[str, Any]:
        return {"count": 100, "failures": 0, "p50": p50, "p95": p99, "p99": p99, "max": p99}

    body = {
        "records_per_s": 2000.0,
        "reads": {
            "requests_per_s": 500.0,
            "failures": 0,
            "endpoints": {
                ReadKind.LATEST.value: ep(2, latest_p99),
                ReadKind.LATEST_POSTGRES.value: ep(4, latest_p99 * 3),
                ReadKind.BOARD.value: ep(5, board_p99),
                ReadKind.BOARD_POSTGRES.value: ep(8, board_p99 * 2),
            },
            "stream": {
                "anomaly->stream": {"count": 0 if stream_p99 is None else 10, "p99": stream_p99}
            },
        },
    }
    body.update(over)
    return body


def test_goals_met_and_ratios_of_bypassed_over_cached() -> None:
    f = figures(summary(8, 20, 400), ReadsOptions())
    assert f["goals_missed"] == []
    assert f["latest_ratio_p99"] == 3.0 and f["board_ratio_p99"] == 2.0
    assert f["latest_ratio_p50"] == 2.0


def test_every_missed_goal_is_named() -> None:
    f = figures(summary(12, 30, None, records_per_s=1500.0), ReadsOptions())
    assert f["goals_missed"] == [
        "write load not reached: 1,500 of 2,000 readings/s",
        "GET /devices/{id}/latest p99 12 ms > 10 ms",
        "GET /devices?line= p99 30 ms > 25 ms",
        "anomaly -> stream p99: not measured (no sample)",
    ]


def test_the_campaign_is_the_goal_load_with_the_goals_mix() -> None:
    argv = campaign_argv(ReadsOptions(), Path("r"))
    value = {argv[i]: argv[i + 1] for i in range(0, len(argv) - 1) if argv[i].startswith("--")}
    assert float(value["--devices"]) * float(value["--rate"]) == 2000
    assert value["--read-rate"] == "500" and value["--read-mix"] == "goals"
    assert value["--target"] == "fresh"


def test_reads_is_opt_in() -> None:
    # The default run stays what it was; reads runs only when named.
    from bench import cli

    default = cli._parser().parse_args([]).only.split(",")
    assert "reads" not in default and "reads" in cli.BENCHMARKS
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "--only reads" in out.stdout


def test_reads_alone_is_a_read_only_campaign_over_the_goals_fleet() -> None:
    options = ReadsOptions(writes_per_s=0)
    assert options.reads_alone and options.fleet_devices == 2000
    argv = campaign_argv(options, Path("r"))
    value = {argv[i]: argv[i + 1] for i in range(0, len(argv) - 1) if argv[i].startswith("--")}
    assert "--read-only" in argv
    assert value["--devices"] == "2000" and value["--read-rate"] == "500"
    assert value["--read-mix"] == "goals" and value["--sse-listeners"] == "0"
    assert "--users" not in value and "--rate" not in value
    assert (
        campaign_argv(ReadsOptions(writes_per_s=0, devices=300), Path("r"))[
            argv.index("--devices") + 1
        ]
        == "300"
    )


def test_reads_alone_judges_the_read_goals_only() -> None:
    f = figures(summary(12, 20, None, records_per_s=0.0), ReadsOptions(writes_per_s=0))
    # No writes offered, none reached: no write goal; no anomaly written: no stream goal.
    assert f["goals_missed"] == ["GET /devices/{id}/latest p99 12 ms > 10 ms"]


def test_bad_reads_options_are_refused_naming_the_option() -> None:
    import pytest

    from bench import cli

    for argv, named in (
        (["--reads-writes", "-1"], "--reads-writes"),
        (["--reads-devices", "0"], "--reads-devices"),
    ):
        with pytest.raises(SystemExit, match=named):
            cli._reads_options(cli._parser().parse_args(["--only", "reads", *argv]))
    assert cli._reads_options(cli._parser().parse_args(["--reads-writes", "0"])).reads_alone


def test_projection_scales_of_a_run() -> None:
    from bench.reads import _scale

    assert _scale(2000, 1000.0) == 2.0
    assert _scale(500, None) is None  # nothing reached: no projection
    assert _scale(0, 0.0) == 1.0  # reads alone: idle writers' parts stay as measured
