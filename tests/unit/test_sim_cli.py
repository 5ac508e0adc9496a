"""`tap simulate` options, errors and output."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from processor.contract.record import Reading, Rejection, decode_reading
from simulator.cli import main, parse_args, parse_duration
from simulator.scoring import read_labels


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60", 60.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2.5m", 150.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "-3", "0", "1h 30m", "inf"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--devices", "5", "--duration", "5x"], "argument --duration: invalid duration '5x'"),
        (["--devices", "0", "--records", "5"], "argument --devices: must be at least 1"),
        (["--records", "5", "--anomaly-rate", "1.5"], "argument --anomaly-rate: must be within"),
        (["--records", "5", "--poison-rate", "x"], "argument --poison-rate: expected a number"),
        (["--records", "5", "--rate", "0"], "argument --rate: must be in"),
        (["--devices", "5"], "one of the arguments --duration --records is required"),
        (["--records", "5", "--duration", "5"], "not allowed with argument"),
        (["--records", "5", "--sink", "kinesis"], "--stream is required with --sink kinesis"),
        (["--records", "5", "--sink", "memory", "--output", "x"], "--output is for --sink jsonl"),
        (["--records", "5", "--start", "yesterday"], "argument --start: expected an ISO 8601"),
    ],
)
def test_errors_name_the_bad_option(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TAP_STREAM_NAME", raising=False)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_defaults() -> None:
    args = parse_args(["--duration", "5m"])
    assert (args.devices, args.rate, args.seed, args.sink, args.output) == (
        500,
        1.0,
        7,
        "jsonl",
        "-",
    )
    assert args.duration == 300.0 and args.realtime is False
    args = parse_args(["--records", "10", "--sink", "kinesis", "--stream", "s"])
    assert args.realtime is True


def test_stream_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAP_STREAM_NAME", "sensors")
    assert parse_args(["--records", "10", "--sink", "kinesis"]).stream == "sensors"


def test_jsonl_output_round_trips_through_the_contract(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    output, labels = tmp_path / "readings.jsonl", tmp_path / "labels.jsonl"
    argv = [
        "--devices", "30", "--records", "3000", "--anomaly-rate", "0.01", "--poison-rate", "0.01",
        "--seed", "3", "--output", str(output), "--labels", str(labels), "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = output.read_bytes().splitlines()
    assert len(lines) == summary["records_generated"] == summary["sent"] == 3000
    assert summary["failed"] == 0 and summary["retried"] == 0
    now = datetime.now(UTC)
    readings = [decode_reading(line, arrival=now) for line in lines]
    accepted = [r for r in readings if isinstance(r, Reading)]
    rejected = [r for r in readings if isinstance(r, Rejection)]
    # Backfilled: the run's window ends now, so no reading is in the future.
    assert len(accepted) == summary["readings"]
    assert len(rejected) == summary["poison_records"] > 0
    written = read_labels(labels)
    assert sum(1 for label in written if label.__struct_config__.tag == "poison") == len(rejected)
    assert summary["anomaly_labels"] + summary["poison_labels"] == len(written)
    assert sorted(r.reason.value for r in rejected) == sorted(
        label.expected_reason for label in written if label.__struct_config__.tag == "poison"
    )


def test_stdout_output_and_summary_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--devices", "3", "--records", "9", "--json"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 9
    assert json.loads(captured.err.splitlines()[-1])["sent"] == 9


def test_duration_window_is_exact(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--devices", "4", "--rate", "2", "--duration", "10", "--sink", "memory", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["records_generated"] == 4 * 2 * 10


def test_realtime_paces_by_event_time(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--devices", "3", "--rate", "4", "--duration", "1", "--sink", "memory"]
    assert main([*argv, "--realtime", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records_generated"] == 12
    assert 0.7 <= summary["elapsed_s"] < 3.0


def test_old_backfill_warns(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--devices", "1", "--rate", "0.001", "--duration", "10d", "--sink", "memory"]
    assert main(argv) == 0
    assert "older than 7 days" in capsys.readouterr().err
