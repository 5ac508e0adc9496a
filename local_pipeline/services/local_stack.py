"""The local stack's servers as one object: PostgreSQL, Redis, the AWS emulator (moto)
and the Kinesis emulator, in one run folder, each started on first use.

Run folder layout (see docs/LOCAL-STACK.md)::

    <run_dir>/
      tls/        ca.pem (the run's CA), server.crt, server.key
      logs/       postgres.log, redis.log, moto.log, kinesalite.log
      postgres/   data/ (PGDATA), tls/ (the server's private copy of its key)
      redis/      redis.conf
      state.json  written by ``tap local up`` (ports, pids, URLs, CA paths)

Typical use (the pytest fixtures in :mod:`e2e.fixtures` do this)::

    with LocalServices(run_dir) as services:
        services.create_stream("readings", shard_count=4)
        db_arn = services.create_db_secret()
        redis_arn = services.create_redis_secret()
        env = services.processor_environment("readings", db_arn, redis_arn)

``processor_environment`` is the synthesized stack's task environment made local
(:mod:`local_pipeline.stack_resources`): there is no second, hand-built list.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from local_pipeline.services.app_role import ApplicationLogins
from local_pipeline.services.aws_emulator import (
    DUMMY_ACCESS_KEY_ID,
    DUMMY_SECRET_ACCESS_KEY,
    REGION,
    HttpEmulator,
    MotoServer,
    emulator_client,
)
from local_pipeline.services.kinesis_emulator import (
    KINESIS_EMULATOR_ENV,
    Kinesalite,
    KinesisEmulatorKind,
)
from local_pipeline.services.postgres import (
    PG_DSN_ENV,
    PostgresServer,
    RestartNotSupported,
    create_postgres,
)
from local_pipeline.services.redis import REDIS_URL_ENV, RedisServer, create_redis
from local_pipeline.services.tls import RunCertificates

#: The names of the services, in start order (stop is the reverse).
SERVICE_NAMES: Final = ("postgres", "redis", "moto", "kinesis")


def _start_or_clean_up(server: Any) -> None:
    """Start a server; if it does not become healthy, stop what did start."""
    try:
        server.start()
    except BaseException:
        with contextlib.suppress(Exception):
            server.stop()
        raise


class LocalServices:
    """The four local servers of one run; each starts the first time it is used.

    Lazy on purpose: a test that needs only Redis starts only Redis, and a unit test
    that uses none starts nothing.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        environ: Mapping[str, str] | None = None,
        kinesis_emulator: KinesisEmulatorKind | str | None = None,
    ) -> None:
        import os

        self.run_dir = run_dir.resolve()
        self._environ = dict(os.environ if environ is None else environ)
        self.kinesis_kind = KinesisEmulatorKind(
            kinesis_emulator
            or self._environ.get(KINESIS_EMULATOR_ENV)
            or KinesisEmulatorKind.KINESALITE
        )
        self._lock = threading.RLock()
        self._certs: RunCertificates | None = None
        self._postgres: PostgresServer | None = None
        self._redis: RedisServer | None = None
        self._moto: MotoServer | None = None
        self._kinesis: HttpEmulator | None = None
        self._started: list[str] = []
        self._spawned: list[PostgresServer | RedisServer] = []
        #: Migrations with the owner's secret, processors with the application's.
        self.app_logins = ApplicationLogins(self)

    # --- folders -----------------------------------------------------------------

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def certs(self) -> RunCertificates:
        """The run's CA and server certificate (generated on first use)."""
        with self._lock:
            if self._certs is None:
                self._certs = RunCertificates.create(self.run_dir / "tls")
            return self._certs

    @property
    def ca_path(self) -> Path:
        return self.certs.ca_path

    # --- the servers (started on first access) -------------------------------------

    @property
    def postgres(self) -> PostgresServer:
        with self._lock:
            if self._postgres is None:
                server = create_postgres(
                    self.run_dir / "postgres",
                    self.logs_dir / "postgres.log",
                    self.certs,
                    environ=self._environ,
                )
                _start_or_clean_up(server)
                self._postgres = server
                self._started.append("postgres")
            return self._postgres

    @property
    def redis(self) -> RedisServer:
        with self._lock:
            if self._redis is None:
                server = create_redis(
                    self.run_dir / "redis",
                    self.logs_dir / "redis.log",
                    self.certs,
                    environ=self._environ,
                )
                _start_or_clean_up(server)
                self._redis = server
                self._started.append("redis")
            return self._redis

    @property
    def moto(self) -> MotoServer:
        with self._lock:
            if self._moto is None:
                server = MotoServer(self.logs_dir / "moto.log")
                _start_or_clean_up(server)
                self._moto = server
                self._started.append("moto")
            return self._moto

    @property
    def kinesis(self) -> HttpEmulator:
        """The Kinesis emulator (kinesalite, or moto itself with TAP_KINESIS_EMULATOR=moto)."""
        with self._lock:
            if self._kinesis is None:
                if self.kinesis_kind is KinesisEmulatorKind.MOTO:
                    self._kinesis = self.moto
                else:
                    emulator = Kinesalite(self.logs_dir / "kinesalite.log")
                    _start_or_clean_up(emulator)
                    self._kinesis = emulator
                    self._started.append("kinesis")
            return self._kinesis

    def spawn_postgres(self, label: str) -> PostgresServer:
        """Another PostgreSQL of the same kind, started, for a test that crashes or
        restarts it without disturbing the shared one (stopped by :meth:`stop` or by
        the caller). Raises :class:`RestartNotSupported` with ``TAP_PG_DSN``."""
        if self._environ.get(PG_DSN_ENV):
            raise RestartNotSupported("TAP_PG_DSN: no private PostgreSQL can be started")
        server = create_postgres(
            self.run_dir / f"postgres-{label}",
            self.logs_dir / f"postgres-{label}.log",
            self.certs,
            environ=self._environ,
        )
        _start_or_clean_up(server)
        with self._lock:
            self._spawned.append(server)
        return server

    def spawn_redis(self, label: str) -> RedisServer:
        """Another Redis of the same kind, started (see :meth:`spawn_postgres`)."""
        if self._environ.get(REDIS_URL_ENV):
            raise RestartNotSupported("TAP_REDIS_URL: no private Redis can be started")
        server = create_redis(
            self.run_dir / f"redis-{label}",
            self.logs_dir / f"redis-{label}.log",
            self.certs,
            environ=self._environ,
        )
        _start_or_clean_up(server)
        with self._lock:
            self._spawned.append(server)
        return server

    def discard(self, server: PostgresServer | RedisServer) -> None:
        """Stop and forget a server from :meth:`spawn_postgres`/:meth:`spawn_redis`."""
        with self._lock:
            if server in self._spawned:
                self._spawned.remove(server)
        getattr(server, "remove", server.stop)()

    def start(self, *names: str) -> LocalServices:
        """Start the named services now (all when none are named)."""
        for name in names or SERVICE_NAMES:
            if name not in SERVICE_NAMES:
                raise ValueError(f"unknown service {name!r}; expected one of {SERVICE_NAMES}")
            getattr(self, name)
        return self

    @property
    def started(self) -> tuple[str, ...]:
        return tuple(self._started)

    def stop(self) -> None:
        """Stop every started server, last started first."""
        with self._lock:
            servers: dict[str, Any] = {
                "postgres": self._postgres,
                "redis": self._redis,
                "moto": self._moto,
                "kinesis": self._kinesis,
            }
            errors: list[BaseException] = []
            for spawned in reversed(self._spawned):
                try:
                    getattr(spawned, "remove", spawned.stop)()
                except Exception as exc:
                    errors.append(exc)
            self._spawned.clear()
            for name in reversed(self._started):
                server = servers[name]
                try:
                    # Containers are removed, not just stopped, at the end of a run.
                    getattr(server, "remove", server.stop)()
                except Exception as exc:
                    errors.append(exc)
            self._started.clear()
            self._postgres = self._redis = self._moto = self._kinesis = None
            if errors:
                raise errors[0]

    def __enter__(self) -> LocalServices:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what clients need ---------------------------------------------------------

    def client_environment(self) -> dict[str, str]:
        """Variables that point any AWS SDK client at the emulators.

        boto3 honours the per-service ``AWS_ENDPOINT_URL_<SERVICE>`` variables, so the
        processor needs no code path for local use: only its environment differs.
        """
        return {
            "AWS_ENDPOINT_URL": self.moto.endpoint_url,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.moto.endpoint_url,
            "AWS_ENDPOINT_URL_KINESIS": self.kinesis.endpoint_url,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # No instance metadata on a laptop: do not let botocore wait for it.
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def kinesis_client(self) -> Any:
        return emulator_client("kinesis", self.kinesis.endpoint_url)

    def secrets_client(self) -> Any:
        return emulator_client("secretsmanager", self.moto.endpoint_url)

    def create_stream(self, name: str, shard_count: int = 1, *, timeout: float = 30) -> str:
        """Create a stream and wait until it is ACTIVE; returns its ARN."""
        client = self.kinesis_client()
        client.create_stream(StreamName=name, ShardCount=shard_count)
        return self.wait_stream_active(name, timeout=timeout)

    def wait_stream_active(self, name: str, *, timeout: float = 30) -> str:
        """Wait until the stream is ACTIVE (after create, split or merge); its ARN."""
        client = self.kinesis_client()
        deadline = time.monotonic() + timeout
        while True:
            summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
            if summary["StreamStatus"] == "ACTIVE":
                return str(summary["StreamARN"])
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"stream {name} still {summary['StreamStatus']} after {timeout} s"
                )
            time.sleep(0.05)

    def create_db_secret(
        self, name: str | None = None, *, postgres: PostgresServer | None = None
    ) -> str:
        """The DB credentials secret, shaped like the RDS-managed master secret
        (``username``/``password``; the connection keys are harmless extras), for the
        shared PostgreSQL or the given one."""
        db = postgres or self.postgres
        secret = {
            "username": db.app_user,
            "password": db.app_password,
            "engine": "postgres",
            "host": db.host,
            "port": db.port,
            "dbname": db.database,
        }
        return self._create_secret(name or f"tap-local-db-{uuid.uuid4().hex[:8]}", secret)

    def create_redis_secret(
        self, name: str | None = None, *, redis: RedisServer | None = None
    ) -> str:
        """The Redis AUTH token secret (JSON ``{"auth_token": ...}``)."""
        token = (redis or self.redis).token
        return self._create_secret(
            name or f"tap-local-redis-{uuid.uuid4().hex[:8]}", {"auth_token": token}
        )

    def _create_secret(self, name: str, value: Mapping[str, Any]) -> str:
        response = self.secrets_client().create_secret(Name=name, SecretString=json.dumps(value))
        return str(response["ARN"])

    def rotate_db_password(
        self,
        secret_id: str,
        password: str | None = None,
        *,
        postgres: PostgresServer | None = None,
    ) -> str:
        """Rotate the app role's password: ``ALTER ROLE`` first, then the secret (the
        order of the RDS-managed rotation's setSecret/finishSecret). Returns it.

        On the shared server this changes the password every later ``dsn()`` uses;
        a test that keeps connections open across tests should rotate a
        :meth:`spawn_postgres` server instead."""
        new = (postgres or self.postgres).set_app_password(password)
        client = self.secrets_client()
        current = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
        current["password"] = new
        client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(current))
        return new

    def processor_environment(
        self,
        stream_name: str,
        db_secret_arn: str,
        redis_secret_arn: str,
        *,
        postgres: PostgresServer | None = None,
        redis: RedisServer | None = None,
        **overrides: Any,
    ) -> dict[str, str]:
        """The environment of one processor on ``stream_name``: the synthesized task
        environment made local (:func:`local_pipeline.stack_resources.processor_environment`,
        the one builder; the stack from the one synth per source tree), plus
        :meth:`client_environment`.

        ``overrides`` are :class:`ProcessorSettings` attribute names
        (``lease_duration_s=3``, ``worker_id="w1"``, ``db_name=...``), validated; a
        new free health port is chosen per call unless given. ``db_secret_arn`` is
        the owner's (it migrates; the processor gets the application role's).
        ``postgres``/``redis`` select spawned servers instead of the shared ones.
        """
        from local_pipeline.stack_resources import local_stack, processor_environment

        settings = dict(overrides)
        worker_id = settings.pop("worker_id", None)
        environment = processor_environment(
            self,
            local_stack(),
            str(worker_id or "local"),
            db_secret_arn=db_secret_arn,
            redis_secret_arn=redis_secret_arn,
            stream_name=stream_name,
            db_name=settings.pop("db_name", None),
            postgres=postgres,
            redis=redis,
            health_port=settings.pop("health_port", None),
            overrides=settings,
        )
        if worker_id is None:
            # No name asked for: the processor's own default (host name + pid), as
            # for an ECS task, not a made-up one.
            del environment["TAP_WORKER_ID"]
        return environment

    # --- state -------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts about every started server (the ``state.json`` body)."""
        services: dict[str, Any] = {}
        if self._postgres is not None:
            services["postgres"] = self._postgres.describe()
        if self._redis is not None:
            services["redis"] = self._redis.describe()
        if self._moto is not None:
            services["moto"] = self._moto.describe()
        if self._kinesis is not None:
            services["kinesis"] = self._kinesis.describe() | {"emulator": str(self.kinesis_kind)}
        return {
            "run_dir": str(self.run_dir),
            "ca_path": str(self.certs.ca_path),
            "region": REGION,
            "services": services,
        }
