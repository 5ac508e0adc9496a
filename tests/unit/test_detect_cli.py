"""``tap detect`` over temporary CSV files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tap_cli.detect import main

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def temperature_rows(values: list[float], step: float = 1.0) -> list[str]:
    return [f"{(T0 + timedelta(seconds=i * step)).isoformat()},{v}" for i, v in enumerate(values)]


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[dict[str, Any]], str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_limit_and_spike_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = [70.0, 70.2, 69.9, 140.0, 70.1]
    csv_path = write_csv(tmp_path / "t.csv", "timestamp,value", temperature_rows(values))
    code, lines, err = run(["--input", str(csv_path), "--sensor-type", "temperature"], capsys)
    assert code == 0, err
    assert [(x["type"], x["severity"], x["timestamp"]) for x in lines] == [
        ("limit", "warning", "2026-11-26T08:00:03Z"),
        ("spike", "critical", "2026-11-26T08:00:03Z"),
        ("spike", "critical", "2026-11-26T08:00:04Z"),
    ]
    first = lines[0]
    assert set(first) >= {"timestamp", "type", "severity", "score", "explanation"}
    assert first["explanation"] == "temperature 140 C is above the warning limit 130 C"
    assert first["score"] == 10.0 and first["seq"] == 4 and first["value"] == 140.0
    assert "3 anomalies" in err


def test_custom_columns_epoch_times_and_output_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = int(T0.timestamp())
    rows = [f"{start + i * 60},x,{155.0 if i == 3 else 60.0}" for i in range(5)]
    csv_path = write_csv(tmp_path / "t.csv", "epoch,comment,celsius", rows)
    out_path = tmp_path / "out.jsonl"
    code = main(
        [
            "--input",
            str(csv_path),
            "--sensor-type",
            "temperature",
            "--column",
            "celsius",
            "--timestamp-column",
            "epoch",
            "--output",
            str(out_path),
            "--device-id",
            "oven-7",
        ]
    )
    assert code == 0
    lines = [json.loads(x) for x in out_path.read_text().splitlines()]
    assert [(x["type"], x["severity"], x["device_id"]) for x in lines] == [
        ("limit", "critical", "oven-7")
    ]
    assert lines[0]["timestamp"] == "2026-11-26T08:03:00Z"
    assert capsys.readouterr().out == ""


def test_equipment_status_faults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    states = ["RUNNING", "running", "FAULT", "FAULT", "IDLE", "FAULT"]
    rows = [f"{(T0 + timedelta(minutes=i)).isoformat()},{s}" for i, s in enumerate(states)]
    csv_path = write_csv(tmp_path / "s.csv", "timestamp,status", rows)
    code, lines, _ = run(["--input", str(csv_path), "--sensor-type", "equipment_status"], capsys)
    assert code == 0
    assert [(x["type"], x["seq"]) for x in lines] == [("fault", 3), ("fault", 6)]
    assert lines[0]["explanation"] == "equipment entered FAULT (was RUNNING)"


def test_a_five_minute_series_is_silent_once_for_a_multi_hour_gap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two days at one row per 5 minutes with jitter and single missing rows, and one
    3-hour hole: the cadence is inferred from the data, so only the hole is a silence
    (issue 9: the 60 s limit made 22,682 'silent' anomalies of a 5-minute series)."""
    rows, seq_of_last_before_gap = [], 0
    t = T0
    for i in range(2 * 288):
        if i == 300:
            seq_of_last_before_gap = len(rows)
            t += timedelta(hours=3)
        if i % 37 == 5:  # an intermittent dropout: one row missing
            t += timedelta(minutes=5)
            continue
        jitter = timedelta(seconds=(i * 7919) % 13 - 6)
        rows.append(f"{(t + jitter).isoformat()},{70 + (i % 5) * 0.1:.1f}")
        t += timedelta(minutes=5)
    csv_path = write_csv(tmp_path / "t.csv", "timestamp,value", rows)
    code, lines, err = run(["--input", str(csv_path), "--sensor-type", "temperature"], capsys)
    assert code == 0, err
    silent = [x for x in lines if x["type"] == "silent"]
    assert [(x["seq"], x["severity"]) for x in silent] == [(seq_of_last_before_gap, "warning")]
    assert silent[0]["score"] > 3 * 3600


def test_a_regular_series_gives_no_silence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for step in (1.0, 300.0, 3600.0):
        values = [70.0 + (i % 3) * 0.1 for i in range(200)]
        csv_path = write_csv(tmp_path / "t.csv", "timestamp,value", temperature_rows(values, step))
        code, lines, err = run(["--input", str(csv_path), "--sensor-type", "temperature"], capsys)
        assert code == 0, err
        assert [x for x in lines if x["type"] == "silent"] == [], step


def test_overrides_change_the_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"{(T0 + timedelta(seconds=30 * i)).isoformat()},{v}" for i, v in enumerate([80, 86])]
    csv_path = write_csv(tmp_path / "t.csv", "timestamp,value", rows)
    args = ["--input", str(csv_path), "--sensor-type", "temperature"]
    assert run(args, capsys)[1] == []
    code, lines, _ = run([*args, "--set", "temperature.warning_high=85"], capsys)
    assert code == 0 and [x["type"] for x in lines] == ["limit"]
    code, _, err = run([*args, "--set", "temperature.nonsense=1"], capsys)
    assert code == 2 and "unknown setting" in err
    code, _, err = run([*args, "--set", "warmup=many"], capsys)
    assert code == 2 and "not a number" in err


def test_physically_impossible_rows_are_skipped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = write_csv(
        tmp_path / "t.csv", "timestamp,value", temperature_rows([70, 9999, 70, 70])
    )
    code, lines, err = run(["--input", str(csv_path), "--sensor-type", "temperature"], capsys)
    assert code == 0 and lines == []
    assert "line 3: skipped value 9999" in err


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        ("time,value", ["2026-11-26T08:00:00Z,1"], "missing column(s) 'timestamp'"),
        ("timestamp,val", ["2026-11-26T08:00:00Z,1"], "missing column(s) 'value'"),
        (
            "timestamp,value",
            ["2026-11-26T08:00:00Z,1", "2026-11-26T08:00:01Z,abc"],
            "line 3: value 'abc' is not a number",
        ),
        ("timestamp,value", ["2026-11-26T08:00:00Z,1", "yesterday,2"], "line 3: bad timestamp"),
        ("timestamp,value", ["2026-11-26T08:00:00Z"], "line 2: too few fields"),
    ],
)
def test_bad_input_names_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], header: str, rows: list[str], message: str
) -> None:
    csv_path = write_csv(tmp_path / "bad.csv", header, rows)
    code, _, err = run(["--input", str(csv_path), "--sensor-type", "temperature"], capsys)
    assert code == 2
    assert message in err
    assert str(csv_path) in err


def test_bad_status_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = write_csv(tmp_path / "s.csv", "timestamp,status", ["2026-11-26T08:00:00Z,BROKEN"])
    code, _, err = run(["--input", str(csv_path), "--sensor-type", "equipment_status"], capsys)
    assert code == 2 and "line 2: status 'BROKEN' is not one of" in err
    assert run(["--input", str(csv_path), "--sensor-type", "humidity"], capsys)[0] == 2
    assert run(["--sensor-type", "temperature"], capsys)[0] == 2
    code, _, err = run(["--input", str(tmp_path / "nope.csv"), "--sensor-type", "pressure"], capsys)
    assert code == 2 and "nope.csv" in err
    code, _, err = run(
        ["--input", str(csv_path), "--sensor-type", "pressure", "--device-id", "Bad Id"], capsys
    )
    assert code == 2 and "--device-id" in err


def test_dispatched_by_tap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tap_cli.main import main as tap_main

    csv_path = write_csv(tmp_path / "t.csv", "timestamp,value", temperature_rows([70, 131]))
    assert tap_main(["detect", "--input", str(csv_path), "--sensor-type", "temperature"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["type"] for x in lines] == ["limit", "spike"]


def test_a_simulated_fleet_is_back_tested_from_jsonl_and_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.cli import main as simulate

    readings, labels, scored = tmp_path / "r.jsonl", tmp_path / "l.jsonl", tmp_path / "s.json"
    assert (
        simulate(
            [
                "--devices",
                "12",
                "--duration",
                "30m",
                "--anomaly-rate",
                "0.002",
                "--seed",
                "3",
                "--poison-rate",
                "0.001",
                "--start",
                "2026-11-24T09:00:00Z",
                "--labels",
                str(labels),
                "--output",
                str(readings),
                "--json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    code, lines, err = run(
        ["--input", str(readings), "--labels", str(labels), "--score-output", str(scored)],
        capsys,
    )
    assert code == 0, err
    assert "from 12 devices" in err and "lines skipped (dead letters)" in err
    assert lines and all(line["device_id"].startswith("fac01-") for line in lines)
    report = json.loads(scored.read_text())
    assert report["by_scenario"] and "healthy" in report
    assert "recall" in err and "precision" in err
    # An impossible floor fails the run and names what missed it.
    code, _, err = run(
        ["--input", str(readings), "--labels", str(labels), "--output", "none", "--floor", "1.01"],
        capsys,
    )
    assert code == 1 and "FLOOR MISSED" in err


def test_csv_windows_as_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = [70.0] * 10 + [140.0] + [70.0] * 10
    csv_path = write_csv(tmp_path / "t.csv", "timestamp,value", temperature_rows(values))
    windows = tmp_path / "w.csv"
    start = (T0 + timedelta(seconds=9)).isoformat()
    end = (T0 + timedelta(seconds=11)).isoformat()
    windows.write_text(f"start,end,type\n{start},{end},overheat\n", encoding="utf-8")
    code, _, err = run(
        [
            "--input",
            str(csv_path),
            "--sensor-type",
            "temperature",
            "--labels",
            str(windows),
            "--output",
            "none",
            "--floor",
            "0.9",
        ],
        capsys,
    )
    assert code == 0, err
    assert "overheat" in err


def test_jsonl_needs_no_sensor_type_but_csv_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = write_csv(tmp_path / "t.csv", "timestamp,value", temperature_rows([1.0]))
    code, _, err = run(["--input", str(csv_path)], capsys)
    assert code == 2 and "--sensor-type is required" in err
    code, _, err = run(
        ["--input", str(csv_path), "--sensor-type", "temperature", "--floor", "0.9"], capsys
    )
    assert code == 2 and "need --labels" in err
