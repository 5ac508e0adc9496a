"""PostgreSQL held down for 3 minutes while every device keeps sending: the
processor falls 3 minutes behind, then catches up. No device is silent, so no
SILENT anomaly may be stored (issue 9: the wall-clock detector called every device
of the shard silent after any lag longer than the limit).

Two variants: the owner keeps its lease through the outage (a 300 s lease: it goes
on with the batches it fetched before the outage) and the lease expires (3 s: a new
runner inherits the lag and the silence registry)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from e2e.steady_fleet import SteadyFleet
from local_pipeline.services import PostgresServer
from local_pipeline.verify import ProcessorCluster, compare, wait_until_stored
from processor.postgres import reads

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 180.0
#: Far below the outage: any lag judged against the wall clock would fire it.
SILENCE_S = 10.0


@pytest.mark.timeout(600)
@pytest.mark.parametrize("lease_s", [300.0, 3.0], ids=["lease-kept", "lease-expired"])
def test_postgres_down_for_three_minutes_raises_no_false_silence(
    make_cluster: Callable[..., ProcessorCluster],
    restartable_pg_server: PostgresServer,
    lease_s: float,
) -> None:
    cluster = make_cluster(2, lease_duration_s=lease_s, silence_after_s=SILENCE_S)
    w1 = cluster.start("w1")
    w1.wait_for_event("shard_first_fetch", timeout=60, count=2)
    fleet = SteadyFleet(cluster.kinesis, cluster.stream, 20, interval=1.0)
    fleet.start()
    try:
        fleet.wait_rounds(15)
        restartable_pg_server.stop()
        try:
            time.sleep(OUTAGE_S)
        finally:
            restartable_pg_server.start()
        fleet.wait_rounds(int(4 * SILENCE_S), timeout=120)  # caught up, then some
    finally:
        sent = fleet.finish()
    wait_until_stored(cluster.view, sent.keys, timeout=120)
    report = compare(sent.keys, cluster.view)
    assert report.ok, report.summary() + "\n" + cluster.logs()
    silent = [a for a in cluster.view._run(reads.anomalies) if a.anomaly_type == "silent"]
    assert silent == [], f"{len(silent)} false silences, e.g. {silent[:3]}\n{cluster.logs()}"
    assert w1.alive(), w1.tail()
