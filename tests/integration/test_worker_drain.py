"""Throughput of one processor process draining a pre-filled four-shard stream into
real PostgreSQL and Redis (the "Processor: end-to-end drain" figure of
docs/BENCHMARKS.md).

The suite runs a small drain (``TAP_DRAIN_RECORDS``, default 8 000) so the
measurement cannot rot; the published figure comes from::

    TAP_DRAIN_RECORDS=100000 .venv/bin/pytest tests/integration/test_worker_drain.py -s
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from e2e.fixtures import FreshDatabase
from local_pipeline.services import LocalServices
from local_pipeline.verify import ProcessorCluster, compare, event_time, make_readings, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), start-up included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(600)
def test_one_processor_drains_a_prefilled_stream(
    local_services: LocalServices,
    make_stream: Callable[..., str],
    fresh_database: FreshDatabase,
    clean_redis: Any,
    db_secret_arn: str,
    redis_secret_arn: str,
    tmp_path: Path,
) -> None:
    total = int(os.environ.get("TAP_DRAIN_RECORDS", "8000"))
    limit = os.environ.get("TAP_DRAIN_LIMIT", "1000")
    devices = 500
    cluster = ProcessorCluster(
        local_services,
        make_stream(4),
        fresh_database.name,
        db_secret_arn,
        redis_secret_arn,
        tmp_path / "logs",
        defaults={"lease_duration_s": 10, "get_records_limit": limit},
    )
    try:
        records = make_readings(devices, total // devices, start=datetime.now(UTC))
        sent = cluster.send(records)
        assert sent.records == len(records)

        worker = cluster.start("bench")
        fetched = worker.wait_for_event("shard_first_fetch", timeout=30, count=4)
        assert len(fetched) == 4, worker.tail()
        began = min(event_time(e) for e in fetched)
        assert wait_until(
            lambda: cluster.view.count_readings() >= len(sent.keys),
            timeout=max(60.0, total / 500),
            interval=0.2,
        ), worker.tail()
        last_commit = cluster.view._run(
            lambda c: c.execute("SELECT max(processed_at) FROM tap.readings").fetchone()[0]
        )
        seconds = last_commit.timestamp() - began
        rate = len(sent.keys) / seconds
        cpu = _cpu_seconds(worker.pid)
        report = compare(sent.keys, cluster.view)
        assert report.ok, report.summary()
        print(
            f"\nprocessor drain: {len(sent.keys)} readings, 4 shards, limit {limit}, "
            f"{devices} devices: {seconds:.2f} s from first GetRecords to last commit "
            f"= {rate:,.0f} readings/s (one process, 2 cores shared with PostgreSQL, "
            f"Redis and kinesalite); processor CPU {cpu:.1f} s since start "
            f"= {len(sent.keys) / cpu:,.0f} readings per CPU second; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        time.sleep(0.5)
    finally:
        cluster.stop_all()
