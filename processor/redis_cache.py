"""Redis edge of the processor: the serving cache, written after each PostgreSQL commit.

PostgreSQL is the record; Redis is a cache of it, so everything written here is
idempotent and order-insensitive, and a Redis outage never stops ingestion:

* **Latest reading per device** (hash at :func:`redis_latest_key`): replaced only by
  a newer ``(ts, seq)``. A Lua compare-and-set does the comparison on the server
  (as decimal strings, so 64-bit ``seq`` values compare exactly), so two workers,
  a replay and a reconciliation can write in any order and the newest wins.
* **Recent window per device** (sorted set at :func:`redis_window_key`): member =
  compact JSON of the reading, score = ``seq``. The same script adds a member only
  when no member has that score yet (first write wins, like PostgreSQL's
  ``ON CONFLICT DO NOTHING``) and trims to the newest :attr:`window_size` seqs.
* **Anomaly stream** (:data:`REDIS_ANOMALY_STREAM`, ``MAXLEN ~``): stream ids must
  grow, and anomalies of different devices and shards arrive in any order, so ids
  cannot be derived from the reading. Instead each anomaly has a stable identity
  ``<device_id>:<seq>:<anomaly_type>`` (the PostgreSQL key): a Lua script does
  ``SET <dedup key> NX EX`` and only when that succeeds ``XADD *``, atomically. A
  replay within the dedup TTL (1 day, far longer than any redelivery) adds nothing;
  the entry carries ``anomaly_id`` so readers can de-duplicate beyond that too.
* **Last seen** (:data:`REDIS_LAST_SEEN`): ``ZADD GT`` of the event time in ms.
* **Detector state** (:func:`redis_detector_key`): saved for the devices whose
  state changed, after the commit; loaded (MGET) when a device first shows up on
  a shard this worker took over, so baselines survive a handoff.

TTLs: every key but the anomaly stream and the last-seen set expires (latest 7
days, window 1 day, detector state 7 days, anomaly de-dup keys 1 day); the stream
is bounded by ``MAXLEN ~`` and the last-seen set is pruned of devices silent for 7
days. Keys of one batch live in different hash slots: this assumes a non-clustered
replication group (what the stack creates).

Outage: any connection error marks the cache *stale*; while stale, batches skip
Redis (PostgreSQL goes on), and :meth:`RedisCache.recover` pings it, and when it
answers, clears the flag and then re-applies the latest reading of every device
from PostgreSQL (clearing first means no batch committed meanwhile can be missed).
Window and stream entries of the outage are not rebuilt: they are recent views.

Auth: the token comes from Secrets Manager through a redis-py credential provider,
asked on every new connection; when Redis refuses it (rotation), the secret is
fetched again and the pool reconnects.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.retry import Retry

from processor.contract.environment import ProcessorSettings
from processor.contract.storage import (
    REDIS_ANOMALY_STREAM,
    REDIS_LAST_SEEN,
    REDIS_PREFIX,
    redis_detector_key,
    redis_latest_key,
    redis_window_key,
)
from processor.core.model import AcceptedReading, Anomaly, ProcessedBatch
from processor.secrets import SecretsError, SecretsProvider

log = logging.getLogger(__name__)

DAY_S: Final = 86_400


def redis_anomaly_dedup_key(anomaly_id: str) -> str:
    """String with TTL: marks an anomaly as already added to the stream."""
    return f"{REDIS_PREFIX}:anomaly-seen:{anomaly_id}"


def anomaly_id(anomaly: Anomaly) -> str:
    """Stable identity of an anomaly (the PostgreSQL unique key)."""
    return f"{anomaly.device_id}:{anomaly.seq}:{anomaly.anomaly_type.value}"


@dataclass(frozen=True, slots=True)
class CacheLimits:
    window_size: int = 100
    latest_ttl_s: int = 7 * DAY_S
    window_ttl_s: int = DAY_S
    detector_ttl_s: int = 7 * DAY_S
    anomaly_dedup_ttl_s: int = DAY_S
    anomaly_stream_maxlen: int = 10_000
    last_seen_horizon_s: int = 7 * DAY_S


# KEYS: latest, window. ARGV: ts_us, seq, latest_ttl_ms, window_ttl_ms, window_size,
# n (number of latest field/value items), the n items, then (seq, member) pairs.
_APPLY_DEVICE: Final = """
local function greater(a, b)
  -- non-negative integers as decimal strings: longer is larger, else lexicographic
  if #a ~= #b then return #a > #b end
  return a > b
end
local replaced = 0
local cur = redis.call('HMGET', KEYS[1], 'ts_us', 'seq')
if (not cur[1]) or (not cur[2]) or greater(ARGV[1], cur[1])
   or (ARGV[1] == cur[1] and greater(ARGV[2], cur[2])) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 7, 6 + tonumber(ARGV[6])))
  replaced = 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local added = 0
local i = 7 + tonumber(ARGV[6])
while i < #ARGV do
  if redis.call('ZCOUNT', KEYS[2], ARGV[i], ARGV[i]) == 0 then
    redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
    added = added + 1
  end
  i = i + 2
end
if added > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[5]) + 1))
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return {replaced, added}
"""

# KEYS: dedup key, stream. ARGV: dedup ttl s, maxlen, field/value items.
_ADD_ANOMALY: Final = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
end
return false
"""

# KEYS: latest. ARGV: ts_us, seq, ttl_ms, field/value items. Latest-only CAS for
# reconciliation (no window entries).
_SET_LATEST: Final = """
local function greater(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local cur = redis.call('HMGET', KEYS[1], 'ts_us', 'seq')
if (not cur[1]) or (not cur[2]) or greater(ARGV[1], cur[1])
   or (ARGV[1] == cur[1] and greater(ARGV[2], cur[2])) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""

_window_encoder: Final = msgspec.json.Encoder()


class LatestSource(Protocol):
    """What reconciliation needs from the PostgreSQL store."""

    def latest_per_device(self) -> Any: ...


def _ts_us(ts: datetime) -> int:
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * DAY_S + delta.seconds) * 1_000_000 + delta.microseconds


def latest_fields(accepted: AcceptedReading) -> dict[str, str]:
    """The latest-reading hash of a device (all strings; empty for None)."""
    r = accepted.reading
    return {
        "device_id": r.device_id,
        "facility": r.facility,
        "line": r.line,
        "sensor_type": r.sensor_type.value,
        "value": "" if r.value is None else repr(r.value),
        "status": "" if r.status is None else r.status.value,
        "unit": r.unit,
        "ts": r.ts.isoformat(),
        "ts_us": str(_ts_us(r.ts)),
        "seq": str(r.seq),
        "schema_version": str(r.schema_version),
        "shard_id": accepted.shard_id,
        "sequence_number": accepted.sequence_number,
        "arrival": accepted.arrival.isoformat(),
    }


def window_member(accepted: AcceptedReading) -> bytes:
    """Window member: deterministic compact JSON (a replay yields the same bytes)."""
    r = accepted.reading
    return _window_encoder.encode(
        {
            "seq": r.seq,
            "ts": r.ts.isoformat(),
            "value": r.value,
            "status": None if r.status is None else r.status.value,
        }
    )


def _flatten(fields: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for key, value in fields.items():
        out += (key, value)
    return out


class _SecretsCredentials(CredentialProvider):
    """AUTH token from Secrets Manager, asked for on every new connection."""

    def __init__(self, secrets: SecretsProvider, arn: str) -> None:
        self.secrets = secrets
        self.arn = arn
        self.refresh_next = False

    def get_credentials(self) -> tuple[str]:
        refresh, self.refresh_next = self.refresh_next, False
        return (self.secrets.redis_auth_token(self.arn, refresh=refresh).reveal(),)


class RedisCache:
    """The processor's writes to Redis. Thread-safe (redis-py pools connections)."""

    def __init__(
        self,
        settings: ProcessorSettings,
        secrets: SecretsProvider,
        *,
        limits: CacheLimits | None = None,
        socket_timeout_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.limits = limits or CacheLimits()
        self._credentials = _SecretsCredentials(secrets, settings.redis_auth_secret_arn)
        tls: dict[str, Any] = {}
        if settings.redis_tls:
            tls = {
                "ssl": True,
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
                # Empty: the system trust store (what ElastiCache's Amazon CA is in).
                "ssl_ca_certs": settings.redis_ca_bundle or None,
            }
        self.client = redis.Redis(
            host=settings.redis_host,
            port=settings.redis_port,
            credential_provider=self._credentials,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            health_check_interval=30,
            # Our own stale/recover logic replaces redis-py's retries: a dead Redis must
            # cost one failed call per batch at most, not seconds of back-off.
            retry=Retry(NoBackoff(), 0),
            **tls,
        )
        self._apply_device = self.client.register_script(_APPLY_DEVICE)
        self._add_anomaly = self.client.register_script(_ADD_ANOMALY)
        self._set_latest = self.client.register_script(_SET_LATEST)
        self._lock = threading.Lock()
        self._stale = True  # until the first successful contact (and reconciliation)
        self._stale_since: float | None = time.monotonic()
        self._last_prune = 0.0
        self._run_id: str | None = None
        self.errors = 0
        self.reconciliations = 0

    # -- state ------------------------------------------------------------------------

    @property
    def stale(self) -> bool:
        return self._stale

    def _mark_stale(self, exc: BaseException, action: str) -> None:
        self.errors += 1
        with self._lock:
            if not self._stale:
                self._stale = True
                self._stale_since = time.monotonic()
                log.warning(
                    "Redis unavailable; PostgreSQL writes go on, cache marked stale",
                    extra={"event": "redis_stale", "action": action, "error": type(exc).__name__},
                )

    def _call(self, action: str, fn: Any) -> Any:
        """Run ``fn()``; on an AUTH failure refresh the token and retry once."""
        try:
            return fn()
        except AuthenticationError:
            log.info("Redis refused the AUTH token; fetching the secret again")
            self._credentials.refresh_next = True
            self.client.connection_pool.disconnect()
            return fn()
        except ResponseError as exc:
            # A connection authenticated before a rotation may get NOAUTH/WRONGPASS later.
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                self._credentials.refresh_next = True
                self.client.connection_pool.disconnect()
                return fn()
            raise

    def check(self) -> bool:
        """Periodic probe (the worker's chores, every second or so): a Redis that
        restarted empty between two batches raises nothing on our side (the pool just
        reconnects), so compare the server's ``run_id`` and treat a new one as an
        outage: mark stale, and :meth:`recover` restores the latest readings."""
        if self._stale:
            return False
        try:
            run_id = self._call("info", lambda: self.client.info("server").get("run_id"))
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "check")
            return False
        if self._run_id is not None and run_id != self._run_id:
            self._mark_stale(RuntimeError("Redis restarted (new run_id)"), "check")
            self._run_id = run_id
            return False
        self._run_id = run_id
        return True

    def ping(self) -> bool:
        try:
            return bool(self._call("ping", self.client.ping))
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "ping")
            return False

    # -- writes after a commit ----------------------------------------------------------

    def apply(self, batch: ProcessedBatch) -> bool:
        """Apply a committed batch. False when skipped or failed (cache stale)."""
        if self._stale:
            return False
        if not batch.readings and not batch.anomalies:
            return True
        try:
            self._call("apply", lambda: self._apply(batch))
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "apply")
            return False
        return True

    def _apply(self, batch: ProcessedBatch) -> None:
        limits = self.limits
        by_device: dict[str, list[AcceptedReading]] = {}
        for accepted in batch.readings:
            by_device.setdefault(accepted.reading.device_id, []).append(accepted)
        pipe = self.client.pipeline(transaction=False)
        last_seen: dict[str, float] = {}
        for device_id, items in by_device.items():
            newest = max(items, key=lambda a: (a.reading.ts, a.reading.seq))
            fields = _flatten(latest_fields(newest))
            args: list[Any] = [
                str(_ts_us(newest.reading.ts)),
                str(newest.reading.seq),
                limits.latest_ttl_s * 1000,
                limits.window_ttl_s * 1000,
                limits.window_size,
                len(fields),
                *fields,
            ]
            for accepted in items[-limits.window_size :]:
                args += (accepted.reading.seq, window_member(accepted))
            self._apply_device(
                keys=[redis_latest_key(device_id), redis_window_key(device_id)],
                args=args,
                client=pipe,
            )
            last_seen[device_id] = _ts_us(newest.reading.ts) // 1000
        if last_seen:
            pipe.zadd(REDIS_LAST_SEEN, last_seen, gt=True)
        for anomaly in batch.anomalies:
            self._queue_anomaly(pipe, anomaly)
        now = time.monotonic()
        if now - self._last_prune > 60:
            self._last_prune = now
            horizon_ms = (time.time() - limits.last_seen_horizon_s) * 1000
            pipe.zremrangebyscore(REDIS_LAST_SEEN, "-inf", horizon_ms)
        pipe.execute()

    def _queue_anomaly(self, pipe: Any, anomaly: Anomaly) -> None:
        identity = anomaly_id(anomaly)
        fields = {
            "anomaly_id": identity,
            "device_id": anomaly.device_id,
            "seq": str(anomaly.seq),
            "type": anomaly.anomaly_type.value,
            "severity": anomaly.severity.value,
            "score": repr(anomaly.score),
            "ts": anomaly.ts.isoformat(),
            "sensor_type": anomaly.sensor_type,
            "value": "" if anomaly.value is None else repr(anomaly.value),
            "explanation": anomaly.explanation,
        }
        self._add_anomaly(
            keys=[redis_anomaly_dedup_key(identity), REDIS_ANOMALY_STREAM],
            args=[
                self.limits.anomaly_dedup_ttl_s,
                self.limits.anomaly_stream_maxlen,
                *_flatten(fields),
            ],
            client=pipe,
        )

    def add_anomalies(self, anomalies: Sequence[Anomaly]) -> bool:
        """Anomalies outside a batch (the silence timer), after their commit."""
        if self._stale or not anomalies:
            return not self._stale

        def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            for anomaly in anomalies:
                self._queue_anomaly(pipe, anomaly)
            pipe.execute()

        try:
            self._call("anomalies", run)
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "anomalies")
            return False
        return True

    # -- detector state ---------------------------------------------------------------

    def save_detector_states(self, states: Mapping[str, bytes]) -> bool:
        if not states:
            return True
        if self._stale:
            return False

        def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            ttl_ms = self.limits.detector_ttl_s * 1000
            for device_id, data in states.items():
                pipe.set(redis_detector_key(device_id), data, px=ttl_ms)
            pipe.execute()

        try:
            self._call("save_detector_states", run)
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "save_detector_states")
            return False
        return True

    def load_detector_states(self, device_ids: Sequence[str]) -> dict[str, bytes | None]:
        """Saved states (None where absent). A stale cache yields none: the devices
        re-learn their baselines rather than stall the shard."""
        if not device_ids or self._stale:
            return {}
        keys = [redis_detector_key(d) for d in device_ids]
        try:
            values = self._call("load_detector_states", lambda: self.client.mget(keys))
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "load_detector_states")
            return {}
        return dict(zip(device_ids, values, strict=True))

    # -- reconciliation ---------------------------------------------------------------

    def set_latest(self, readings: Iterable[AcceptedReading]) -> int:
        """Compare-and-set the latest hash of each reading's device; returns how many
        were replaced. Raises on Redis errors (used by :meth:`recover`)."""
        replaced = 0
        pipe = self.client.pipeline(transaction=False)
        last_seen: dict[str, float] = {}
        pending = 0
        ttl_ms = self.limits.latest_ttl_s * 1000

        def flush() -> int:
            results = pipe.execute()
            if last_seen:
                self.client.zadd(REDIS_LAST_SEEN, last_seen, gt=True)
                last_seen.clear()
            return sum(int(r) for r in results if isinstance(r, int))

        for accepted in readings:
            r = accepted.reading
            self._set_latest(
                keys=[redis_latest_key(r.device_id)],
                args=[str(_ts_us(r.ts)), str(r.seq), ttl_ms, *_flatten(latest_fields(accepted))],
                client=pipe,
            )
            last_seen[r.device_id] = _ts_us(r.ts) // 1000
            pending += 1
            if pending >= 500:
                replaced += flush()
                pending = 0
        if pending:
            replaced += flush()
        return replaced

    def recover(self, store: LatestSource) -> bool:
        """If stale and Redis answers: reconcile the latest readings from PostgreSQL.
        Returns True when the cache is (now) fresh."""
        if not self._stale:
            return True
        try:
            run_id = self._call("info", lambda: self.client.info("server").get("run_id"))
        except (RedisError, OSError, SecretsError):
            return False
        self._run_id = run_id
        # Clear first: a batch committed after this point is applied by its own thread,
        # and every batch committed before it is in the snapshot read below.
        with self._lock:
            self._stale = False
            stale_for = None if self._stale_since is None else time.monotonic() - self._stale_since
        try:
            rows = store.latest_per_device()
            replaced = self._call("reconcile", lambda: self.set_latest(_as_accepted(rows)))
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "reconcile")
            return False
        except Exception:
            # PostgreSQL down while Redis came back: try again on the next round.
            with self._lock:
                self._stale = True
            log.warning("Redis reconciliation postponed (store unavailable)", exc_info=True)
            return False
        self.reconciliations += 1
        log.info(
            "Redis reconciled from PostgreSQL",
            extra={
                "event": "redis_reconciled",
                "replaced": replaced,
                "stale_s": None if stale_for is None else round(stale_for, 1),
            },
        )
        return True

    def close(self) -> None:
        with contextlib.suppress(RedisError):
            self.client.close()


def _as_accepted(rows: Any) -> Iterable[AcceptedReading]:
    """``latest_per_device()`` rows as :class:`AcceptedReading` (it may return those,
    or mappings of a device to one)."""
    if isinstance(rows, Mapping):
        rows = rows.values()
    for row in rows:
        if isinstance(row, AcceptedReading):
            yield row
        else:
            raise TypeError(f"unexpected latest_per_device row {type(row).__name__}")
