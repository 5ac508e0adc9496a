"""summary.json arithmetic and the verdict, from Locust CSV rows (no Locust)."""

from __future__ import annotations

import subprocess
import sys

from simulator.load.report import history_series
from simulator.load.summary import Thresholds, plateau_rates, summarize


def row(type_: str, name: str, count: int, failures: int = 0, **extra: str) -> dict[str, str]:
    base = {
        "Type": type_,
        "Name": name,
        "Request Count": str(count),
        "Failure Count": str(failures),
        "Average Content Size": "0.0",
        "50%": "100",
        "95%": "200",
        "99%": "300",
        "Max Response Time": "350.5",
    }
    return base | extra


def stats(failed_records: int = 0, e2e_failures: int = 0, p99: str = "300") -> list[dict[str, str]]:
    rows = [
        # 3 calls of 500, 500 and 333 records: Locust prints the mean as a float.
        row("PutRecords", "s", 3, **{"Average Content Size": repr(1333 / 3)}),
        row("e2e", "event->postgres", 20, e2e_failures, **{"99%": p99}),
        row("e2e", "event->redis", 20),
        row("", "Aggregated", 43),
    ]
    if failed_records:
        rows.append(row("PutRecords.failed-record", "s", failed_records, failed_records))
    return rows


def failures(codes: dict[str, int]) -> list[dict[str, str]]:
    return [
        {"Method": "PutRecords.failed-record", "Name": "s", "Error": code, "Occurrences": str(n)}
        for code, n in codes.items()
    ]


def test_counts_come_from_the_csv_exactly() -> None:
    summary = summarize(
        stats(failed_records=3),
        failures({"ProvisionedThroughputExceededException": 3}),
        duration_s=10,
        thresholds=Thresholds(max_fail_ratio=0.01),
        e2e_expected=True,
    )
    assert summary.records_attempted == 1333
    assert summary.records_failed == 3
    assert summary.records_sent == 1330
    assert summary.failed_by_code == {"ProvisionedThroughputExceededException": 3}
    assert summary.records_per_s == 133.0
    body = summary.as_dict()
    assert body["e2e_ms"]["event_to_postgres"] == {
        "count": 20,
        "failures": 0,
        "p50": 100.0,
        "p95": 200.0,
        "p99": 300.0,
        "max": 350.5,
    }
    assert body["verdict"] == "pass"


def test_fail_ratio_threshold() -> None:
    summary = summarize(
        stats(failed_records=30),
        [],
        duration_s=10,
        thresholds=Thresholds(max_fail_ratio=0.01),
        e2e_expected=True,
    )
    assert not summary.passed
    assert any("fail ratio" in r for r in summary.reasons)


def test_e2e_p99_threshold_and_unseen_records() -> None:
    summary = summarize(
        stats(e2e_failures=2, p99="1500"),
        [],
        duration_s=10,
        thresholds=Thresholds(max_e2e_p99_ms=1000),
        e2e_expected=True,
    )
    assert summary.reasons == [
        "event->postgres: 2 of 20 followed records never seen",
        "event->postgres: p99 1500 ms > 1000 ms",
    ]


def test_missing_e2e_rows_fail_only_when_expected() -> None:
    rows = [r for r in stats() if r["Type"] != "e2e"]
    expected = summarize(rows, [], duration_s=1, thresholds=Thresholds(), e2e_expected=True)
    assert len(expected.reasons) == 2
    assert expected.as_dict()["e2e_ms"]["event_to_redis"]["p99"] is None
    off = summarize(rows, [], duration_s=1, thresholds=Thresholds(), e2e_expected=False)
    assert off.passed


def test_nothing_sent_fails() -> None:
    summary = summarize([], [], duration_s=1, thresholds=Thresholds(), e2e_expected=False)
    assert summary.reasons == ["no record was sent"]


def test_history_rates_are_differences_of_cumulative_counts() -> None:
    def h(ts: int, type_: str, name: str, count: int, size: float, failed: int = 0) -> dict:
        return {
            "Timestamp": str(ts),
            "User Count": "2",
            "Type": type_,
            "Name": name,
            "Total Request Count": str(count),
            "Total Failure Count": str(failed),
            "Total Average Content Size": str(size),
            "50%": "10",
            "99%": "20",
        }

    rows = [
        h(100, "PutRecords", "s", 0, 0),
        h(101, "PutRecords", "s", 10, 500),  # 5000 records
        h(101, "PutRecords.failed-record", "s", 100, 0, 100),
        h(103, "PutRecords", "s", 30, 500),  # +10000 in 2 s
        h(103, "PutRecords.failed-record", "s", 100, 0, 100),
        h(103, "e2e", "event->postgres", 5, 0),
    ]
    series = history_series(rows)
    tp = series["throughput"]
    assert tp.t == [1.0, 3.0]
    assert tp.values["accepted"] == [4900.0, 5000.0]
    assert tp.values["refused"] == [100.0, 0.0]
    assert series["event->postgres"].values["p99"] == [20.0]


def test_plain_modules_do_not_import_locust() -> None:
    code = (
        "import sys; import simulator.load.cli, simulator.load.summary, simulator.load.shapes,"
        " simulator.load.slices, simulator.load.target, simulator.load.e2e_listener,"
        " simulator.load.report; assert 'locust' not in sys.modules and"
        " 'gevent.monkey' not in sys.modules, 'locust imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plateau_rates_skip_the_settling_seconds() -> None:
    def h(t: int, calls: int) -> dict[str, str]:
        return {
            "Timestamp": str(1000 + t),
            "Type": "PutRecords",
            "Total Request Count": str(calls),
            "Total Average Content Size": "500",
        }

    # 1 call/s for 10 s, then 3 calls/s; a slow first second on each plateau.
    history = [h(t, t) for t in range(11)] + [h(10 + t, 10 + 3 * t) for t in range(1, 11)]
    rates = plateau_rates(history, [(0, 10, 1), (10, 20, 3)], settle_s=2)
    assert [r["accepted_records_per_s"] for r in rates] == [500.0, 1500.0]
    assert plateau_rates([], [(0, 1, 1)]) == []
