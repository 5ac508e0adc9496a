"""Black-holed connections (issue 10, item 3): PostgreSQL, then Redis, stop answering
mid-stream without closing (a failed-over endpoint dropping packets, a middlebox
that acknowledges and drops, a frozen server), then the endpoint works again for new
connections. The processor must give up on the dead connections by its own
client-side bounds (processor/client_timeouts.py) and recover within a stated bound,
with nothing lost or stored twice.

A local TCP proxy (``local_pipeline.services.blackhole_proxy``) sits between the processor and
the real server. Before the fix the PostgreSQL case never recovered: a commit (and
the renew and plan threads) waited forever on a socket the peer's kernel kept
acknowledging, where neither TCP keepalives nor ``tcp_user_timeout`` can fire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local_pipeline.services import LocalServices
from local_pipeline.services.blackhole_proxy import BlackHoleProxy
from local_pipeline.verify import (
    ProcessorCluster,
    ProcessorProcess,
    SendResult,
    compare,
    make_readings,
    redis_latest_mismatches,
    send_paced,
    wait_until,
    wait_until_stored,
)
from processor.client_timeouts import (
    PG_CALL_MARGIN_S,
    PG_STATEMENT_TIMEOUT_MS,
    REDIS_SOCKET_TIMEOUT_S,
)
from processor.kinesis_source import BACKOFF_MAX_S

pytestmark = [pytest.mark.faults, pytest.mark.slow]

#: How long the endpoint stays black-holed (new connections held silently too).
BLACKHOLE_S = 15.0
#: The stated bound for PostgreSQL, counted from the moment the endpoint works again:
#: a commit stuck on a dead connection is ended by the client-side deadline
#: (statement timeout + margin, counted from before the black hole), then retried
#: after at most one back-off; a lease lost meanwhile (10 s) is taken again on the
#: next plan round after the crash-free exit. Everything sent before must be stored.
PG_RECOVERY_BOUND_S = PG_STATEMENT_TIMEOUT_MS / 1000 + PG_CALL_MARGIN_S + BACKOFF_MAX_S + 15
#: Redis: the cache is marked stale on the first timed-out call (socket timeout);
#: the chores ping it every second and reconcile the latest readings from PostgreSQL.
REDIS_RECOVERY_BOUND_S = 4 * REDIS_SOCKET_TIMEOUT_S + 15


def _send_in_background(
    cluster: ProcessorCluster, records: list[Any], seconds: float
) -> tuple[threading.Thread, SendResult]:
    result = SendResult()

    def run() -> None:
        result.merge(send_paced(cluster.kinesis, cluster.stream, records, seconds=seconds))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


@pytest.fixture
def pg_proxy(local_services: LocalServices) -> Iterator[BlackHoleProxy]:
    pg = local_services.postgres
    with BlackHoleProxy(pg.host, pg.port) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy(local_services: LocalServices) -> Iterator[BlackHoleProxy]:
    cache = local_services.redis
    with BlackHoleProxy(cache.host, cache.port) as proxy:
        yield proxy


@pytest.mark.timeout(240)
def test_postgres_black_holed_mid_stream_recovers_within_the_bound(
    make_cluster: Callable[..., ProcessorCluster], pg_proxy: BlackHoleProxy
) -> None:
    cluster = make_cluster(2)  # the task's defaults: 10 s lease
    w1 = cluster.start("w1", db_host=pg_proxy.host, db_port=pg_proxy.port)
    w1.wait_ready(timeout=60)
    w1.wait_for_event("shard_first_fetch", timeout=30, count=2)
    thread, sent = _send_in_background(cluster, make_readings(20, 40), seconds=10)
    time.sleep(4)
    pg_proxy.blackhole()
    time.sleep(BLACKHOLE_S)
    pg_proxy.restore()
    restored_at = time.monotonic()
    thread.join(timeout=60)
    stored = wait_until_stored(cluster.view, sent.keys, timeout=PG_RECOVERY_BOUND_S + 30)
    recovery_s = time.monotonic() - restored_at
    report = compare(sent.keys, cluster.view)
    assert report.ok, report.summary() + "\n" + _summary(w1)
    assert sent.keys <= stored
    assert recovery_s <= PG_RECOVERY_BOUND_S, (
        f"recovered {recovery_s:.1f} s after the endpoint came back; bound "
        f"{PG_RECOVERY_BOUND_S:.0f} s\n" + _summary(w1)
    )
    assert pg_proxy.black_holed > 0, "no connection was black-holed: the test proves nothing"
    assert w1.alive()
    assert wait_until(lambda: w1.health("/health/live")[0] == 200, timeout=10)
    print(
        f"PostgreSQL black-holed {BLACKHOLE_S:.0f} s ({pg_proxy.black_holed} connections): "
        f"all {len(sent.keys)} readings stored {recovery_s:.1f} s after it came back "
        f"(bound {PG_RECOVERY_BOUND_S:.0f} s); lost {len(report.lost)}, "
        f"duplicated {len(report.duplicated)}; deadline hits logged "
        f"{len(w1.events('pg_call_deadline'))}"
    )


@pytest.mark.timeout(240)
def test_redis_black_holed_mid_stream_recovers_within_the_bound(
    make_cluster: Callable[..., ProcessorCluster],
    redis_proxy: BlackHoleProxy,
    local_services: LocalServices,
) -> None:
    cluster = make_cluster(2)
    w1 = cluster.start("w1", redis_host=redis_proxy.host, redis_port=redis_proxy.port)
    w1.wait_ready(timeout=60)
    w1.wait_for_event("shard_first_fetch", timeout=30, count=2)
    thread, sent = _send_in_background(cluster, make_readings(20, 40), seconds=10)
    time.sleep(4)
    redis_proxy.blackhole()
    blackholed_at = time.monotonic()
    # PostgreSQL goes on while Redis is silent: each batch pays at most one timeout.
    thread.join(timeout=60)
    during = wait_until_stored(cluster.view, sent.keys, timeout=30)
    stored_during_s = time.monotonic() - blackholed_at
    assert sent.keys <= during, "PostgreSQL writes stalled behind a black-holed Redis"
    time.sleep(max(0.0, BLACKHOLE_S - stored_during_s))
    redis_proxy.restore()
    restored_at = time.monotonic()
    client = local_services.redis.client()
    mismatches: list[str] = []
    try:

        def consistent() -> bool:
            nonlocal mismatches
            mismatches = redis_latest_mismatches(client, cluster.view.latest_per_device())
            return not mismatches and w1.health()[0] == 200

        assert wait_until(consistent, timeout=REDIS_RECOVERY_BOUND_S + 30), (
            str(mismatches[:5]) + "\n" + _summary(w1)
        )
    finally:
        client.close()
    recovery_s = time.monotonic() - restored_at
    report = compare(sent.keys, cluster.view)
    assert report.ok, report.summary()
    assert recovery_s <= REDIS_RECOVERY_BOUND_S, f"{recovery_s:.1f} s\n" + _summary(w1)
    assert redis_proxy.black_holed > 0, "no connection was black-holed: the test proves nothing"
    assert w1.alive()
    print(
        f"Redis black-holed {BLACKHOLE_S:.0f} s ({redis_proxy.black_holed} connections): "
        f"PostgreSQL had all {len(sent.keys)} readings {stored_during_s:.1f} s into it; "
        f"Redis latest == PostgreSQL latest {recovery_s:.1f} s after it came back "
        f"(bound {REDIS_RECOVERY_BOUND_S:.0f} s); lost {len(report.lost)}, "
        f"duplicated {len(report.duplicated)}"
    )


def _summary(process: ProcessorProcess) -> str:
    return "\n".join(
        " ".join(str(e.get(k, "")) for k in ("ts", "level", "msg", "exc_type", "error"))
        for e in process.events()[-40:]
    )
