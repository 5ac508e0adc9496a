"""A real PostgreSQL for tests and the local stack, with TLS and an application role.

Where the server comes from, first match wins (see docs/LOCAL-STACK.md):

1. ``TAP_PG_DSN``: a server someone else runs, used as is (no restart, no password
   rotation: the scenarios that need them skip and say why);
2. a container through testcontainers when a Docker engine answers;
3. the machine's PostgreSQL binaries (``initdb``/``postgres`` on PATH or under
   ``/usr/lib/postgresql/*/bin``, highest version);
4. the binaries bundled in the ``pgserver`` wheel (PostgreSQL 16, built without TLS).

Every managed server gets TLS when its build supports it (certificate from the run's
CA, ``hostssl`` only, so a client that forgets TLS is refused as RDS with
``rds.force_ssl`` would), a database ``tap`` owned by the login role ``tap_app``
(with CREATEROLE: it plays the RDS master user, whose secret runs the migrations;
processors log in as the application role those create, see local_pipeline/services/app_role.py),
and a superuser for administration.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

from local_pipeline.services.docker_engine import ContainerLifecycle, docker_engine_answers
from local_pipeline.services.network import LOOPBACK, free_port, wait_port_closed
from local_pipeline.services.process import ServerProcess, ServiceStartError, tail
from local_pipeline.services.server_choice import ServerChoice, server_choice
from local_pipeline.services.tls import RunCertificates

if TYPE_CHECKING:
    import psycopg

#: Environment variable naming an existing server (a libpq URI or key=value string).
PG_DSN_ENV: Final = "TAP_PG_DSN"
DATABASE: Final = "tap"
APP_USER: Final = "tap_app"
ADMIN_USER: Final = "postgres"
#: PostgreSQL refuses to run as root; when we are root the server drops to the first
#: of these users that exists (Debian's package creates ``postgres``; a bare container
#: with only pgserver has ``nobody``).
SERVER_SYSTEM_USERS: Final = ("postgres", "nobody")


def _server_system_user() -> str:
    for name in SERVER_SYSTEM_USERS:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceStartError(
        f"running as root and none of the users {SERVER_SYSTEM_USERS} exists for PostgreSQL"
    )


class PostgresSource(StrEnum):
    EXTERNAL = "external"
    CONTAINER = "container"
    BINARIES = "binaries"
    PGSERVER = "pgserver"


class RestartNotSupported(RuntimeError):
    """The server is not ours to restart (``TAP_PG_DSN``)."""


def _password() -> str:
    # URL-safe so DSNs need no quoting surprises when printed for humans.
    return secrets.token_urlsafe(24)


def build_dsn(
    *,
    host: str,
    port: int,
    user: str,
    password: str | None,
    dbname: str,
    params: dict[str, str],
) -> str:
    """A ``postgresql://`` URI (libpq, psycopg and SQLAlchemy all accept it)."""
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    query = f"?{urlencode(params, safe='/')}" if params else ""
    return f"postgresql://{auth}@{host}:{port}/{quote(dbname, safe='')}{query}"


class PostgresServer(abc.ABC):
    """What tests and the local stack need from a PostgreSQL, wherever it runs."""

    source: PostgresSource
    host: str = LOOPBACK
    port: int = 0
    database: str = DATABASE
    app_user: str = APP_USER
    app_password: str = ""
    admin_user: str = ADMIN_USER
    admin_password: str = ""
    #: The run's CA when the server speaks TLS; None means plain TCP.
    ca_path: Path | None = None

    @property
    def tls(self) -> bool:
        return self.ca_path is not None

    @property
    def supports_restart(self) -> bool:
        return True

    @property
    def maintenance_database(self) -> str:
        """Where administrative statements connect (the ``tap`` database may not exist)."""
        return "postgres"

    @property
    def sslmode(self) -> str:
        return "verify-full" if self.tls else "disable"

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def restart(self) -> None:
        """Stop and start again on the same port and data directory (data kept)."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """Crash the server (SIGKILL); :meth:`start` recovers it from its WAL."""
        raise RestartNotSupported(f"cannot kill a {self.source} PostgreSQL")

    def ssl_params(self) -> dict[str, str]:
        if self.ca_path is None:
            return {"sslmode": "disable"}
        return {"sslmode": "verify-full", "sslrootcert": str(self.ca_path)}

    def dsn(
        self,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
    ) -> str:
        """A DSN for ``user`` (default: the app role and its current password)."""
        user = user or self.app_user
        if password is None:
            password = self.app_password if user == self.app_user else self.admin_password
        return build_dsn(
            host=self.host,
            port=self.port,
            user=user,
            password=password,
            dbname=database or self.database,
            params=self.ssl_params(),
        )

    def admin_dsn(self, database: str | None = None) -> str:
        return self.dsn(self.admin_user, self.admin_password, database)

    def admin_connection(self, database: str | None = None) -> psycopg.Connection[Any]:
        """An autocommit superuser connection (DDL, ALTER ROLE, CREATE DATABASE)."""
        import psycopg

        return psycopg.connect(self.admin_dsn(database), autocommit=True, connect_timeout=5)

    def healthy(self) -> bool:
        try:
            with self.admin_connection(self.maintenance_database) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except Exception:
            return False

    def set_app_password(self, password: str | None = None) -> str:
        """``ALTER ROLE`` the app role to a new password (rotation); returns it."""
        from psycopg import sql

        new = password or _password()
        with self.admin_connection(self.maintenance_database) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(self.app_user), sql.Literal(new)
                )
            )
        self.app_password = new
        return new

    def create_database(self, name: str, owner: str | None = None) -> None:
        from psycopg import sql

        with self.admin_connection(self.maintenance_database) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner or self.app_user)
                )
            )

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.admin_connection(self.maintenance_database) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for the state file and status table."""
        return {
            "source": str(self.source),
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "tls": self.tls,
            "ca_path": str(self.ca_path) if self.ca_path else None,
            "app_user": self.app_user,
            "app_password": self.app_password,
            "admin_user": self.admin_user,
            "admin_password": self.admin_password,
            "dsn": self.dsn(),
            "supports_restart": self.supports_restart,
        }

    def _bootstrap_roles(self) -> None:
        """Create the app role and the ``tap`` database (idempotent, for restarts)."""
        from psycopg import sql

        with self.admin_connection(self.maintenance_database) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (self.app_user,)
            ).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(self.app_user), sql.Literal(self.app_password)
                    )
                )
            # The owner plays the RDS master user (who has CREATEROLE): its migrations
            # create the processor's application role (issue 11).
            conn.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(self.app_user)))
            has_db = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not has_db:
                self.create_database(self.database)


class ExternalPostgres(PostgresServer):
    """A server named by ``TAP_PG_DSN``: every role is the DSN's user."""

    source = PostgresSource.EXTERNAL

    def __init__(self, dsn: str) -> None:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
        self._raw = dsn
        self.host = str(parts.get("host", LOOPBACK))
        self.port = int(parts.get("port", 5432) or 5432)
        self.database = str(parts.get("dbname", DATABASE))
        self.app_user = self.admin_user = str(parts.get("user", os.environ.get("USER", "")))
        self.app_password = self.admin_password = str(parts.get("password", ""))
        self._params = {
            k: str(v)
            for k, v in parts.items()
            if k not in {"host", "port", "dbname", "user", "password"}
        }
        root = self._params.get("sslrootcert")
        ssl = self._params.get("sslmode", "prefer") not in {"disable", "allow", "prefer"}
        self.ca_path = Path(root) if ssl and root else None

    @property
    def tls(self) -> bool:
        return self._params.get("sslmode", "prefer") not in {"disable", "allow", "prefer"}

    @property
    def supports_restart(self) -> bool:
        return False

    @property
    def maintenance_database(self) -> str:
        return self.database

    @property
    def sslmode(self) -> str:
        """The DSN's sslmode in the processor's terms (it accepts no "prefer")."""
        mode = self._params.get("sslmode", "prefer")
        return "disable" if mode in {"disable", "allow", "prefer"} else mode

    def ssl_params(self) -> dict[str, str]:
        return dict(self._params)

    def start(self) -> None:
        if not self.healthy():
            raise ServiceStartError(f"{PG_DSN_ENV} server at {self.host}:{self.port} not reachable")

    def stop(self) -> None:
        """Not ours: nothing to stop."""

    def restart(self) -> None:
        raise RestartNotSupported(f"{PG_DSN_ENV} names a server we do not run")


# --- local binaries (the machine's PostgreSQL, or pgserver's bundled build) ----------

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def _binary_version(bin_dir: Path) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [str(bin_dir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    return (int(match.group(1)), int(match.group(2) or 0)) if match else None


def find_system_bin_dir() -> Path | None:
    """The highest-version PostgreSQL bin folder with initdb and postgres, if any."""
    candidates: set[Path] = set()
    on_path = shutil.which("initdb")
    if on_path:
        candidates.add(Path(on_path).resolve().parent)
    candidates.update(p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.is_dir())
    versioned = [
        (version, path)
        for path in candidates
        if (path / "initdb").exists() and (path / "postgres").exists()
        for version in [_binary_version(path)]
        if version is not None
    ]
    return max(versioned)[1] if versioned else None


def find_pgserver_bin_dir() -> Path | None:
    """pgserver's bundled binaries, found without importing pgserver (its import
    creates runtime folders and prints warnings)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bin_dir if (bin_dir / "postgres").exists() else None


def _build_has_tls(bin_dir: Path) -> bool:
    """Was this PostgreSQL built with OpenSSL? (pgserver's build is not.)"""
    pg_config = bin_dir / "pg_config"
    if pg_config.exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            configure = subprocess.run(
                [str(pg_config), "--configure"], capture_output=True, text=True, timeout=10
            ).stdout
            return "--with-openssl" in configure or "--with-ssl=openssl" in configure
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        linked = subprocess.run(
            ["ldd", str(bin_dir / "postgres")], capture_output=True, text=True, timeout=10
        ).stdout
        return "libssl" in linked
    return False


def _check_traversable(path: Path, uid: int) -> None:
    """Fail early and clearly when the server user cannot reach its data folder
    (pytest's basetemp is 0700 root-owned, for instance)."""
    blocked = _first_untraversable(path, uid)
    if blocked is not None:
        raise ServiceStartError(
            f"PostgreSQL runs as uid {uid} (we are root) and cannot enter "
            f"{blocked} (mode {oct(blocked.stat().st_mode & 0o777)}); choose a run folder "
            f"under a world-traversable path"
        )


def _first_untraversable(path: Path, uid: int) -> Path | None:
    """The first folder on the way to ``path`` that ``uid`` may not enter, if any."""
    for parent in [path, *path.parents]:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            return parent
    return None


def _reachable_bin_dir(bin_dir: Path, uid: int) -> Path:
    """A bin folder the server user can execute from.

    When we are root the server runs as an unprivileged user, which cannot enter a
    0700 folder such as tox's ``.tox/`` where pgserver's wheel is installed. Then the
    wheel's files are copied once into a world-readable folder under the temp dir,
    keyed by their source path, keeping the layout its RPATH relies on
    (``pgserver/pginstall/bin`` next to ``pgserver.libs``).
    """
    if _first_untraversable(bin_dir, uid) is None:
        return bin_dir
    site_packages = bin_dir.parents[2]  # <site-packages>/pgserver/pginstall/bin
    relative_bin = bin_dir.relative_to(site_packages)
    key = hashlib.sha256(str(site_packages).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"tap-pgserver-{key}"
    if not (target / relative_bin / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="tap-pgserver-", dir=target.parent))
        package = relative_bin.parts[0]
        for name in (f"{package}/pginstall", f"{package}.libs"):
            if (site_packages / name).exists():
                shutil.copytree(site_packages / name, staging / "copy" / name, symlinks=True)
        staging.chmod(0o755)
        with contextlib.suppress(OSError):  # a concurrent copy won the race
            (staging / "copy").rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    return target / relative_bin


class LocalPostgres(PostgresServer):
    """``postgres`` started from local binaries, data and TLS files in ``directory``.

    The server process is our child (no ``pg_ctl``), so stop, kill and restart act on
    a pid we own, and its log goes to ``log_path`` in the run folder.
    """

    def __init__(
        self,
        directory: Path,
        log_path: Path,
        certs: RunCertificates | None,
        *,
        bin_dir: Path,
        source: PostgresSource = PostgresSource.BINARIES,
        port: int | None = None,
    ) -> None:
        self._run_as = _server_system_user() if os.geteuid() == 0 else None
        if self._run_as is not None:
            bin_dir = _reachable_bin_dir(bin_dir, pwd.getpwnam(self._run_as).pw_uid)
        self.source = source
        self.directory = directory
        self.data_dir = directory / "data"
        self.log_path = log_path
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.version = _binary_version(bin_dir)
        self._tls_certs = certs if certs is not None and _build_has_tls(bin_dir) else None
        self.ca_path = self._tls_certs.ca_path if self._tls_certs else None
        self.app_password = _password()
        self.admin_password = _password()
        self._process: ServerProcess | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        if self._process is not None and self._process.running:
            return
        first_start = not (self.data_dir / "PG_VERSION").exists()
        if first_start:
            self._initdb()
        self._process = ServerProcess(
            "postgres",
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), *self._settings()],
            self.log_path,
            # SIGINT is PostgreSQL's fast shutdown: abort transactions, checkpoint, exit.
            stop_signal=signal.SIGINT,
            # If we die, SIGQUIT (immediate shutdown) so no orphan server holds the port.
            death_signal=signal.SIGQUIT,
            run_as=self._run_as,
        )
        self._start_with_retry()
        if first_start:
            self._bootstrap_roles()

    def _start_with_retry(self) -> None:
        assert self._process is not None
        # After a kill -9 the old backends may hold the shared memory for a moment
        # ("pre-existing shared memory block is still in use"); try again briefly.
        deadline = time.monotonic() + 20
        while True:
            self._process.start()
            try:
                self._process.wait_healthy(self.healthy, timeout=30)
                return
            except ServiceStartError:
                if self._process.running or time.monotonic() > deadline:
                    raise
                if "shared memory" not in tail(self.log_path, 5):
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            wait_port_closed(self.port)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            wait_port_closed(self.port)

    def _settings(self) -> list[str]:
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            # No Unix socket: everything goes over TCP (and TLS), as the processor does,
            # and root-owned run folders need no socket permissions.
            "unix_socket_directories": "",
            "max_connections": "300",
            # Test data is disposable: no fsync is fine here and only here (it protects
            # against an OS crash, which no test simulates). synchronous_commit stays on:
            # with fsync off it costs one write(), and a kill -9 of the server then loses
            # no acknowledged commit, as on RDS (the crash scenarios rely on that).
            "fsync": "off",
            "full_page_writes": "off",
            "log_min_messages": "warning",
            "log_line_prefix": "%m [%p] ",
        }
        if self._tls_certs is not None:
            settings |= {
                "ssl": "on",
                "ssl_cert_file": str(self.directory / "tls" / "server.crt"),
                "ssl_key_file": str(self.directory / "tls" / "server.key"),
                "ssl_min_protocol_version": "TLSv1.2",
            }
        return [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]

    def _initdb(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        uid = pwd.getpwnam(self._run_as).pw_uid if self._run_as else os.getuid()
        gid = pwd.getpwnam(self._run_as).pw_gid if self._run_as else os.getgid()
        if self._run_as:
            _check_traversable(self.directory, uid)
        tls_dir = self.directory / "tls"
        tls_dir.mkdir(exist_ok=True)
        if self._tls_certs is not None:
            # The key must belong to the server's user with mode 0600, or PostgreSQL
            # refuses to start; hence a private copy in the server's folder.
            shutil.copyfile(self._tls_certs.server_cert_path, tls_dir / "server.crt")
            shutil.copyfile(self._tls_certs.server_key_path, tls_dir / "server.key")
            os.chmod(tls_dir / "server.key", 0o600)
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.admin_password + "\n")
        os.chmod(pwfile, 0o600)
        for path in (self.directory, tls_dir, *tls_dir.iterdir(), pwfile):
            os.chown(path, uid, gid)
        try:
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.admin_user,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                text=True,
                user=uid if self._run_as else None,
                group=gid if self._run_as else None,
                timeout=120,
            )
        except subprocess.CalledProcessError as exc:
            raise ServiceStartError(f"initdb failed:\n{exc.stdout}\n{exc.stderr}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        # TLS only, over loopback: a client that forgets TLS is refused, as RDS with
        # rds.force_ssl=1 refuses it.
        kind = "hostssl" if self._tls_certs is not None else "host"
        (self.data_dir / "pg_hba.conf").write_text(
            f"{kind} all all 127.0.0.1/32 scram-sha-256\n{kind} all all ::1/128 scram-sha-256\n"
        )
        os.chown(self.data_dir / "pg_hba.conf", uid, gid)

    def describe(self) -> dict[str, Any]:
        facts = super().describe()
        facts |= {
            "pid": self.pid,
            "data_dir": str(self.data_dir),
            "log": str(self.log_path),
            "bin_dir": str(self.bin_dir),
            "version": ".".join(map(str, self.version)) if self.version else None,
        }
        return facts


# --- container (testcontainers, when a Docker engine answers) -------------------------

#: The image the container path runs; RDS's current major version.
POSTGRES_IMAGE: Final = "postgres:16-alpine"


class ContainerPostgres(ContainerLifecycle, PostgresServer):
    """PostgreSQL in a container, its port bound to a fixed loopback port so a
    restart (``docker restart``) comes back on the same port with the same volume."""

    source = PostgresSource.CONTAINER
    stop_timeout_s = 15  # a clean shutdown writes a checkpoint

    def __init__(self, directory: Path, log_path: Path, certs: RunCertificates | None) -> None:
        self.directory = directory
        self.log_path = log_path
        self.port = free_port()
        self.ca_path = certs.ca_path if certs else None
        self._certs = certs
        self.app_password = _password()
        self.admin_password = _password()
        self._container: Any = None

    def start(self) -> None:
        if self._container is not None:
            self._container.get_wrapped_container().start()
            self._wait()
            return
        from testcontainers.core.container import DockerContainer

        # Same trade as the binaries: no fsync (disposable data), synchronous commits.
        settings = ["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300"]
        script = "exec docker-entrypoint.sh postgres"
        container = (
            DockerContainer(POSTGRES_IMAGE)
            .with_env("POSTGRES_USER", self.admin_user)
            .with_env("POSTGRES_PASSWORD", self.admin_password)
            # docker-py accepts (host_ip, port): bind loopback only, as the other servers.
            .with_bind_ports(5432, (LOOPBACK, self.port))  # type: ignore[arg-type]
        )
        if self._certs is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            container = container.with_volume_mapping(str(self._certs.directory), "/tls", "ro")
            # The key must be owned by the server's user inside the image: copy it there.
            script = (
                "install -o postgres -m 600 /tls/server.key /var/lib/postgresql/server.key && "
                "install -o postgres -m 644 /tls/server.crt /var/lib/postgresql/server.crt && "
                "exec docker-entrypoint.sh postgres -c ssl=on "
                "-c ssl_cert_file=/var/lib/postgresql/server.crt "
                "-c ssl_key_file=/var/lib/postgresql/server.key"
            )
        container = container.with_kwargs(entrypoint=["sh", "-c", f"{script} {' '.join(settings)}"])
        self._container = container.start()
        self._wait()
        self._bootstrap_roles()

    def _wait(self) -> None:
        deadline = time.monotonic() + 60
        while not self.healthy():
            if time.monotonic() > deadline:
                logs = self._container.get_logs() if self._container else ("", "")
                raise ServiceStartError(f"PostgreSQL container not healthy: {logs}")
            time.sleep(0.2)


# --- choosing ---------------------------------------------------------------------


def create_postgres(
    directory: Path,
    log_path: Path,
    certs: RunCertificates | None,
    *,
    environ: dict[str, str] | None = None,
) -> PostgresServer:
    """The PostgreSQL this machine can offer, first match of the module's order (not
    started yet: call :meth:`PostgresServer.start`)."""
    env = os.environ if environ is None else environ
    if env.get(PG_DSN_ENV):
        return ExternalPostgres(env[PG_DSN_ENV])
    # TAP_LOCAL_SERVERS=embedded: pgserver even where Docker or binaries exist.
    embedded_only = server_choice(env) is ServerChoice.EMBEDDED
    if not embedded_only and docker_engine_answers():
        return ContainerPostgres(directory, log_path, certs)
    system = None if embedded_only else find_system_bin_dir()
    if system is not None:
        return LocalPostgres(directory, log_path, certs, bin_dir=system)
    bundled = find_pgserver_bin_dir()
    if bundled is not None:
        return LocalPostgres(
            directory, log_path, certs, bin_dir=bundled, source=PostgresSource.PGSERVER
        )
    raise ServiceStartError(
        f"no PostgreSQL: set {PG_DSN_ENV}, start Docker, install the postgresql package, "
        "or `pip install pgserver`"
    )
