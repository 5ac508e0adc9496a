"""report.png from Locust's ``locust_stats_history.csv`` (``--csv-full-history``).

Three panels sharing the time axis (seconds since the first sample):

1. **Throughput**: records/s Kinesis accepted and records/s it refused (from the
   ``PutRecords`` and ``PutRecords.failed-record`` rows), with the user count on a
   second axis.
2. **End-to-end latency**: p50 and p99 of ``event->postgres`` and ``event->redis``
   over Locust's sliding window (its "current" percentiles, about 10 s), in ms.
3. **PutRecords call latency**: p50 and p99 of one call, in ms.
4. With read users (issue 13): **read latency**, p99 of each read endpoint and of
   the anomaly stream's delay (:mod:`simulator.load.read_mix` names), in ms.

The history's counters are cumulative, so rates are differences between rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simulator.load.read_mix import READ_REQUEST_TYPE, STREAM_REQUEST_TYPE
from simulator.load.summary import E2E, E2E_POSTGRES, E2E_REDIS, FAILED_RECORD, PUT_RECORDS


@dataclass(slots=True)
class Series:
    t: list[float] = field(default_factory=list)
    values: dict[str, list[float | None]] = field(default_factory=dict)

    def add(self, t: float, **values: float | None) -> None:
        self.t.append(t)
        for name, value in values.items():
            self.values.setdefault(name, []).append(value)


def _float(row: Mapping[str, str], column: str) -> float | None:
    raw = row.get(column, "")
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def _cumulative_records(row: Mapping[str, str]) -> float:
    return (_float(row, "Total Request Count") or 0.0) * (
        _float(row, "Total Average Content Size") or 0.0
    )


def history_series(rows: Sequence[Mapping[str, str]]) -> dict[str, Series]:
    """Time series: ``throughput``, ``calls``, and one per end-to-end entry (keyed
    by its name, e.g. ``event->postgres``) with ``p50`` and ``p99``."""
    by_entry: dict[tuple[str, str], list[Mapping[str, str]]] = {}
    for row in rows:
        by_entry.setdefault((row.get("Type", ""), row.get("Name", "")), []).append(row)
    t0 = min((_float(r, "Timestamp") or 0.0 for r in rows), default=0.0)
    throughput, calls = Series(), Series()

    puts = next((v for (type_, _), v in by_entry.items() if type_ == PUT_RECORDS), [])
    refused = {
        _float(r, "Timestamp"): _float(r, "Total Failure Count") or 0.0
        for (type_, _), v in by_entry.items()
        if type_ == FAILED_RECORD
        for r in v
    }
    previous: tuple[float, float, float] | None = None
    last_refused = 0.0
    for row in puts:
        ts = _float(row, "Timestamp") or 0.0
        records = _cumulative_records(row)
        failed = refused.get(ts, last_refused)
        last_refused = failed
        if previous is not None and ts > previous[0]:
            dt = ts - previous[0]
            throughput.add(
                ts - t0,
                accepted=max(0.0, (records - previous[1]) - (failed - previous[2])) / dt,
                refused=max(0.0, failed - previous[2]) / dt,
                users=_float(row, "User Count"),
            )
        previous = (ts, records, failed)
        calls.add(ts - t0, p50=_float(row, "50%"), p99=_float(row, "99%"))

    out = {"throughput": throughput, "calls": calls}
    for name in (E2E_POSTGRES, E2E_REDIS):
        e2e = out[name] = Series()
        for row in by_entry.get((E2E, name), []):
            ts = _float(row, "Timestamp") or 0.0
            e2e.add(ts - t0, p50=_float(row, "50%"), p99=_float(row, "99%"))
    for (type_, name), entries in by_entry.items():
        if type_ in (READ_REQUEST_TYPE, STREAM_REQUEST_TYPE):
            read = out[f"read:{name}"] = Series()
            for row in entries:
                ts = _float(row, "Timestamp") or 0.0
                read.add(ts - t0, p50=_float(row, "50%"), p99=_float(row, "99%"))
    return out


def write_png(history: Sequence[Mapping[str, str]], path: Path, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    series = history_series(history)
    reads = {k.removeprefix("read:"): v for k, v in series.items() if k.startswith("read:")}
    panels = 4 if reads else 3
    fig, axes = plt.subplots(panels, 1, figsize=(11, 10 + 3 * (panels - 3)), sharex=True)
    fig.suptitle(title)

    ax = axes[0]
    tp = series["throughput"]
    ax.plot(tp.t, tp.values.get("accepted", []), label="records/s accepted", color="tab:blue")
    ax.plot(tp.t, tp.values.get("refused", []), label="records/s refused", color="tab:red")
    ax.set_ylabel("records/s")
    ax.grid(alpha=0.3)
    users_ax = ax.twinx()
    users_ax.step(tp.t, tp.values.get("users", []), where="post", color="tab:gray", alpha=0.6)
    users_ax.set_ylabel("users", color="tab:gray")
    ax.legend(loc="upper left")
    ax.set_title("Throughput (PutRecords)")

    ax = axes[1]
    plotted = False
    for name, color in ((E2E_POSTGRES, "tab:green"), (E2E_REDIS, "tab:purple")):
        e2e = series[name]
        for pct, style in (("p50", "-"), ("p99", "--")):
            points = [(t, v) for t, v in zip(e2e.t, e2e.values.get(pct, []), strict=False) if v]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, color=color, label=f"{name} {pct}")
                plotted = True
    ax.set_ylabel("ms")
    ax.set_title("End-to-end latency (event time -> stored), sliding window")
    ax.grid(alpha=0.3)
    if plotted:
        ax.legend(loc="upper left")

    ax = axes[2]
    calls = series["calls"]
    for pct, style in (("p50", "-"), ("p99", "--")):
        points = [(t, v) for t, v in zip(calls.t, calls.values.get(pct, []), strict=False) if v]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, style, color="tab:orange", label=f"PutRecords {pct}")
    ax.set_ylabel("ms")
    ax.set_xlabel("seconds since start")
    ax.set_title("PutRecords call latency, sliding window")
    ax.grid(alpha=0.3)
    if calls.t:
        ax.legend(loc="upper left")

    if reads:
        ax = axes[3]
        for name, read in sorted(reads.items()):
            points = [(t, v) for t, v in zip(read.t, read.values.get("p99", []), strict=False) if v]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=f"{name} p99")
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.set_xlabel("seconds since start")
        ax.set_title("Read latency (p99 per endpoint) and anomaly -> stream, sliding window")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
