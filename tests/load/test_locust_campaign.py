"""A short headless Locust campaign against the local stack: real PostgreSQL and
Redis, kinesalite, two real processor processes on a four-shard stream, and
``tap load`` writing its report folder with non-empty end-to-end stats."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.fixtures import FreshDatabase
from local_pipeline.services import LocalServices
from local_pipeline.verify import ProcessorCluster, wait_until
from simulator.load import cli
from simulator.load.summary import E2E, FAILED_RECORD, PUT_RECORDS, find_row, read_csv
from simulator.load.target import Target

pytestmark = [pytest.mark.load, pytest.mark.slow]


@pytest.fixture
def cluster(make_cluster: Callable[..., ProcessorCluster]) -> ProcessorCluster:
    return make_cluster(4)


@pytest.mark.timeout(240)
def test_short_campaign_reports_e2e_latency(
    cluster: ProcessorCluster,
    local_services: LocalServices,
    fresh_database: FreshDatabase,
    tmp_path: Path,
) -> None:
    names = ["p1", "p2"]
    for name in names:
        cluster.start(name)
    held = cluster.wait_balanced(names, [2, 2], timeout=60)
    assert sorted(len(s) for s in held.values()) == [2, 2], f"{held}\n{cluster.logs()}"

    redis = local_services.redis
    target = Target(
        kind="local",
        stream_name=cluster.stream,
        region=local_services.client_environment()["AWS_REGION"],
        aws_environment=local_services.client_environment(),
        pg_dsn=fresh_database.dsn(),
        redis_url=redis.url(),
        redis_ca=str(redis.ca_path) if redis.ca_path else None,
        source="test",
    )
    target_file = tmp_path / "target.json"
    target_file.write_text(target.to_json())
    report = tmp_path / "report"

    code = cli.main(
        [
            "--target", str(target_file),
            "--shape", "ramp",
            "--users", "2",
            "--duration", "20s",
            "--drain", "8s",
            "--devices", "100",
            "--rate", "5",
            "--e2e-sample", "0.05",
            # The machine is shared with other suites: this test proves the stats
            # exist and the counts are honest, not a latency target.
            "--max-e2e-p99-ms", "30000",
            "--report", str(report),
        ]
    )  # fmt: skip

    log = (report / "locust.log").read_text(errors="replace") if report.exists() else ""
    assert code == cli.EXIT_PASS, f"exit {code}\n{log[-3000:]}\n{cluster.logs()}"
    for name in (
        "report.html",
        "report.png",
        "summary.json",
        "locust_stats.csv",
        "locust_stats_history.csv",
        "locust_failures.csv",
    ):
        assert (report / name).stat().st_size > 0, name

    summary = json.loads((report / "summary.json").read_text())
    stats = read_csv(report / "locust_stats.csv")
    calls = find_row(stats, PUT_RECORDS, cluster.stream)
    assert calls is not None
    # summary.json's counts are Locust's, to the record.
    assert summary["put_records_calls"] == int(calls["Request Count"])
    assert summary["records_attempted"] == round(
        int(calls["Request Count"]) * float(calls["Average Content Size"])
    )
    assert summary["records_failed"] == 0
    assert find_row(stats, FAILED_RECORD) is None
    assert summary["records_sent"] > 1000
    assert summary["verdict"] == "pass", summary["reasons"]

    for name, key in (("event->postgres", "event_to_postgres"), ("event->redis", "event_to_redis")):
        row = find_row(stats, E2E, name)
        assert row is not None, f"no e2e row {name}"
        assert int(row["Request Count"]) > 0
        assert int(row["Failure Count"]) == 0
        assert summary["e2e_ms"][key]["count"] == int(row["Request Count"])
        assert summary["e2e_ms"][key]["p99"] is not None

    # And the pipeline stored exactly what summary.json says Kinesis accepted.
    assert wait_until(
        lambda: cluster.view.count_readings() == summary["records_sent"], timeout=30
    ), f"stored {cluster.view.count_readings()} != sent {summary['records_sent']}"
