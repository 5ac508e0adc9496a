"""Redis edge of the API: reads of the serving cache the processor writes, as the
read-only ACL user (:data:`processor.contract.storage.REDIS_API_READER_USER`).

Why it looks like this:

* asyncio client: the anomaly stream is served as server-sent events, one blocking
  ``XREAD`` per connected board; threads would run out long before sockets do.
* A failure opens a short circuit (``retry_s``): meanwhile every read raises
  :class:`CacheUnavailable` at once and the API answers from PostgreSQL, so a dead
  Redis costs one timed-out call per period instead of one per request.
* ``decode_responses``: hiredis decodes the replies in C; a line's board reads tens
  of hashes per request, and decoding them in Python was a measurable share of the
  API's CPU (docs/BENCHMARKS.md, "the lean API").
* Credentials (``username`` and ``auth_token`` of the API's secret) come from Secrets
  Manager through the processor's provider, asked on every new connection; a
  refused login fetches the secret again (rotation), as the processor's cache does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.retry import Retry

from processor import client_timeouts
from processor.contract.api_environment import ApiSettings
from processor.contract.storage import (
    REDIS_ANOMALY_STREAM,
    REDIS_LAST_SEEN,
    redis_latest_key,
    redis_line_devices_key,
    redis_window_key,
)
from processor.redis_cache import redis_tls_options
from processor.secrets import SecretFormatError, SecretsError, SecretsProvider

#: Longest a blocking ``XREAD`` waits before the stream sends a keep-alive comment
#: (proxies and load balancers close idle connections after 60 s by default).
STREAM_BLOCK_MS: Final = 15_000


class CacheUnavailable(Exception):
    """Redis did not answer (or the circuit is open): answer from PostgreSQL."""


class _ReaderCredentials(CredentialProvider):
    """``(username, auth_token)`` of the API's Redis secret."""

    def __init__(self, secrets: SecretsProvider, arn: str) -> None:
        self.secrets = secrets
        self.arn = arn
        self.refresh_next = False

    def get_credentials(self) -> tuple[str, str]:
        refresh, self.refresh_next = self.refresh_next, False
        values = self.secrets.get_json(self.arn, refresh=refresh)
        missing = [key for key in ("username", "auth_token") if key not in values]
        if missing:
            raise SecretFormatError(f"the API's Redis secret lacks {', '.join(missing)}")
        return values["username"].reveal(), values["auth_token"].reveal()

    async def get_credentials_async(self) -> tuple[str, str]:
        # A Secrets Manager call is blocking I/O: keep it off the event loop.
        return await asyncio.to_thread(self.get_credentials)


class RedisReader:
    """Reads of the cache. Every method raises :class:`CacheUnavailable` when Redis
    cannot answer; callers fall back to PostgreSQL."""

    def __init__(
        self,
        settings: ApiSettings,
        secrets: SecretsProvider,
        *,
        socket_timeout_s: float = client_timeouts.REDIS_SOCKET_TIMEOUT_S,
    ) -> None:
        self._credentials = _ReaderCredentials(secrets, settings.redis_secret_arn)
        tls = redis_tls_options(settings.redis_tls, settings.redis_ca_bundle)
        common: dict[str, Any] = {
            "host": settings.redis_host,
            "port": settings.redis_port,
            "credential_provider": self._credentials,
            "socket_connect_timeout": client_timeouts.REDIS_CONNECT_TIMEOUT_S,
            "health_check_interval": client_timeouts.REDIS_HEALTH_CHECK_INTERVAL_S,
            # The circuit below replaces redis-py's retries (see the module docstring).
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": True,
            **tls,
        }
        self.client = aioredis.Redis(socket_timeout=socket_timeout_s, **common)
        # Blocking reads wait up to STREAM_BLOCK_MS on purpose: their own timeout.
        self.stream_client = aioredis.Redis(
            socket_timeout=STREAM_BLOCK_MS / 1000 + socket_timeout_s, **common
        )
        self.retry_s = settings.redis_retry_s
        self._open_until = 0.0
        #: Failed calls so far (for /health/ready and tests).
        self.errors = 0

    @property
    def circuit_open(self) -> bool:
        return time.monotonic() < self._open_until

    async def _call(self, fn: Any) -> Any:
        if self.circuit_open:
            raise CacheUnavailable("Redis circuit open after a recent failure")
        try:
            try:
                return await fn()
            except (AuthenticationError, ResponseError) as exc:
                if isinstance(exc, ResponseError) and not (
                    "NOAUTH" in str(exc) or "WRONGPASS" in str(exc)
                ):
                    raise
                # A rotated password: fetch the secret again and reconnect once.
                self._credentials.refresh_next = True
                await self.client.connection_pool.disconnect(inuse_connections=False)
                return await fn()
        except (RedisError, OSError, SecretsError) as exc:
            self.errors += 1
            self._open_until = time.monotonic() + self.retry_s
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self.client.ping))
        except CacheUnavailable:
            return False

    async def latest(self, device_id: str) -> dict[str, str] | None:
        """The latest-reading hash of a device (None: not in the cache)."""
        fields: dict[str, str] = await self._call(
            lambda: self.client.hgetall(redis_latest_key(device_id))
        )
        return fields or None

    async def latest_and_window(
        self, device_id: str
    ) -> tuple[dict[str, str] | None, list[bytes | str]]:
        """The latest hash and every window member of a device, in one round trip (so
        the two are read at the same moment)."""

        async def run() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(redis_latest_key(device_id))
                pipe.zrange(redis_window_key(device_id), 0, -1)
                result: list[Any] = await pipe.execute()
                return result

        fields, members = await self._call(run)
        return (fields or None), list(members)

    async def device_ids(self, facility: str | None = None, line: str | None = None) -> list[str]:
        """The devices the cache has seen in its horizon: of one line (its device set)
        when both ``facility`` and ``line`` are given, else of the plant (the
        last-seen set)."""
        key = (
            redis_line_devices_key(facility, line)
            if facility is not None and line is not None
            else REDIS_LAST_SEEN
        )
        members = await self._call(lambda: self.client.zrange(key, 0, -1))
        return sorted(_text(m) for m in members)

    async def latest_many(self, device_ids: Sequence[str]) -> list[dict[str, str]]:
        """The latest hashes of ``device_ids`` (one pipelined round trip); devices
        whose hash expired are left out."""

        async def run() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for device_id in device_ids:
                    pipe.hgetall(redis_latest_key(device_id))
                result: list[Any] = await pipe.execute()
                return result

        hashes: list[dict[str, str]] = await self._call(run) if device_ids else []
        return [fields for fields in hashes if fields]

    async def last_anomaly_id(self) -> str:
        """The newest stream entry id ("0-0" when the stream is empty)."""
        entries = await self._call(lambda: self.client.xrevrange(REDIS_ANOMALY_STREAM, count=1))
        return _text(entries[0][0]) if entries else "0-0"

    async def read_anomalies(
        self, after_id: str, *, block_ms: int = STREAM_BLOCK_MS, count: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        """Entries after ``after_id``, waiting up to ``block_ms`` for the first."""
        if self.circuit_open:
            raise CacheUnavailable("Redis circuit open after a recent failure")
        try:
            reply = await self.stream_client.xread(
                {REDIS_ANOMALY_STREAM: after_id}, count=count, block=block_ms
            )
        except (RedisError, OSError, SecretsError) as exc:
            self.errors += 1
            self._open_until = time.monotonic() + self.retry_s
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc
        out: list[tuple[str, dict[str, str]]] = []
        streams: list[Any] = list(reply or [])
        for _stream, entries in streams:
            for entry_id, fields in entries:
                out.append((_text(entry_id), _decoded(fields)))
        return out

    async def close(self) -> None:
        for client in (self.client, self.stream_client):
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decoded(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}
