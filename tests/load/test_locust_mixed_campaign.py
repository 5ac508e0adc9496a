"""A short mixed campaign: the Kinesis writers and the read users in one Locust run,
against the local stack (real PostgreSQL and Redis, kinesalite, two real processor
processes, ``tap api``'s application on the same database). Behaviour only, never a
latency figure (speed lives in ``tap bench --only reads``): the reads succeed, ask the
writers' devices, are answered by Redis and by PostgreSQL, and the anomaly stream's
listeners see the anomalies the writers inject."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg import sql

from e2e.fixtures import FreshDatabase
from local_pipeline.services import LocalServices
from local_pipeline.services.api_reader import ApiThread, api_environment
from local_pipeline.verify import ProcessorCluster
from processor.contract.storage import ANOMALIES_TABLE
from simulator.load import cli
from simulator.load.read_mix import MIX_WEIGHTS, ReadKind, ReadMix
from simulator.load.summary import find_row, read_csv
from simulator.load.target import Target

pytestmark = [pytest.mark.load, pytest.mark.slow]

DEVICES = 60


@pytest.mark.timeout(300)
def test_mixed_campaign_reads_real_devices_and_sees_injected_anomalies(
    make_cluster: Callable[..., ProcessorCluster],
    local_services: LocalServices,
    fresh_database: FreshDatabase,
    aws_env: dict[str, str],  # the in-process API reads its secrets from the emulator
    tmp_path: Path,
) -> None:
    cluster = make_cluster(2)
    names = ["p1", "p2"]
    for name in names:
        cluster.start(name)
    held = cluster.wait_balanced(names, [1, 1], timeout=60)
    assert sorted(len(s) for s in held.values()) == [1, 1], f"{held}\n{cluster.logs()}"

    # The processors migrated the database; the API reads it with its read-only logins.
    api_env = api_environment(local_services, fresh_database.name, postgres=fresh_database.server)
    redis = local_services.redis
    with ApiThread(api_env) as api:
        target = Target(
            kind="local",
            stream_name=cluster.stream,
            region=local_services.client_environment()["AWS_REGION"],
            aws_environment=local_services.client_environment(),
            pg_dsn=fresh_database.dsn(),
            redis_url=redis.url(),
            redis_ca=str(redis.ca_path) if redis.ca_path else None,
            source="test",
            api_url=api.url,
        )
        target_file = tmp_path / "target.json"
        target_file.write_text(target.to_json())
        report = tmp_path / "report"
        code = cli.main(
            [
                "--target", str(target_file),
                "--shape", "soak",
                "--users", "2",
                "--duration", "25s",
                "--drain", "5s",
                "--devices", str(DEVICES),
                "--rate", "5",
                # Scenarios (spikes, drifts, stuck sensors, ...) on about 20 devices.
                "--anomaly-rate", "0.003",
                "--e2e-sample", "0.02",
                "--max-e2e-p99-ms", "60000",  # a shared machine: behaviour, not speed
                "--readers", "3",
                "--read-rate", "30",
                "--read-mix", "board",
                "--sse-listeners", "2",
                "--report", str(report),
            ]
        )  # fmt: skip

    log = (report / "locust.log").read_text(errors="replace") if report.exists() else ""
    assert code == cli.EXIT_PASS, f"exit {code}\n{log[-3000:]}\n{cluster.logs()}"
    summary = json.loads((report / "summary.json").read_text())
    reads = summary["reads"]
    stats = read_csv(report / "locust_stats.csv")

    # Every request of the board mix was made, and none failed (a 404 of a device,
    # a board listing a device not in the writers' fleet, a non-JSON answer).
    assert reads["failures"] == 0, json.dumps(reads, indent=1)
    assert set(reads["endpoints"]) == {k.value for k in MIX_WEIGHTS[ReadMix.BOARD]}
    for name, figures in reads["endpoints"].items():
        assert figures["count"] > 0, name
        row = find_row(stats, "GET", name)
        assert row is not None and int(row["Request Count"]) == figures["count"], name
    # The writers and the reads are in the same report.
    assert summary["records_sent"] > 1000 and summary["records_failed"] == 0
    assert summary["e2e_ms"]["event_to_redis"]["count"] > 0

    # The boards showed the writers' devices only (else a failure above) and most
    # of them; boards and latest were answered by Redis, history by PostgreSQL.
    assert DEVICES // 2 <= reads["fleet_devices_seen_on_boards"] <= DEVICES
    answered = reads["answered_from"]
    assert answered[ReadKind.BOARD.value].get("redis/hit", 0) > 0, answered
    assert answered[ReadKind.LATEST.value].get("redis/hit", 0) > 0, answered
    assert set(answered[ReadKind.HISTORY.value]) == {"postgres/None"}, answered

    # The injected anomalies reached the listeners through the API's stream.
    stream = reads["stream"]["anomaly->stream"]
    assert stream["count"] > 0, f"no anomaly event on the stream\n{log[-3000:]}"
    assert stream["failures"] == 0
    # ... and each at most once per listener: no more events than stored anomalies.
    with fresh_database.admin_connection() as conn:
        stored = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*ANOMALIES_TABLE.split(".")))
        ).fetchone()
    assert stored is not None and 0 < stream["count"] <= 2 * stored[0], (stream, stored)
