"""Pytest fixtures for the local stack: real PostgreSQL and Redis, emulated Kinesis
(kinesalite) and AWS control plane (moto). Loaded for every test folder by the root
``conftest.py`` (``pytest_plugins = ["e2e.fixtures"]``).

Servers are session-scoped and start only when a test asks for them: a unit test
that requests none of these fixtures starts nothing. Under pytest-xdist every worker
has its own servers on its own free ports. See docs/LOCAL-STACK.md.

Session (one per worker):
    ``local_services``  LocalServices with all four servers started
    ``pg_server``       PostgresServer (TLS verify-full, db ``tap``, role ``tap_app``)
    ``redis_server``    RedisServer (rediss://, AUTH token)
    ``moto_server``     MotoServer (Secrets Manager, control plane)
    ``kinesis_server``  the Kinesis emulator (kinesalite)
    ``kinesis_client``, ``secrets_client``  boto3 clients pointed at the emulators

Per test:
    ``aws_env``            os.environ patched with the emulator endpoints; returns them
    ``stream_name``        a fresh unique stream name (not created)
    ``make_stream``        ``make_stream(shard_count=1, name=None) -> name``, ACTIVE,
                           deleted after the test
    ``fresh_database``     a new database owned by ``tap_app``, dropped after the test
    ``clean_redis``        the Redis server, flushed before the test
    ``db_secret_arn``, ``redis_secret_arn``  secrets in moto for the processor
    ``restartable_pg_server``, ``restartable_redis_server``  the shared servers, or a
                           skip when they are not ours to restart (TAP_PG_DSN /
                           TAP_REDIS_URL); restarting them breaks other tests' open
                           connections, so prefer:
    ``private_pg_server``, ``private_redis_server``  a server of the test's own (same
                           kind, TLS), stopped after the test; for kill, restart and
                           password-rotation scenarios
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from local_pipeline.services.aws_emulator import HttpEmulator, MotoServer
from local_pipeline.services.local_stack import LocalServices
from local_pipeline.services.postgres import PostgresServer, RestartNotSupported
from local_pipeline.services.redis import RedisServer

if TYPE_CHECKING:
    import psycopg

    from local_pipeline.verify import ProcessorCluster

#: Keep the run folder (logs, PGDATA) even when every test passed.
KEEP_RUN_DIR_ENV = "TAP_KEEP_RUN_DIR"

_kept_run_dirs = pytest.StashKey[list[Path]]()


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def local_run_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """This session's (worker's) run folder: certificates, logs, PGDATA.

    Not under pytest's basetemp: when we run as root PostgreSQL drops to the
    ``postgres`` user, which cannot enter pytest's 0700 folders. Removed at the end
    unless a test failed or TAP_KEEP_RUN_DIR is set (then its path is printed).
    """
    run_dir = Path(
        tempfile.mkdtemp(prefix=f"tap-local-{time.strftime('%Y%m%d-%H%M%S')}-{_worker()}-")
    )
    run_dir.chmod(0o755)
    yield run_dir
    keep = os.environ.get(KEEP_RUN_DIR_ENV) or request.session.testsfailed
    if keep:
        request.config.stash.setdefault(_kept_run_dirs, []).append(run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def local_services_lazy(local_run_dir: Path) -> Iterator[LocalServices]:
    """The run's services, none started yet: each starts on first use."""
    services = LocalServices(local_run_dir)
    try:
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="session")
def local_services(local_services_lazy: LocalServices) -> LocalServices:
    """All four servers started (PostgreSQL, Redis, moto, Kinesis emulator)."""
    return local_services_lazy.start()


@pytest.fixture(scope="session")
def pg_server(local_services_lazy: LocalServices) -> PostgresServer:
    return local_services_lazy.postgres


@pytest.fixture(scope="session")
def redis_server(local_services_lazy: LocalServices) -> RedisServer:
    return local_services_lazy.redis


@pytest.fixture(scope="session")
def moto_server(local_services_lazy: LocalServices) -> MotoServer:
    return local_services_lazy.moto


@pytest.fixture(scope="session")
def kinesis_server(local_services_lazy: LocalServices) -> HttpEmulator:
    return local_services_lazy.kinesis


@pytest.fixture(scope="session")
def kinesis_client(local_services_lazy: LocalServices) -> Any:
    """boto3 Kinesis client on the emulator (one attempt per call: errors surface)."""
    return local_services_lazy.kinesis_client()


@pytest.fixture(scope="session")
def secrets_client(local_services_lazy: LocalServices) -> Any:
    """boto3 Secrets Manager client on moto."""
    return local_services_lazy.secrets_client()


@pytest.fixture
def aws_env(local_services_lazy: LocalServices, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point every boto3 client created in this test at the emulators."""
    environment = local_services_lazy.client_environment()
    # A developer's profile must not leak into tests (it may name real credentials).
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


@pytest.fixture
def stream_name() -> str:
    """A stream name unique to this test (Kinesis names: 1-128 of [a-zA-Z0-9_.-])."""
    return f"tap-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_stream(local_services_lazy: LocalServices) -> Iterator[Callable[..., str]]:
    """``make_stream(shard_count=1, name=None) -> name``: an ACTIVE stream, deleted
    after the test."""
    created: list[str] = []

    def make(shard_count: int = 1, name: str | None = None) -> str:
        name = name or f"tap-test-{uuid.uuid4().hex[:12]}"
        local_services_lazy.create_stream(name, shard_count)
        created.append(name)
        return name

    yield make
    if created:
        client = local_services_lazy.kinesis_client()
        for name in created:
            with contextlib.suppress(Exception):
                client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


@dataclass(frozen=True, slots=True)
class FreshDatabase:
    """A database of its own for one test, owned by the app role."""

    name: str
    server: PostgresServer

    def dsn(self, user: str | None = None, password: str | None = None) -> str:
        """DSN (app role by default) with verify-full TLS when the server has TLS."""
        return self.server.dsn(user, password, database=self.name)

    def admin_connection(self) -> psycopg.Connection[Any]:
        return self.server.admin_connection(self.name)


@pytest.fixture
def fresh_database(pg_server: PostgresServer) -> Iterator[FreshDatabase]:
    """A new empty database (faster than cleaning tables, and no test can see
    another's rows). With TAP_PG_DSN the server's own database is used instead."""
    if not pg_server.supports_restart:
        # Not our server: we may lack CREATE DATABASE; share its database.
        yield FreshDatabase(pg_server.database, pg_server)
        return
    name = f"tap_test_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name)
    try:
        yield FreshDatabase(name, pg_server)
    finally:
        with contextlib.suppress(Exception):
            pg_server.drop_database(name)


@pytest.fixture
def clean_redis(redis_server: RedisServer) -> RedisServer:
    """The Redis server, emptied before the test."""
    redis_server.flush()
    return redis_server


@pytest.fixture
def db_secret_arn(local_services_lazy: LocalServices) -> str:
    """A DB credentials secret in moto (RDS-managed shape) for the app role."""
    return local_services_lazy.create_db_secret()


@pytest.fixture
def redis_secret_arn(local_services_lazy: LocalServices) -> str:
    """A Redis AUTH token secret in moto (``{"auth_token": ...}``)."""
    return local_services_lazy.create_redis_secret()


@pytest.fixture
def private_pg_server(local_services_lazy: LocalServices) -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own (same kind as ``pg_server``: TLS, ``tap``,
    ``tap_app``), for scenarios that kill, restart or rotate it without disturbing
    other tests' connections to the shared one. About 1 s to start."""
    try:
        server = local_services_lazy.spawn_postgres(uuid.uuid4().hex[:8])
    except RestartNotSupported as exc:
        pytest.skip(str(exc))
    yield server
    local_services_lazy.discard(server)


@pytest.fixture
def private_redis_server(local_services_lazy: LocalServices) -> Iterator[RedisServer]:
    """A Redis of this test's own (TLS, AUTH), for restart scenarios."""
    try:
        server = local_services_lazy.spawn_redis(uuid.uuid4().hex[:8])
    except RestartNotSupported as exc:
        pytest.skip(str(exc))
    yield server
    local_services_lazy.discard(server)


@pytest.fixture
def restartable_pg_server(pg_server: PostgresServer) -> PostgresServer:
    if not pg_server.supports_restart:
        pytest.skip("PostgreSQL comes from TAP_PG_DSN: not ours to restart or rotate")
    return pg_server


@pytest.fixture
def restartable_redis_server(redis_server: RedisServer) -> RedisServer:
    if not redis_server.supports_restart:
        pytest.skip("Redis comes from TAP_REDIS_URL: not ours to restart")
    return redis_server


@pytest.fixture
def make_cluster(
    local_services: LocalServices,
    make_stream: Callable[..., str],
    fresh_database: FreshDatabase,
    clean_redis: RedisServer,
    db_secret_arn: str,
    redis_secret_arn: str,
    tmp_path: Path,
) -> Iterator[Callable[..., ProcessorCluster]]:
    """``make_cluster(shards=4, **settings)``: a fresh stream, database and Redis for
    real ``python -m processor`` processes started with ``cluster.start(name)``;
    ``settings`` are ProcessorSettings attributes (e.g. ``lease_duration_s=3``).
    Every processor is stopped at teardown."""
    from local_pipeline.verify import ProcessorCluster

    made: list[ProcessorCluster] = []

    def make(shards: int = 4, **settings: Any) -> ProcessorCluster:
        cluster = ProcessorCluster(
            local_services,
            make_stream(shards),
            fresh_database.name,
            db_secret_arn,
            redis_secret_arn,
            tmp_path / "logs",
            defaults=settings,
        )
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop_all()


#: Fixtures whose processors start from the synthesized task environment.
_SYNTH_FIXTURES = frozenset({"make_cluster"})


def pytest_collection_finish(session: pytest.Session) -> None:
    """Find the local stack in the synth cache (or synthesize it, once per source
    tree) before the first test that starts processors: a cold synth takes 10-110 s
    of wall time, which must not count against that test's timeout."""
    if any(_SYNTH_FIXTURES & set(getattr(item, "fixturenames", ())) for item in session.items):
        from local_pipeline.stack_resources import StackResourceError, local_stack

        try:
            local_stack(log=lambda message: print(f"local stack: {message}"))
        except StackResourceError as exc:
            # Each test that needs the stack fails with this error itself; the
            # tests that need none still run.
            print(f"local stack: not synthesized ({exc})")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for run_dir in config.stash.get(_kept_run_dirs, []):
        terminalreporter.write_line(f"local stack run folder kept (logs, PGDATA): {run_dir}")
