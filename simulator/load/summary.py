"""summary.json from Locust's CSV: record counts, end-to-end percentiles, verdict.

Pure: it reads rows (dicts, as :class:`csv.DictReader` yields them) and returns
plain values, so the arithmetic and the thresholds are unit-tested without Locust.

The request types and names the campaign fires (one place, shared with the users
and the listener so the summary cannot drift from what is fired):

* ``PutRecords`` / stream: one event per PutRecords call, ``response_length`` =
  records in the call, a failure only when the whole call failed.
* ``PutRecords.failed-record`` / stream: one *failure* event per record Kinesis
  refused (its ``ErrorCode`` is the error in locust_failures.csv), including every
  record of a call that failed as a whole.
* ``e2e`` / ``event->postgres`` and ``event->redis``: one event per followed
  record, response time = arrival - event time; a failure when never seen.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

PUT_RECORDS: Final = "PutRecords"
FAILED_RECORD: Final = "PutRecords.failed-record"
E2E: Final = "e2e"
E2E_POSTGRES: Final = "event->postgres"
E2E_REDIS: Final = "event->redis"
AGGREGATED: Final = "Aggregated"

PERCENTILES: Final = ("50%", "95%", "99%")


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_fail_ratio: float = 0.01
    max_e2e_p99_ms: float = 1000.0
    #: With followed samples, fail when none reached the store (a dead pipeline).
    require_e2e: bool = True


@dataclass(frozen=True, slots=True)
class LatencyStats:
    count: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "failures": self.failures,
            "p50": self.p50_ms,
            "p95": self.p95_ms,
            "p99": self.p99_ms,
            "max": self.max_ms,
        }


@dataclass(slots=True)
class Summary:
    records_attempted: int
    records_failed: int
    calls: int
    calls_failed: int
    duration_s: float
    e2e: dict[str, LatencyStats]
    put_records_ms: LatencyStats
    failed_by_code: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def records_sent(self) -> int:
        """Records Kinesis accepted (attempted minus refused)."""
        return self.records_attempted - self.records_failed

    @property
    def fail_ratio(self) -> float:
        return self.records_failed / self.records_attempted if self.records_attempted else 0.0

    @property
    def records_per_s(self) -> float:
        return self.records_sent / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def passed(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, Any]:
        return {
            "records_attempted": self.records_attempted,
            "records_sent": self.records_sent,
            "records_failed": self.records_failed,
            "fail_ratio": round(self.fail_ratio, 6),
            "failed_by_code": self.failed_by_code,
            "put_records_calls": self.calls,
            "put_records_calls_failed": self.calls_failed,
            "put_records_ms": self.put_records_ms.as_dict(),
            "duration_s": round(self.duration_s, 1),
            "records_per_s": round(self.records_per_s, 1),
            "e2e_ms": {
                "event_to_postgres": self.e2e[E2E_POSTGRES].as_dict(),
                "event_to_redis": self.e2e[E2E_REDIS].as_dict(),
            },
            "verdict": "pass" if self.passed else "fail",
            "reasons": self.reasons,
        }


def _number(row: Mapping[str, str], column: str) -> float | None:
    raw = row.get(column, "")
    if raw in ("", "N/A", None):
        return None
    value = float(raw)
    return None if math.isnan(value) else value


def _count(row: Mapping[str, str] | None, column: str) -> int:
    if row is None:
        return 0
    return int(_number(row, column) or 0)


def _latency(row: Mapping[str, str] | None) -> LatencyStats:
    if row is None:
        return LatencyStats(0, 0, None, None, None, None)
    count = _count(row, "Request Count")
    failures = _count(row, "Failure Count")
    # A record never seen is fired as a failure with the time waited (the timeout):
    # it belongs in the percentiles as "at least that long", as a timed-out request.
    has = count > 0
    return LatencyStats(
        count=count,
        failures=failures,
        p50_ms=_number(row, "50%") if has else None,
        p95_ms=_number(row, "95%") if has else None,
        p99_ms=_number(row, "99%") if has else None,
        max_ms=_number(row, "Max Response Time") if has else None,
    )


def find_row(rows: Iterable[Mapping[str, str]], type_: str, name: str | None = None) -> Any:
    """The stats row of ``type_`` (and ``name``); None when Locust saw no event."""
    for row in rows:
        if row.get("Type") == type_ and (name is None or row.get("Name") == name):
            return row
    return None


def summarize(
    stats_rows: list[dict[str, str]],
    failure_rows: list[dict[str, str]],
    *,
    duration_s: float,
    thresholds: Thresholds,
    e2e_expected: bool,
) -> Summary:
    """Counts from ``locust_stats.csv`` rows, error codes from ``locust_failures.csv``."""
    calls_row = find_row(stats_rows, PUT_RECORDS)
    failed_row = find_row(stats_rows, FAILED_RECORD)
    calls = _count(calls_row, "Request Count")
    # Request Count x Average Content Size = the records of every call (Locust sums
    # response_length for failed events as well; the product is exact in a double).
    attempted = round(calls * (_number(calls_row, "Average Content Size") or 0)) if calls else 0
    failed_by_code: dict[str, int] = {}
    for row in failure_rows:
        if row.get("Method") == FAILED_RECORD:
            code = row.get("Error", "").strip() or "unknown"
            failed_by_code[code] = failed_by_code.get(code, 0) + int(row.get("Occurrences") or 0)
    summary = Summary(
        records_attempted=attempted,
        records_failed=_count(failed_row, "Failure Count"),
        calls=calls,
        calls_failed=_count(calls_row, "Failure Count"),
        duration_s=duration_s,
        e2e={
            E2E_POSTGRES: _latency(find_row(stats_rows, E2E, E2E_POSTGRES)),
            E2E_REDIS: _latency(find_row(stats_rows, E2E, E2E_REDIS)),
        },
        put_records_ms=_latency(calls_row),
        failed_by_code=failed_by_code,
    )
    summary.reasons = verdict_reasons(summary, thresholds, e2e_expected=e2e_expected)
    return summary


def verdict_reasons(summary: Summary, thresholds: Thresholds, *, e2e_expected: bool) -> list[str]:
    """Every broken threshold, in words; empty means pass."""
    reasons: list[str] = []
    if summary.records_attempted == 0:
        reasons.append("no record was sent")
    if summary.fail_ratio > thresholds.max_fail_ratio:
        reasons.append(
            f"fail ratio {summary.fail_ratio:.4%} > {thresholds.max_fail_ratio:.4%}"
            f" ({summary.records_failed} of {summary.records_attempted} records refused)"
        )
    if not e2e_expected:
        return reasons
    for name, stats in summary.e2e.items():
        arrived = stats.count - stats.failures
        if thresholds.require_e2e and arrived == 0:
            reasons.append(f"{name}: no followed record arrived ({stats.failures} never seen)")
            continue
        if stats.failures:
            reasons.append(f"{name}: {stats.failures} of {stats.count} followed records never seen")
        if stats.p99_ms is not None and stats.p99_ms > thresholds.max_e2e_p99_ms:
            reasons.append(
                f"{name}: p99 {stats.p99_ms:.0f} ms > {thresholds.max_e2e_p99_ms:.0f} ms"
            )
    return reasons


def plateau_rates(
    history: list[dict[str, str]],
    bounds: list[tuple[float, float, int]],
    *,
    settle_s: float = 2.0,
) -> list[dict[str, float]]:
    """Records/s Kinesis accepted on each plateau of a step campaign, from the
    cumulative counters of ``locust_stats_history.csv`` (time 0 = its first row).
    The first ``settle_s`` of a plateau are left out: users are still starting.
    """
    first = next((r for r in history if r.get("Timestamp")), None)
    if first is None:
        return []
    t0 = float(first["Timestamp"])
    points: list[tuple[float, float, float]] = []  # (t, cumulative records, refused)
    refused: dict[float, float] = {}
    for row in history:
        if row.get("Type") == FAILED_RECORD:
            refused[float(row["Timestamp"])] = float(row.get("Total Failure Count") or 0)
    for row in history:
        if row.get("Type") == PUT_RECORDS:
            ts = float(row["Timestamp"])
            records = float(row.get("Total Request Count") or 0) * float(
                row.get("Total Average Content Size") or 0
            )
            points.append((ts - t0, records, refused.get(ts, 0.0)))
    out: list[dict[str, float]] = []
    for start, end, users in bounds:
        inside = [p for p in points if start + settle_s <= p[0] <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            continue
        (ta, ra, fa), (tb, rb, fb) = inside[0], inside[-1]
        accepted = (rb - ra) - max(0.0, fb - fa)
        out.append(
            {
                "users": users,
                "from_s": start,
                "to_s": end,
                "accepted_records_per_s": round(accepted / (tb - ta), 1),
                "refused_records": max(0.0, fb - fa),
            }
        )
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
