"""Several real processor processes share a four-shard stream: each shard is read by
exactly one of them, the shards spread evenly, and nothing is lost or duplicated."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from local_pipeline.verify import ProcessorCluster, compare, make_readings, wait_until_stored

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cluster(make_cluster: Callable[..., ProcessorCluster]) -> ProcessorCluster:
    return make_cluster(4, lease_duration_s=3)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("workers", "expected"), [(2, [2, 2]), (3, [1, 1, 2])])
def test_workers_balance_four_shards(
    cluster: ProcessorCluster, workers: int, expected: list[int]
) -> None:
    names = [f"w{i}" for i in range(1, workers + 1)]
    for name in names:
        cluster.start(name)
    sent = cluster.send(make_readings(60, 40))
    assert len(sent.shards) == 4, sent.shards

    wait_until_stored(cluster.view, sent.keys, timeout=45)
    held = cluster.wait_balanced(names, expected, timeout=30)
    report = compare(sent.keys, cluster.view)
    assert report.ok, report.summary() + "\n" + cluster.logs()
    counts = sorted(len(shards) for shards in held.values())
    assert counts == expected, f"{held}\n{cluster.logs()}"
    # Each shard has exactly one owner and every shard is owned.
    owned = [s for shards in held.values() for s in shards]
    assert len(owned) == len(set(owned)) == 4
    # The workers agree with the lease table (their readiness answer).
    for name in names:
        status, body = cluster.processes[name].health()
        assert status == 200, body
        assert sorted(body["leases"]) == held[name]
        live, body = cluster.processes[name].health("/health/live")
        assert live == 200 and body["ok"] is True, body


def test_bad_configuration_exits_2_naming_each_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "processor"],
        env={"PATH": os.environ.get("PATH", ""), "TAP_LEASE_DURATION_S": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    for name in ("TAP_STREAM_NAME", "TAP_DB_HOST", "TAP_DB_SECRET_ARN", "TAP_LEASE_DURATION_S"):
        assert name in result.stderr, result.stderr
