"""Killed in a loop at start-up (issue 10, item 2): a processor that starts while
PostgreSQL is down (the first deploy meeting the master password's rotation, a
Multi-AZ failover, maintenance) must stay live (ECS's health check probes
``/health/live``: start period 30 s, 3 x 15 s) and become ready when PostgreSQL
returns, then process everything with nothing lost.

A real PostgreSQL server is stopped for three minutes (``TAP_FAULTS_PG_DOWN_S``
shortens it for a quick local try; the figure in docs/PROCESSOR.md is from 180 s).
Before the fix ``/health/live`` answered 503 after about 20 s: the start-up retry
loop ticked no clock the liveness check looked at.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

import pytest

from local_pipeline.services import PostgresServer
from local_pipeline.verify import (
    ProcessorCluster,
    ProcessorProcess,
    compare,
    make_readings,
    wait_until,
    wait_until_stored,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

DOWN_S = float(os.environ.get("TAP_FAULTS_PG_DOWN_S", "180"))
#: From PostgreSQL accepting connections to /health/ready 200: the start-up back-off
#: is capped at 5 s, plus migrations, partitions and the first lease round.
READY_BOUND_S = 30.0


@pytest.mark.timeout(DOWN_S + 240)
def test_postgres_down_for_minutes_at_start_keeps_the_process_live(
    make_cluster: Callable[..., ProcessorCluster], restartable_pg_server: PostgresServer
) -> None:
    # The task's defaults (10 s lease): liveness tolerates max(15 s, 2 x lease).
    cluster = make_cluster(2)
    # The migrate step runs first, as in a deployment (issue 11: the processor waits
    # for the schema, it no longer migrates); then PostgreSQL goes away before the
    # processor starts.
    assert cluster.app_secret_arn
    restartable_pg_server.stop()
    try:
        w1 = cluster.start("w1")
        assert wait_until(lambda: _status(w1, "/health/live") is not None, timeout=30)
        before = cluster.send(make_readings(20, 5))  # waits in Kinesis meanwhile
        started = time.monotonic()
        live_failures: list[tuple[float, int | None]] = []
        ready_seen: list[int | None] = []
        while time.monotonic() - started < DOWN_S:
            live = _status(w1, "/health/live")
            if live != 200:
                live_failures.append((round(time.monotonic() - started, 1), live))
            ready_seen.append(_status(w1, "/health/ready"))
            assert w1.alive(), w1.tail()
            time.sleep(1.0)
        assert not live_failures, f"/health/live not 200 at (s, status): {live_failures[:10]}"
        assert 200 not in ready_seen, "ready while PostgreSQL was down"
    finally:
        restartable_pg_server.start()
    back_at = time.monotonic()
    assert wait_until(lambda: _status(w1, "/health/ready") == 200, timeout=READY_BOUND_S), w1.tail()
    ready_after = time.monotonic() - back_at
    after = cluster.send(make_readings(20, 5, first_seq=5))
    sent = before.merge(after)
    stored = wait_until_stored(cluster.view, sent.keys, timeout=60)
    report = compare(sent.keys, cluster.view)
    assert report.ok, report.summary()
    assert sent.keys <= stored
    assert _status(w1, "/health/live") == 200
    print(
        f"PostgreSQL down {DOWN_S:.0f} s at start: live throughout, ready {ready_after:.1f} s "
        f"after it returned; {len(sent.keys)} readings, lost {len(report.lost)}, "
        f"duplicated {len(report.duplicated)}"
    )


def _status(process: ProcessorProcess, path: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return process.health(path)[0]
    return None
