"""The read side of summary.json: per-endpoint latencies, the anomaly stream's delay,
which store answered, and the read verdict. Pure, like :mod:`simulator.load.summary`.

``reads`` in summary.json::

    {"requests": N, "failures": F, "fail_ratio": r, "requests_per_s": x,
     "endpoints": {"/devices/{id}/latest": {count, failures, p50, p95, p99, max}, ...},
     "stream": {"anomaly->stream": {count, failures, p50, p95, p99, max}},
     "answered_from": {"/devices/{id}/latest": {"redis/hit": n, ...}, ...},
     "fleet_devices_seen_on_boards": n}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.load.read_mix import READ_REQUEST_TYPE, STREAM_NAME, STREAM_REQUEST_TYPE
from simulator.load.summary import LatencyStats, _latency, find_row


@dataclass(frozen=True, slots=True)
class ReadThresholds:
    max_fail_ratio: float = 0.01
    #: None: the stream's delay is reported, not judged (the benchmark judges it).
    max_stream_p99_ms: float | None = None


def read_endpoints(stats_rows: Iterable[Mapping[str, str]]) -> dict[str, LatencyStats]:
    """Latency per read request name (every ``GET`` row of locust_stats.csv)."""
    return {
        row["Name"]: _latency(row) for row in stats_rows if row.get("Type") == READ_REQUEST_TYPE
    }


def merge_sources(paths: Iterable[Path]) -> dict[str, Any]:
    """Sum the answered-from counts the read users' processes wrote."""
    answered: dict[str, dict[str, int]] = {}
    seen = 0
    for path in paths:
        document = json.loads(path.read_text())
        seen = max(seen, int(document.get("fleet_devices_seen_on_boards", 0)))
        for kind, counts in document.get("answered_from", {}).items():
            into = answered.setdefault(kind, {})
            for key, count in counts.items():
                into[key] = into.get(key, 0) + int(count)
    return {"answered_from": answered, "fleet_devices_seen_on_boards": seen}


def summarize_reads(
    stats_rows: list[dict[str, str]],
    *,
    duration_s: float,
    sources: Mapping[str, Any],
    thresholds: ReadThresholds,
) -> tuple[dict[str, Any], list[str]]:
    """summary.json's ``reads`` and the read verdict's reasons (empty: pass)."""
    endpoints = read_endpoints(stats_rows)
    stream = _latency(find_row(stats_rows, STREAM_REQUEST_TYPE, STREAM_NAME))
    requests = sum(s.count for s in endpoints.values())
    failures = sum(s.failures for s in endpoints.values())
    ratio = failures / requests if requests else 0.0
    body = {
        "requests": requests,
        "failures": failures,
        "fail_ratio": round(ratio, 6),
        "requests_per_s": round(requests / duration_s, 1) if duration_s > 0 else 0.0,
        "endpoints": {name: stats.as_dict() for name, stats in sorted(endpoints.items())},
        "stream": {STREAM_NAME: stream.as_dict()},
        **sources,
    }
    reasons: list[str] = []
    if requests == 0:
        reasons.append("reads: no read request was made")
    if ratio > thresholds.max_fail_ratio:
        reasons.append(
            f"reads: fail ratio {ratio:.4%} > {thresholds.max_fail_ratio:.4%}"
            f" ({failures} of {requests} requests)"
        )
    limit = thresholds.max_stream_p99_ms
    if limit is not None and stream.p99_ms is not None and stream.p99_ms > limit:
        reasons.append(f"{STREAM_NAME}: p99 {stream.p99_ms:.0f} ms > {limit:.0f} ms")
    return body, reasons


def format_reads(reads: Mapping[str, Any]) -> str:
    """The read table ``tap load`` prints under the write figures."""

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    lines = [
        f"  reads: {reads['requests']} requests, {reads['failures']} failed"
        f" ({reads['fail_ratio']:.3%}), {reads['requests_per_s']:,.1f}/s average"
    ]
    rows = [*reads["endpoints"].items(), *reads["stream"].items()]
    width = max((len(name) for name, _ in rows), default=10)
    for name, stats in rows:
        lines.append(
            f"    {name:<{width}}  p50/p95/p99 {fmt(stats['p50'])}/{fmt(stats['p95'])}/"
            f"{fmt(stats['p99'])} ms  ({stats['count']} requests, {stats['failures']} failed)"
        )
    return "\n".join(lines)
