"""The scorer shared by ``tap detect --labels``, ``tap demo`` and the benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.contract.anomaly import AnomalyType
from simulator.anomalies import AnomalyLabel
from simulator.scoring import Detection, WindowLabel, read_window_labels, score

T0 = 1_764_000_000.0


def label(
    device: str, anomaly: str, start: int, end: int, *, truncated: bool = False
) -> AnomalyLabel:
    return AnomalyLabel(
        device,
        "temperature",
        anomaly,
        start,
        end,
        "2025-11-24T16:00:00Z",
        "2025-11-24T17:00:00Z",
        truncated=truncated,
    )


def test_time_to_detect_is_first_hit_minus_label_start() -> None:
    start = 1_764_000_000.0  # 2025-11-24T16:00:00Z
    report = score(
        [
            Detection("d1", 20, AnomalyType.DRIFT, start + 300.0),
            Detection("d1", 15, AnomalyType.DRIFT, start + 120.0),
        ],
        [label("d1", "degradation", 10, 100)],
    )
    s = report.by_scenario["degradation"]
    assert s.recall == 1.0 and s.delays_s == [120.0]
    assert report.by_detector["drift"].precision == 1.0


def test_detections_in_a_dropout_are_false_alarms_and_dropouts_have_no_recall() -> None:
    report = score([Detection("d1", 12, AnomalyType.SILENT)], [label("d1", "dropout", 10, 40)])
    assert report.by_scenario["dropout"].recall is None
    assert report.by_scenario["dropout"].alarmed == 1
    assert report.by_detector["silent"].false_positives == 1
    assert report.misses(0.8) == ["precision of silent 0.00 < 0.8 (0/1)"]


def test_a_missed_label_cut_off_by_the_run_is_left_out_of_recall() -> None:
    labels = [label("d1", "degradation", 10, 100, truncated=True), label("d2", "degradation", 5, 9)]
    report = score([Detection("d2", 9, AnomalyType.DRIFT)], labels)
    s = report.by_scenario["degradation"]
    assert (s.labels, s.detected, s.truncated_missed, s.recall) == (2, 1, 1, 1.0)


def test_false_alarms_per_device_day_count_only_unlabelled_devices() -> None:
    report = score(
        [
            Detection("healthy", 1, AnomalyType.STATISTICAL),
            Detection("healthy", 2, AnomalyType.STUCK),
            Detection("d1", 500, AnomalyType.STATISTICAL),  # false, but d1 is not healthy
        ],
        [label("d1", "spike", 10, 10)],
        observed_s={"healthy": 86_400.0, "other": 86_400.0, "d1": 86_400.0},
    )
    healthy = report.healthy
    assert (healthy.devices, healthy.device_days, healthy.false_alarms) == (2, 2.0, 2)
    assert healthy.per_device_day == 1.0 and healthy.per_device_week == 7.0
    assert report.by_detector["statistical"].false_positives == 2


def test_time_windows_use_the_device_period_as_slack(tmp_path: Path) -> None:
    path = tmp_path / "windows.csv"
    path.write_text(
        "start,end,type\n"
        "2025-11-24T16:00:00Z,2025-11-24T17:00:00Z,failure\n"
        f"{T0 + 86_400},{T0 + 90_000},spike,dev-b\n",
        encoding="utf-8",
    )
    windows = read_window_labels(path)
    assert windows[0] == WindowLabel(T0, T0 + 3600.0, "failure", None)
    assert windows[1].device_id == "dev-b"
    detections = [
        # 5 periods of 300 s after the end: still a hit (grace 5 readings).
        Detection("dev-a", 1, AnomalyType.DRIFT, T0 + 3600.0 + 1500.0),
        # One period before the start: a hit too; any type hits a free-text window.
        Detection("dev-a", 2, AnomalyType.STATISTICAL, T0 - 300.0),
        # Too late: a false alarm.
        Detection("dev-a", 3, AnomalyType.STATISTICAL, T0 + 3600.0 + 1501.0),
        # The spike window is dev-b's only; a spike is expected there.
        Detection("dev-b", 4, AnomalyType.SPIKE, T0 + 86_400.0),
    ]
    report = score(detections, windows, period_s={"dev-a": 300.0, "dev-b": 1.0})
    assert report.by_scenario["failure"].recall == 1.0
    assert report.by_scenario["spike"].recall == 1.0
    assert report.by_detector["statistical"].false_positives == 1
    assert report.by_detector["drift"].true_positives == 1


def test_a_bad_window_row_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "windows.csv"
    path.write_text("start,end\n2025-11-24T16:00:00Z,yesterday\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_window_labels(path)


def persistent(
    device: str, start: int, end: int, start_ts: str = "2025-11-24T16:00:00Z"
) -> AnomalyLabel:
    return AnomalyLabel(
        device,
        "temperature",
        "level_shift",
        start,
        end,
        start_ts,
        "2025-11-24T17:00:00Z",
        persists=True,
    )


def test_a_still_present_fault_found_after_its_onset_window_is_a_hit_with_its_delay() -> None:
    # A swapped sensor's offset stays until someone recalibrates: a DRIFT three
    # hours after the swap finds a fault that is still there (a maintenance team's
    # true detection), and its delay is the time to detect.
    report = score(
        [Detection("d1", 400, AnomalyType.DRIFT, T0 + 3 * 3600.0)],
        [persistent("d1", 10, 22)],
    )
    s = report.by_scenario["level_shift"]
    assert (s.detected, s.recall, s.delays_s) == (1, 1.0, [3 * 3600.0])
    assert report.by_detector["drift"].precision == 1.0


def test_the_persistent_tail_takes_only_lasting_departure_types() -> None:
    # A spike long after the swap says nothing about the offset: scored as if the
    # tail did not exist (a false alarm), while the onset window takes it.
    report = score(
        [Detection("d1", 400, AnomalyType.SPIKE), Detection("d1", 12, AnomalyType.SPIKE)],
        [persistent("d1", 10, 22)],
    )
    assert report.by_detector["spike"].true_positives == 1
    assert report.by_detector["spike"].false_positives == 1


def test_the_tail_ends_where_the_next_swap_of_the_same_device_begins() -> None:
    # The second swap removes the first offset: a DRIFT after it belongs to the
    # second label only.
    labels = [persistent("d1", 10, 22), persistent("d1", 500, 512)]
    report = score([Detection("d1", 600, AnomalyType.DRIFT)], labels)
    s = report.by_scenario["level_shift"]
    assert (s.labels, s.detected) == (2, 1)


def test_scoring_without_persistence_gives_the_onset_window_figures() -> None:
    # The figures before the scoring change, from the same detections.
    report = score(
        [Detection("d1", 400, AnomalyType.DRIFT, T0 + 3 * 3600.0)],
        [persistent("d1", 10, 22)],
        persistent=False,
    )
    assert report.by_scenario["level_shift"].detected == 0
    assert report.by_detector["drift"].false_positives == 1


def test_the_details_name_each_missed_label_and_each_false_alarm() -> None:
    labels = [
        label("d1", "degradation", 10, 100),
        label("d2", "degradation", 5, 9),
        label("d3", "dropout", 5, 9),  # a quiet scenario is never "missed"
    ]
    report = score(
        [
            Detection("d2", 9, AnomalyType.DRIFT),
            Detection("d4", 50, AnomalyType.SPIKE, T0),
        ],
        labels,
    )
    details = report.details()
    assert [(m["device_id"], m["anomaly"]) for m in details["missed_labels"]] == [
        ("d1", "degradation")
    ]
    assert details["false_alarms"] == [
        {"device_id": "d4", "seq": 50, "anomaly_type": "spike", "ts": "2025-11-24T16:00:00+00:00"}
    ]
