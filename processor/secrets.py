"""Runtime secrets from AWS Secrets Manager: the DB credentials and the Redis token.

Usage::

    secrets = SecretsProvider.from_settings(settings)
    creds = secrets.db_credentials(settings.db_secret_arn)          # cached
    creds = secrets.db_credentials(settings.db_secret_arn, refresh=True)  # after a login failed
    psycopg.connect(user=creds.username, password=creds.password.reveal(), ...)

Why it looks like this:

* Values are fetched at run time through the task role, never passed in the
  environment, so a rotation takes effect without a restart: the PostgreSQL
  store asks again with ``refresh=True`` when a login fails.
* A forced refresh is rate-limited (``min_refresh_interval_s``): a wrong
  password would otherwise turn every reconnect attempt of every thread into a
  Secrets Manager call (and API throttling) during an outage.
* Every value is wrapped in :class:`Secret`, whose ``repr``/``str`` are ``***``,
  so a secret logged by accident, put in an exception message or a dataclass
  repr shows nothing. Only :meth:`Secret.reveal` gives the value.
* The boto3 client is built from the standard configuration chain only. To point
  it at an emulator set ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` (or
  ``AWS_ENDPOINT_URL``); there is no endpoint parameter here on purpose, so that
  tests exercise the same code path as production.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import boto3
import botocore.config
import botocore.exceptions

from processor import client_timeouts

if TYPE_CHECKING:
    from processor.contract.environment import ProcessorSettings

log = logging.getLogger(__name__)

#: Default minimum time between two Secrets Manager calls for the same secret.
DEFAULT_MIN_REFRESH_INTERVAL_S: Final = 5.0

_REDACTED: Final = "***"


class _DropSecretBodies(logging.Filter):
    """botocore logs every response body at DEBUG (``botocore.parsers``), which for
    GetSecretValue is the secret itself. With TAP_LOG_LEVEL=DEBUG that would put the
    DB password in CloudWatch; drop those records (other bodies still log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return "SecretString" not in message and "SecretBinary" not in message


_SECRET_BODY_FILTER: Final = _DropSecretBodies()
for _name in ("botocore.parsers", "botocore.endpoint", "botocore.hooks"):
    _logger = logging.getLogger(_name)
    if _SECRET_BODY_FILTER not in _logger.filters:
        _logger.addFilter(_SECRET_BODY_FILTER)


class Secret:
    """A secret value that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself. Call it only where the value is handed to a client."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_REDACTED!r})"

    def __str__(self) -> str:
        return _REDACTED

    def __format__(self, format_spec: str) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        # Pickling (multiprocessing, caches) would copy the value somewhere we do not
        # control; a secret is fetched again instead.
        raise TypeError("Secret values cannot be pickled")


class SecretsError(Exception):
    """A secret could not be obtained. Messages name the secret, never its value."""


class SecretsUnavailable(SecretsError):
    """Secrets Manager could not be reached or refused the call (retry later)."""


class SecretFormatError(SecretsError):
    """The secret exists but is not the expected JSON document."""


@dataclass(frozen=True, slots=True)
class DbCredentials:
    """Username and password of the database login (RDS-managed secret format)."""

    username: str
    password: Secret


@dataclass(slots=True)
class _Flight:
    """One Secrets Manager call in progress; concurrent refreshers wait on it."""

    done: threading.Event = field(default_factory=threading.Event)
    values: dict[str, Secret] | None = None
    error: Exception | None = None


@dataclass(slots=True)
class _CacheEntry:
    values: dict[str, Secret]
    fetched_at: float  # monotonic clock
    version_id: str


class SecretsProvider:
    """Fetches JSON secrets from Secrets Manager and caches them in memory.

    Thread-safe: concurrent refreshes of one secret cause a single fetch
    (single-flight), so callers that all see a failed login cause one call; cached
    reads never wait for a fetch in progress.
    """

    def __init__(
        self,
        region: str,
        *,
        min_refresh_interval_s: float = DEFAULT_MIN_REFRESH_INTERVAL_S,
        client: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._region = region
        self._min_refresh_interval_s = min_refresh_interval_s
        self._client = client
        self._clock = clock
        self._cache: dict[str, _CacheEntry] = {}
        #: Guards ``_cache`` and ``_in_flight`` only; never held during a network call.
        self._lock = threading.Lock()
        self._in_flight: dict[str, _Flight] = {}
        #: Number of calls made to Secrets Manager (for tests and metrics).
        self.fetch_count = 0

    @classmethod
    def from_settings(
        cls,
        settings: ProcessorSettings,
        *,
        min_refresh_interval_s: float = DEFAULT_MIN_REFRESH_INTERVAL_S,
    ) -> SecretsProvider:
        return cls(settings.aws_region, min_refresh_interval_s=min_refresh_interval_s)

    def __repr__(self) -> str:
        return f"SecretsProvider(region={self._region!r}, cached={len(self._cache)})"

    def _secretsmanager(self) -> Any:
        if self._client is None:
            # Standard retry mode backs off on throttling; short timeouts so a
            # black-holed endpoint turns into SecretsUnavailable, not a hang.
            config = botocore.config.Config(
                region_name=self._region,
                retries={
                    "total_max_attempts": client_timeouts.AWS_MAX_ATTEMPTS,
                    "mode": "standard",
                },
                connect_timeout=client_timeouts.AWS_CONNECT_TIMEOUT_S,
                read_timeout=client_timeouts.SECRETS_READ_TIMEOUT_S,
            )
            self._client = boto3.session.Session().client("secretsmanager", config=config)
        return self._client

    def get_json(self, arn: str, *, refresh: bool = False) -> dict[str, Secret]:
        """The secret's JSON object, each value wrapped in :class:`Secret`.

        Served from the cache unless ``refresh`` is true. A refresh within
        ``min_refresh_interval_s`` of the last fetch returns the cached value
        (callers then fail again and back off) rather than calling AWS again.
        Non-string JSON values (RDS puts ``port`` as a number) are kept as their
        JSON text.

        The lock guards the cache only, never the network call (issue 10, item 8):
        cached reads of any secret never queue behind a slow refresh. Concurrent
        refreshes of one ARN are single-flight: the first caller fetches, the others
        wait for its result (or its error) instead of calling AWS again.
        """
        while True:
            with self._lock:
                entry = self._cache.get(arn)
                now = self._clock()
                if entry is not None and (
                    not refresh or now - entry.fetched_at < self._min_refresh_interval_s
                ):
                    return dict(entry.values)
                flight = self._in_flight.get(arn)
                if flight is None:
                    flight = self._in_flight[arn] = _Flight()
                    leader = True
                else:
                    leader = False
            if not leader:
                flight.done.wait()
                if flight.error is not None:
                    raise flight.error
                if flight.values is not None:
                    return dict(flight.values)
                continue  # pragma: no cover - a flight ends with values or an error
            try:
                fetched = self._fetch(arn, now)
            except BaseException as exc:
                with self._lock:
                    del self._in_flight[arn]
                    if entry is not None:
                        # Rate-limit the next attempt like a successful fetch would.
                        entry.fetched_at = now
                flight.error = exc if isinstance(exc, Exception) else None
                flight.done.set()
                raise
            with self._lock:
                previous = self._cache.get(arn)
                if previous is not None and previous.version_id != fetched.version_id:
                    log.info("secret %s has a new version (rotation picked up)", _arn_name(arn))
                self._cache[arn] = fetched
                del self._in_flight[arn]
            flight.values = fetched.values
            flight.done.set()
            return dict(fetched.values)

    def db_credentials(self, arn: str, *, refresh: bool = False) -> DbCredentials:
        """``username`` and ``password`` of a DB secret."""
        values = self.get_json(arn, refresh=refresh)
        missing = [key for key in ("username", "password") if key not in values]
        if missing and not refresh:
            # A malformed document in the cache must not stick once the secret is
            # repaired: fetch again (rate-limited like any refresh).
            values = self.get_json(arn, refresh=True)
            missing = [key for key in ("username", "password") if key not in values]
        if missing:
            raise SecretFormatError(
                f"secret {_arn_name(arn)} lacks {', '.join(missing)} "
                f"(keys present: {', '.join(sorted(values)) or 'none'})"
            )
        return DbCredentials(username=values["username"].reveal(), password=values["password"])

    def redis_auth_token(self, arn: str, *, refresh: bool = False) -> Secret:
        """``auth_token`` of the Redis secret."""
        values = self.get_json(arn, refresh=refresh)
        if "auth_token" not in values and not refresh:
            values = self.get_json(arn, refresh=True)  # see db_credentials
        if "auth_token" not in values:
            raise SecretFormatError(
                f"secret {_arn_name(arn)} lacks auth_token "
                f"(keys present: {', '.join(sorted(values)) or 'none'})"
            )
        return values["auth_token"]

    def put_json(self, arn: str, document: Mapping[str, str]) -> None:
        """Write ``document`` as the secret's new current version (the migrate
        command's first password of the application login). Clears the cache."""
        with self._lock:
            self._cache.pop(arn, None)
            try:
                self._secretsmanager().put_secret_value(
                    SecretId=arn, SecretString=json.dumps(dict(document))
                )
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                raise SecretsUnavailable(
                    f"PutSecretValue {_arn_name(arn)} failed: {type(exc).__name__}"
                ) from exc

    def last_fetched_age(self, arn: str) -> float | None:
        """Seconds since the secret was last fetched from AWS (None: never)."""
        entry = self._cache.get(arn)
        return None if entry is None else self._clock() - entry.fetched_at

    def _fetch(self, arn: str, now: float) -> _CacheEntry:
        with self._lock:
            self.fetch_count += 1
        try:
            response = self._secretsmanager().get_secret_value(SecretId=arn)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            # The ClientError message is AWS's and carries no secret value.
            raise SecretsUnavailable(f"GetSecretValue {_arn_name(arn)} failed: {code}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise SecretsUnavailable(
                f"GetSecretValue {_arn_name(arn)} failed: {type(exc).__name__}: {exc}"
            ) from exc
        raw = response.get("SecretString")
        if raw is None:
            raise SecretFormatError(f"secret {_arn_name(arn)} has no SecretString")
        try:
            document = json.loads(raw)
        except ValueError:
            # No `from exc`: the JSON error message quotes part of the document.
            raise SecretFormatError(f"secret {_arn_name(arn)} is not JSON") from None
        if not isinstance(document, Mapping):
            raise SecretFormatError(f"secret {_arn_name(arn)} is not a JSON object")
        values = {
            str(key): Secret(value if isinstance(value, str) else json.dumps(value))
            for key, value in document.items()
        }
        return _CacheEntry(values, now, str(response.get("VersionId", "")))


def _arn_name(arn: str) -> str:
    """The secret's name part of an ARN, for messages (an ARN is not secret, just long)."""
    return arn.rsplit(":secret:", 1)[-1] if ":secret:" in arn else arn
