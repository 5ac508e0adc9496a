"""bench.detection's degradation recall by start day: the buckets cover every
degradation label the scorer counted, with the scorer's own hits (no second
matcher)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from bench import detection
from processor.contract.record import SensorType

#: Seed 3's fleet of 12 over 20 days: one degradation, started on day 7-14.
FLEET = ["--profile", "month", "--devices", "12", "--seeds", "3"]


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("cold") / "result.json"
    detection.main([*FLEET, "--hours", str(20 * 24), "--json", str(out)])
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_degradation_by_start_day_adds_up_to_the_scorers_figures(
    cold_run: dict[str, Any],
) -> None:
    buckets = cold_run["degradation_by_start_day"]
    assert [(b["from_day"], b["to_day"]) for b in buckets] == [
        (0.0, 7.0),
        (7.0, 14.0),
        (14.0, None),
    ]
    scored = cold_run["score"]["by_scenario"].get("degradation", {"labels": 0, "detected": 0})
    assert scored["labels"] >= 1  # seed 3's fleet of 12 has one, started on day 7-14
    assert sum(b["labels"] for b in buckets) == scored["labels"]
    assert sum(b["detected"] for b in buckets) == scored["detected"]


def test_a_warm_window_scores_only_what_starts_inside_it(
    cold_run: dict[str, Any], tmp_path: Path
) -> None:
    # The same 20 days of the same fleet, the first 7 run as a warm-up.
    out, details = tmp_path / "result.json", tmp_path / "details.json"
    warm_up = ["--hours", str(13 * 24), "--score-from-day", "7"]
    detection.main([*FLEET, *warm_up, "--json", str(out), "--details", str(details)])
    warm = json.loads(out.read_text())
    assert warm["config"]["score_from_day"] == 7.0
    assert warm["degradation_by_start_day"][0]["labels"] == 0  # days 0-7: the warm-up
    cold_labels = {k: v["labels"] for k, v in cold_run["score"]["by_scenario"].items()}
    warm_labels = {k: v["labels"] for k, v in warm["score"]["by_scenario"].items()}
    assert all(n <= cold_labels[k] for k, n in warm_labels.items())
    assert sum(warm_labels.values()) < sum(cold_labels.values())  # the first week's are out
    assert warm_labels["degradation"] == cold_labels["degradation"]  # it started on day 7-14
    # Healthy device-days count the 13 scored days only, on the same healthy devices.
    healthy, cold_healthy = warm["score"]["healthy"], cold_run["score"]["healthy"]
    assert healthy["devices"] == cold_healthy["devices"]
    assert 12.9 * healthy["devices"] < healthy["device_days"] <= 13.0 * healthy["devices"]
    window = "2026-10-12T00:00:00"  # the profile's start, 2026-10-05, plus 7 days
    listed = json.loads(details.read_text())
    assert all(label["start_ts"] >= window for label in listed["missed_labels"])
    assert all(alarm["ts"] >= window for alarm in listed["false_alarms"])


def test_a_negative_warm_up_is_refused_with_its_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        detection.main(["--profile", "month", "--score-from-day", "-1"])

    assert "--score-from-day" in capsys.readouterr().err


def test_one_sensor_type_is_that_kind_of_the_whole_fleet(tmp_path: Path) -> None:
    """``--sensor-type``: the same records and labels as that kind's devices get in
    the whole fleet (so the same detections), and nothing else."""
    profile = dataclasses.replace(detection.PROFILES["month"], devices=12, hours=10 * 24)
    alone = dataclasses.replace(profile, sensor_type=SensorType.TEMPERATURE)

    def run(p: detection.Profile) -> tuple[list[tuple[int, bytes]], list[Any]]:
        fleet = p.fleet(3)
        records: list[tuple[int, bytes]] = []
        labels: list[Any] = []
        end_ms = fleet.start_ms + int(p.hours * 3_600_000)
        while batch := fleet.tick(end_ms - 1, limit=50_000):
            records.extend((r.ts_ms, r.data) for r in batch if b'"temperature"' in r.data)
            labels.extend(fleet.drain_labels())
        labels.extend(fleet.finish())
        return records, [label for label in labels if "-temperature-" in str(label)]

    assert [spec.sensor_type for spec in alone.fleet(3).device_specs] == [
        SensorType.TEMPERATURE
    ] * 4
    whole_records, whole_labels = run(profile)
    alone_records, alone_labels = run(alone)
    assert alone_records == whole_records
    assert alone_labels == whole_labels
    assert alone_labels  # seed 3's four temperature devices have scenarios to compare

    out = tmp_path / "result.json"
    detection.main([*FLEET, "--hours", "240", "--sensor-type", "temperature", "--json", str(out)])
    assert json.loads(out.read_text())["config"]["sensor_type"] == "temperature"


def test_a_device_replayed_alone_is_found_by_its_id() -> None:
    profile = detection.PROFILES["day"]
    specs = profile.fleet(1, range(0, profile.devices, 7)).device_specs
    assert [detection.device_index(s.device_id) for s in specs] == [s.index for s in specs]
    with pytest.raises(ValueError, match="fac01-l06-m12-temperature-0 is not in the month"):
        detection.replay_device("month", 1, "fac01-l06-m12-temperature-0")
