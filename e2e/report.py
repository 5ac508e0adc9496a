"""Measurements and the report of a pipeline run: latency percentiles (event ->
PostgreSQL, event -> Redis), throughput over time, the PNG, the human summary.

How each latency is measured (docs/E2E.md explains the trade-offs):

* **event -> PostgreSQL**: ``tap.readings.processed_at - event_ts`` for every stored
  reading. ``processed_at`` is the processor's clock right before its commit
  transaction starts (processor/postgres/batch_writer.py ``commit_batch``), so the figure
  understates the commit by that transaction's duration (milliseconds).
* **event -> Redis**: the latest-reading hash carries no written-at time
  (processor/redis_cache.py writes the reading's fields only), so
  :class:`RedisArrivalSampler` polls the hashes of a sample of devices and records
  ``(first time a new seq is seen) - event ts``. It is an upper bound, coarse by
  the poll interval (reported as ``resolution_ms``), and it sees only the newest
  reading of a device at each poll (at 1 Hz per device, every reading).

Both use event times from the simulator, taken from the same clock as the
processors' (one machine), so no clock skew enters.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from psycopg import sql

from processor.contract.storage import READINGS_TABLE, LatestField, redis_latest_key
from processor.postgres.identifiers import table_identifier

#: Percentiles every latency block reports.
PERCENTILES: Final = (50, 95, 99)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (no interpolation: the value
    reported is one that was observed)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_summary(values_ms: Iterable[float]) -> dict[str, Any]:
    """``{"count", "p50", "p95", "p99", "max", "mean"}`` in ms (None when empty)."""
    ordered = sorted(values_ms)
    if not ordered:
        return {"count": 0, **{f"p{p}": None for p in PERCENTILES}, "max": None, "mean": None}
    out: dict[str, Any] = {"count": len(ordered)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(percentile(ordered, p), 1)
    out["max"] = round(ordered[-1], 1)
    out["mean"] = round(sum(ordered) / len(ordered), 1)
    return out


# --- PostgreSQL side ----------------------------------------------------------------


def postgres_latencies(
    conn: Any, device_ids: Sequence[str] | None = None
) -> list[tuple[float, float]]:
    """``(processed_at epoch s, latency ms)`` of every stored reading (of some devices)."""
    query = sql.SQL(
        "SELECT extract(epoch FROM processed_at)::float8,"
        " (extract(epoch FROM processed_at - event_ts) * 1000)::float8 FROM {}"
    ).format(table_identifier(READINGS_TABLE))
    if device_ids is None:
        rows = conn.execute(query).fetchall()
    else:
        rows = conn.execute(
            query + sql.SQL(" WHERE device_id = ANY(%s)"), (list(device_ids),)
        ).fetchall()
    return [(float(at), float(ms)) for at, ms in rows]


def per_second(timestamps: Iterable[float], origin: float) -> list[int]:
    """Counts per whole second since ``origin`` (index 0 = the first second)."""
    counts: Counter[int] = Counter(int(t - origin) for t in timestamps if t >= origin)
    if not counts:
        return []
    return [counts.get(i, 0) for i in range(max(counts) + 1)]


# --- Redis side ---------------------------------------------------------------------


class RedisArrivalSampler(threading.Thread):
    """Polls the latest-reading hash of ``device_ids`` every ``interval_s`` and
    records ``seen - event ts`` for each new seq (see the module docstring)."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        device_ids: Sequence[str],
        *,
        interval_s: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="redis-sampler", daemon=True)
        self._factory = client_factory
        self.device_ids = list(device_ids)
        self.interval_s = interval_s
        self._clock = clock
        self._halt = threading.Event()
        self._last: dict[str, bytes] = {}
        self.samples_ms: list[float] = []
        self.errors = 0

    def run(self) -> None:
        client: Any = None
        keys = [redis_latest_key(d) for d in self.device_ids]
        while not self._halt.is_set():
            started = self._clock()
            try:
                if client is None:
                    client = self._factory()
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.hmget(key, LatestField.SEQ, LatestField.TS_US)
                replies = pipe.execute()
                seen = self._clock()
                for device, (seq, ts_us) in zip(self.device_ids, replies, strict=True):
                    if seq is None or ts_us is None or self._last.get(device) == seq:
                        continue
                    first = device not in self._last
                    self._last[device] = seq
                    # The first value seen may have been written before sampling began.
                    if not first:
                        self.samples_ms.append((seen - int(ts_us) / 1e6) * 1000)
            except Exception:
                self.errors += 1
                with contextlib.suppress(Exception):
                    if client is not None:
                        client.close()
                client = None
            self._halt.wait(max(0.0, self.interval_s - (self._clock() - started)))
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def stop(self) -> list[float]:
        self._halt.set()
        self.join(timeout=5)
        return self.samples_ms


# --- outputs ------------------------------------------------------------------------


def write_png(
    path: Path,
    *,
    pg_latencies_ms: Sequence[float],
    redis_latencies_ms: Sequence[float],
    sent_per_second: Sequence[int],
    stored_per_second: Sequence[int],
    title: str,
) -> Path:
    """Latency distribution (left) and throughput over time (right)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    upper = max([*pg_latencies_ms, *redis_latencies_ms, 1.0])
    bins = [upper * i / 60 for i in range(61)]
    if pg_latencies_ms:
        left.hist(pg_latencies_ms, bins=bins, alpha=0.6, label="event → PostgreSQL")
    if redis_latencies_ms:
        left.hist(redis_latencies_ms, bins=bins, alpha=0.6, label="event → Redis (sampled)")
    for values, style in ((pg_latencies_ms, "-"), (redis_latencies_ms, "--")):
        ordered = sorted(values)
        if ordered:
            left.axvline(percentile(ordered, 99), color="black", linestyle=style, linewidth=1)
    left.set_xlabel("latency (ms); vertical lines: p99")
    left.set_ylabel("readings")
    left.set_yscale("log")
    left.set_title("latency distribution")
    left.legend()
    right.plot(range(len(sent_per_second)), sent_per_second, label="sent to Kinesis")
    right.plot(range(len(stored_per_second)), stored_per_second, label="committed to PostgreSQL")
    right.set_xlabel("seconds since the first record")
    right.set_ylabel("records / s")
    right.set_title("throughput")
    right.legend()
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if value < 1 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_summary(report: Mapping[str, Any]) -> None:
    """The short human summary of a demo report (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    ok = report["ok"]
    config = report["config"]
    console.rule(
        f"[bold]tap demo[/] {config['devices']} devices x {config['rate']:g} Hz x "
        f"{config['duration_s']:g} s, {config['processors']} processors — "
        + ("[green]PASS[/]" if ok else "[red]FAIL[/]")
    )
    counts = Table(title="records", show_header=True)
    for column in ("sent", "stored", "lost", "duplicated", "poison sent", "dead-lettered"):
        counts.add_column(column, justify="right")
    counts.add_row(
        *(
            _fmt(report[k])
            for k in ("sent", "stored", "lost", "duplicated", "poison_sent", "dead_lettered")
        )
    )
    console.print(counts)
    latency = Table(title="latency (ms)")
    latency.add_column("path")
    for column in ("p50", "p95", "p99", "max", "n"):
        latency.add_column(column, justify="right")
    for label, key in (
        ("event → PostgreSQL", "event_to_postgres"),
        ("event → Redis", "event_to_redis"),
    ):
        block = report["latency_ms"][key]
        latency.add_row(
            label, *(_fmt(block[k]) for k in ("p50", "p95", "p99", "max")), _fmt(block["count"])
        )
    console.print(latency)
    anomalies = report["anomalies"]
    table = Table(title="anomalies: injected scenarios vs detections")
    for column in ("scenario", "injected", "labelled", "detected", "recall"):
        table.add_column(column, justify="right" if column != "scenario" else "left")
    for name, score in anomalies["score"]["by_scenario"].items():
        injected = anomalies["injected"].get(name, 0)
        if not injected and not score["labels"]:
            continue
        recall = score["recall"]
        table.add_row(
            name,
            str(injected),
            str(score["labels"]),
            str(score["detected"]),
            "-" if recall is None else f"{recall:.0%}",
        )
    console.print(table)
    precision = ", ".join(
        f"{name} {d['precision']:.0%} "
        f"({d['true_positives']}/{d['true_positives'] + d['false_positives']})"
        for name, d in anomalies["score"]["by_detector"].items()
        if d["precision"] is not None
    )
    console.print(f"precision by detector: {precision or '-'}")
    for name, check in report["checks"].items():
        mark = "[green]✓[/]" if check["ok"] else "[red]✗[/]"
        console.print(f"{mark} {name}: {check['detail']}")
    timings = report["timings_s"]
    console.print(
        f"total {timings['total']:.0f} s (setup {timings['setup']:.0f}, simulate "
        f"{timings['simulate']:.0f}, drain {timings['drain']:.1f}, verify {timings['verify']:.1f}, "
        f"teardown {timings['teardown']:.0f}); report: {report['report_dir']}"
    )
