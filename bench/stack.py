"""The servers of one ``tap bench`` run and what the benchmarks need from them.

One :class:`BenchStack` per run: the local stack's real PostgreSQL (TLS
``verify-full``) and Redis (TLS + AUTH) and, only for the benchmarks that start
processor processes, moto (Secrets Manager) and kinesalite. Every benchmark gets
fresh databases of its own, so no figure is measured on tables another one grew.

In-process benchmarks (throughput) run with the synthesized task environment made
local, as every local processor does (issue 12), and read their credentials through the real
:class:`~processor.secrets.SecretsProvider` with an in-memory Secrets Manager
client: secrets are fetched once per connection, off the hot path, and this spares
the smoke run starting moto for nothing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Final

import psycopg

from local_pipeline.services.local_stack import LocalServices
from local_pipeline.services.postgres import LocalPostgres, PostgresServer, find_system_bin_dir
from processor.contract.deployment import DEFAULT_REGION
from processor.contract.environment import ProcessorSettings
from processor.postgres import DbTarget, PgConnector, PostgresStore
from processor.secrets import SecretsProvider

#: Secret ARNs of the in-memory Secrets Manager (any well-formed ARN will do).
DB_SECRET_ARN: Final = "arn:aws:secretsmanager:eu-west-2:000000000000:secret:tap-bench-db"  # noqa: S105 - an ARN
REDIS_SECRET_ARN: Final = "arn:aws:secretsmanager:eu-west-2:000000000000:secret:tap-bench-redis"  # noqa: S105 - an ARN


class StaticSecretsClient:
    """The one Secrets Manager call the provider makes, answered from memory."""

    def __init__(self, secrets: dict[str, dict[str, Any]]) -> None:
        self._secrets = secrets

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:
        return {"SecretString": json.dumps(self._secrets[SecretId]), "VersionId": "bench"}


class DurablePostgres(LocalPostgres):
    """The local stack's PostgreSQL with RDS's durability: ``fsync`` and
    ``full_page_writes`` on (the test fixtures turn both off, which makes every
    commit nearly free and would flatter the one-commit-per-record baseline)."""

    def _settings(self) -> list[str]:
        durable = {"fsync=off": "fsync=on", "full_page_writes=off": "full_page_writes=on"}
        return [durable.get(arg, arg) for arg in super()._settings()]


class BenchStack:
    """The run's services (started on first use) and fresh databases on them."""

    def __init__(self, run_dir: Path | None = None, *, keep: bool = False) -> None:
        self._own_dir = run_dir is None
        if run_dir is None:
            # Not under a 0700 temp folder: PostgreSQL may run as another user.
            run_dir = Path(tempfile.mkdtemp(prefix=f"tap-bench-{time.strftime('%H%M%S')}-"))
            run_dir.chmod(0o755)
        self.run_dir = run_dir
        self.keep = keep
        self.services = LocalServices(run_dir)
        self._commit_timestamps = False
        self._durable: PostgresServer | None = None

    def __enter__(self) -> BenchStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._durable is not None:
            with contextlib.suppress(Exception):
                self._durable.stop()
        with contextlib.suppress(Exception):
            self.services.stop()
        if self._own_dir and not self.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    @property
    def postgres(self) -> PostgresServer:
        return self.services.postgres

    def durable_postgres(self) -> PostgresServer:
        """A second PostgreSQL, durable like RDS (:class:`DurablePostgres`); the
        fixture server when no local binaries exist (then ``durable`` is false in
        the figures)."""
        if self._durable is None:
            bin_dir = find_system_bin_dir()
            if bin_dir is None:
                return self.postgres
            server = DurablePostgres(
                self.run_dir / "postgres-durable",
                self.services.logs_dir / "postgres-durable.log",
                self.services.certs,
                bin_dir=bin_dir,
            )
            server.start()
            self._durable = server
        return self._durable

    def is_durable(self, pg: PostgresServer) -> bool:
        return isinstance(pg, DurablePostgres)

    # -- databases --------------------------------------------------------------------

    def fresh_database(self, label: str, pg: PostgresServer | None = None) -> str:
        """A new empty database owned by the app role (``bench_<label>_<hex>``)."""
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        (pg or self.postgres).create_database(name)
        return name

    def enable_commit_timestamps(self) -> None:
        """``track_commit_timestamp = on`` (needs a restart): lets the latency and
        scale benchmarks read each reading's exact commit time with
        ``pg_xact_commit_timestamp(xmin)`` instead of trusting ``processed_at``, which
        the processor stamps before its transaction starts."""
        if self._commit_timestamps:
            return
        pg = self.postgres
        with pg.admin_connection(pg.maintenance_database) as conn:
            row = conn.execute("SHOW track_commit_timestamp").fetchone()
            if row is not None and row[0] == "on":
                self._commit_timestamps = True
                return
            conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
        pg.restart()
        self._commit_timestamps = True

    # -- in-process clients -----------------------------------------------------------

    def secrets(self, pg: PostgresServer | None = None) -> SecretsProvider:
        pg, cache = pg or self.postgres, self.services.redis
        client = StaticSecretsClient(
            {
                DB_SECRET_ARN: {"username": pg.app_user, "password": pg.app_password},
                REDIS_SECRET_ARN: {"auth_token": cache.token},
            }
        )
        return SecretsProvider(DEFAULT_REGION, client=client)

    def settings(
        self, database: str, pg: PostgresServer | None = None, stream: str = "tap-bench"
    ) -> ProcessorSettings:
        """Processor settings for in-process use: the synthesized task environment made
        local (:func:`local_pipeline.stack_resources.local_environment`, as every local
        processor gets it) on these servers, with the in-memory secrets' ARNs. No
        emulator endpoints: nothing in-process calls AWS but the in-memory Secrets
        Manager, and the smoke run starts no moto."""
        from local_pipeline.services.network import free_port
        from local_pipeline.stack_resources import local_environment, local_stack

        pg, cache = pg or self.postgres, self.services.redis
        environment = local_environment(
            local_stack(),
            endpoints={},
            db_host=pg.host,
            db_port=pg.port,
            db_name=database,
            db_tls=pg.tls,
            db_ca_path=str(pg.ca_path) if pg.ca_path else None,
            db_secret_arn=DB_SECRET_ARN,
            redis_host=cache.host,
            redis_port=cache.port,
            redis_tls=cache.tls,
            redis_ca_path=str(cache.ca_path) if cache.ca_path else None,
            redis_secret_arn=REDIS_SECRET_ARN,
            health_port=free_port(),
            worker_id="bench",
            stream_name=stream,
        )
        return ProcessorSettings.from_environ(environment)

    def store(self, settings: ProcessorSettings, secrets: SecretsProvider) -> PostgresStore:
        """A migrated store on ``settings.db_name`` with today's partitions."""
        store = PostgresStore(PgConnector(DbTarget.from_settings(settings), secrets))
        store.migrate()
        store.ensure_partitions()
        return store

    def connect(
        self, settings: ProcessorSettings, secrets: SecretsProvider
    ) -> psycopg.Connection[Any]:
        """An autocommit connection made exactly as the processor makes its own."""
        return PgConnector(DbTarget.from_settings(settings), secrets).connect()

    # -- processor processes ----------------------------------------------------------

    def cluster(self, shards: int, label: str, log_dir: Path, **defaults: Any) -> Any:
        """A :class:`local_pipeline.verify.ProcessorCluster` on a new stream and database:
        processors with the synthesized task environment (``defaults`` are explicit
        overrides, named by ``ProcessorSettings`` attribute)."""
        from local_pipeline.verify import ProcessorCluster

        services = self.services.start()
        stream = f"tap-bench-{label}-{uuid.uuid4().hex[:8]}"
        services.create_stream(stream, shards)
        return ProcessorCluster(
            services,
            stream,
            self.fresh_database(label),
            services.create_db_secret(),
            services.create_redis_secret(),
            log_dir,
            defaults=defaults,
        )
