"""Scale: records/s of one and of two processor processes draining a pre-filled stream.

The stream (4 shards, kinesalite) is filled once with fleet records (1,000 devices,
1 % anomalous, 0.5 % poison) before anything is timed. Each configuration then gets
a fresh database and an empty Redis, so it starts from ``TRIM_HORIZON`` of the same
records with no checkpoint, and its processors are started together.

The rate is readings stored / (last commit - first GetRecords answer): the last
commit from the rows' commit times (``pg_xact_commit_timestamp``), the first answer
from the workers' ``shard_first_fetch`` log events. Process start-up (imports,
migrations, lease acquisition) is excluded, and reported separately as ``wall_s``.

This machine has 2 cores, and kinesalite, PostgreSQL, Redis and this harness share
them with the processors: two processes cannot double the rate here; the figure
shows whether a second process adds anything on the same cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from psycopg import sql

from bench.machine import LoadWindow
from bench.stack import BenchStack
from local_pipeline.verify import ProcessorCluster, event_time, fleet_records, wait_until
from processor.contract.storage import READINGS_TABLE
from simulator.fleet import Fleet

SHARDS: Final = 4
DEVICES: Final = 1_000

_LAST_COMMIT_SQL: Final = sql.SQL(
    "SELECT count(*), extract(epoch FROM max(pg_xact_commit_timestamp(xmin))) FROM {}"
).format(sql.Identifier(*READINGS_TABLE.split(".")))


@dataclass(frozen=True, slots=True)
class ScaleOptions:
    records: int = 60_000
    processes: tuple[int, ...] = (1, 2)
    timeout_s: float = 600.0


def _prefill(cluster: ProcessorCluster, records: int) -> tuple[int, float]:
    """Put ``records`` fleet records into the stream; (readings sent, seconds)."""

    start = datetime.now(UTC) - timedelta(seconds=records / DEVICES + 60)
    fleet = Fleet(DEVICES, 11, anomaly_rate=0.0004, poison_rate=0.005, start=start)
    started = time.perf_counter()
    readings = 0
    for offset in range(0, records, 5_000):
        sent = cluster.send(fleet_records(fleet.generate(min(5_000, records - offset))))
        readings += len(sent.keys)
    return readings, time.perf_counter() - started


def _drain(
    stack: BenchStack,
    filled: ProcessorCluster,
    processes: int,
    readings: int,
    options: ScaleOptions,
    log_dir: Path,
) -> dict[str, Any]:
    # Same stream, new database: no checkpoints, so the workers start at TRIM_HORIZON.
    cluster = ProcessorCluster(
        filled.services,
        filled.stream,
        stack.fresh_database(f"scale{processes}"),
        filled.db_secret_arn,
        filled.redis_secret_arn,
        log_dir / f"{processes}p",
    )
    stack.services.redis.flush()
    names = [f"w{i + 1}" for i in range(processes)]
    with LoadWindow() as load:
        started = time.time()
        for name in names:
            cluster.start(name)
        done = wait_until(
            lambda: cluster.view.count_readings() >= readings, timeout=options.timeout_s
        )
        wall = time.time() - started
    cluster.stop_all()
    first_fetch = min(
        (event_time(e) for p in cluster.processes.values() for e in p.events("shard_first_fetch")),
        default=started,
    )
    with stack.postgres.admin_connection(cluster.database) as conn:
        row = conn.execute(_LAST_COMMIT_SQL).fetchone()
    stored = int(row[0]) if row else 0
    span = float(row[1]) - first_fetch if row and row[1] is not None else 0.0
    return {
        "processes": processes,
        "stored_readings": stored,
        "complete": bool(done),
        "drain_s": span,
        "records_per_s": stored / span if span > 0 else 0.0,
        "wall_s": wall,
        **load.as_json(),
    }


def run(stack: BenchStack, options: ScaleOptions, log_dir: Path) -> dict[str, Any]:
    stack.enable_commit_timestamps()
    cluster: ProcessorCluster = stack.cluster(SHARDS, "scale", log_dir)
    try:
        readings, fill_s = _prefill(cluster, options.records)
        runs = [_drain(stack, cluster, n, readings, options, log_dir) for n in options.processes]
    finally:
        cluster.stop_all()
    by_count = {r["processes"]: r for r in runs}
    one = by_count.get(1, runs[0])["records_per_s"]
    two = by_count.get(2, runs[-1])["records_per_s"]
    return {
        "records_per_s_1_process": one,
        "records_per_s_2_processes": two,
        "speedup_2_vs_1": two / one if one else 0.0,
        "records": options.records,
        "readings": readings,
        "shards": SHARDS,
        "prefill_s": fill_s,
        "nproc_note": "2 cores shared by kinesalite, PostgreSQL, Redis and the processors",
        "runs": runs,
    }
