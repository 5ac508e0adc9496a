"""A shard runner that dies of an error other than ``StoreError`` must not leave its
shard stalled (issue 10, item 1).

The fault is real, not faked: the DB password is rotated while the secret is
replaced by a malformed document (``SecretFormatError`` on the refresh a refused
login triggers), for long enough that the runner's commit and its lease release both
hit it. Then the secret is repaired. Before the fix the dead runner stayed
registered, the renew thread kept its lease alive forever, and nothing sent after
the repair was ever stored while ``/health/live`` said 200.
"""

from __future__ import annotations

import json
import secrets as secrets_module
import time
from collections.abc import Callable

import pytest
from psycopg import sql

from local_pipeline.services import PostgresServer
from local_pipeline.verify import (
    ProcessorCluster,
    ProcessorProcess,
    compare,
    make_readings,
    wait_until,
    wait_until_stored,
)
from processor.contract.storage import APP_ROLE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEASE_S = 3.0
#: Lease expiry + crash cool-down (5 s) + a plan round + reconnect, with room for a
#: loaded 2-core machine.
RECOVERY_BOUND_S = 30.0


def _summary(process: ProcessorProcess) -> str:
    """The last log lines without tracebacks (they would bury the story)."""
    return "\n".join(
        " ".join(str(e.get(k, "")) for k in ("ts", "level", "msg", "exc_type", "error"))
        for e in process.events()[-40:]
    )


@pytest.mark.timeout(150)
def test_runner_killed_by_a_malformed_secret_gives_its_shard_back(
    make_cluster: Callable[..., ProcessorCluster], restartable_pg_server: PostgresServer
) -> None:
    cluster = make_cluster(1, lease_duration_s=LEASE_S)
    w1 = cluster.start("w1")
    w1.wait_for_event("shard_first_fetch", timeout=30)
    sent = cluster.send(make_readings(10, 5))
    wait_until_stored(cluster.view, sent.keys, timeout=30)

    # The processors log in with the application role's secret (issue 11): break that
    # one. A new password for its login, so that a fresh login needs the secret.
    secrets = cluster.services.secrets_client()
    app_secret_arn = cluster.app_secret_arn
    good = json.loads(secrets.get_secret_value(SecretId=app_secret_arn)["SecretString"])
    new_password = secrets_module.token_urlsafe(24)
    with restartable_pg_server.admin_connection(cluster.database) as admin:
        admin.execute(
            sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                sql.Identifier(good["username"]), sql.Literal(new_password)
            )
        )
    # A reshaped secret (keys renamed): a refresh raises SecretFormatError.
    secrets.put_secret_value(
        SecretId=app_secret_arn,
        SecretString=json.dumps({"user": good["username"], "pass": new_password}),
    )
    with restartable_pg_server.admin_connection(cluster.database) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = %s AND pid <> pg_backend_pid()",
            (good["username"],),
        )
    # Records in flight make the runner commit (and fail) while the secret is broken.
    deadline = time.monotonic() + 8
    seq = 5
    while time.monotonic() < deadline:
        sent.merge(cluster.send(make_readings(10, 1, first_seq=seq)))
        seq += 1
        time.sleep(0.5)
    crashed = w1.wait_for_event("runner_crashed", timeout=10)

    secrets.put_secret_value(
        SecretId=app_secret_arn,
        SecretString=json.dumps({**good, "password": new_password}),
    )
    repaired_at = time.monotonic()
    after = cluster.send(make_readings(10, 5, first_seq=seq))
    sent.merge(after)
    missing = sent.keys - wait_until_stored(cluster.view, sent.keys, timeout=RECOVERY_BOUND_S)
    recovery_s = time.monotonic() - repaired_at
    assert not missing, (
        f"{len(missing)} readings not stored {RECOVERY_BOUND_S:.0f} s after the secret was "
        f"repaired (runner crashes logged: {len(crashed)}): the shard is stalled\n" + _summary(w1)
    )
    print(f"recovered {recovery_s:.1f} s after the secret was repaired")
    report = compare(sent.keys, cluster.view)
    assert report.ok, report.summary()
    assert crashed, "the fault did not kill the runner: the test proves nothing\n" + _summary(w1)
    assert w1.alive()
    assert wait_until(lambda: w1.health("/health/live")[0] == 200, timeout=10)


STALL_S = 30.0


@pytest.mark.timeout(180)
def test_a_shard_that_cannot_commit_makes_liveness_fail_until_it_advances(
    make_cluster: Callable[..., ProcessorCluster],
) -> None:
    """A privilege revoked from the app role (``InsufficientPrivilege``: fatal, the
    runner gives its lease up and is retried after a cool-down) stalls the shard
    while PostgreSQL answers: after ``TAP_SHARD_STALL_S`` ``/health/live`` fails so
    that ECS replaces the task; once the grant is back the shard advances, liveness
    recovers, and nothing is lost. Before the fix liveness stayed 200 throughout."""
    cluster = make_cluster(1, lease_duration_s=LEASE_S, shard_stall_s=STALL_S)
    w1 = cluster.start("w1")
    w1.wait_for_event("shard_first_fetch", timeout=30)
    sent = cluster.send(make_readings(5, 5))
    wait_until_stored(cluster.view, sent.keys, timeout=30)
    assert w1.health("/health/live")[0] == 200

    with cluster.services.postgres.admin_connection(cluster.database) as admin:
        admin.execute(f"REVOKE INSERT ON tap.readings FROM {APP_ROLE}")
    try:
        stalled_at = time.monotonic()
        sent.merge(cluster.send(make_readings(5, 5, first_seq=5)))
        assert w1.wait_for_event("runner_crashed", timeout=20), _summary(w1)
        went_unhealthy = wait_until(
            lambda: w1.health("/health/live")[0] == 503, timeout=STALL_S + 30
        )
        unhealthy_after = time.monotonic() - stalled_at
        status, body = w1.health("/health/live")
        assert went_unhealthy, f"liveness stayed {status}: {body}\n" + _summary(w1)
        assert body["stalled_shards"] == ["shardId-000000000000"], body
        print(f"liveness failed {unhealthy_after:.1f} s after the shard stalled")
    finally:
        with cluster.services.postgres.admin_connection(cluster.database) as admin:
            admin.execute(f"GRANT INSERT ON tap.readings TO {APP_ROLE}")
    stored = wait_until_stored(cluster.view, sent.keys, timeout=RECOVERY_BOUND_S)
    assert sent.keys <= stored, _summary(w1)
    assert compare(sent.keys, cluster.view).ok
    assert wait_until(lambda: w1.health("/health/live")[0] == 200, timeout=10)
    assert w1.alive()
