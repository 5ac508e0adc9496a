"""Redis edge of the processor: the serving cache, written after each PostgreSQL commit.

PostgreSQL is the record; Redis is a cache of it, so everything written here is
idempotent and order-insensitive, and a Redis outage never stops ingestion.

A batch is written by one ``EVALSHA`` of :data:`_APPLY_BATCH` (one round trip, one
command): the batch travels as one msgpack document and the script loops over it on
the server, applying per device and per anomaly what follows:

* **Latest reading per device** (hash at :func:`redis_latest_key`): replaced only by
  a newer ``(ts, seq)``. A Lua compare-and-set does the comparison on the server
  (as decimal strings, so 64-bit ``seq`` values compare exactly), so two workers,
  a replay and a reconciliation can write in any order and the newest wins.
* **Recent window per device** (sorted set at :func:`redis_window_key`): member =
  compact JSON of the reading, ``{"boot":B,"seq":S,...}``, score = its event time in
  µs. The same script adds a member only when no member of that score starts with
  the same ``{"boot":B,"seq":S,`` (first write of an identity wins, like
  PostgreSQL's ``ON CONFLICT DO NOTHING``) and trims to the newest
  :attr:`window_size` by event time. Scored by event time, not ``seq``: a device
  restart starts ``seq`` again at 0, and a ``seq`` score trimmed the new boot's
  readings at once (the window froze on the old boot). The read API serves a range
  from it only when the members prove it whole (consecutive ``seq`` of one boot:
  ``api/app.py``), since the window of an outage is not rebuilt.
* **Anomaly stream** (:data:`REDIS_ANOMALY_STREAM`, ``MAXLEN ~``): stream ids must
  grow, and anomalies of different devices and shards arrive in any order, so ids
  cannot be derived from the reading. Instead each anomaly has a stable identity
  ``<device_id>:<seq>:<anomaly_type>:<boot>:<event day>`` (the PostgreSQL key, see
  :func:`anomaly_identity`): a Lua script does
  ``SET <dedup key> NX EX`` and only when that succeeds ``XADD *``, atomically. A
  replay within the dedup TTL (1 day, far longer than any redelivery) adds nothing;
  the entry carries ``anomaly_id`` so readers can de-duplicate beyond that too.
* **Last seen** (:data:`REDIS_LAST_SEEN`): ``ZADD GT`` of the event time in ms; the
  same per production line (:func:`redis_line_devices_key`), so the read API's board
  of a line reads that line's latest hashes, not the plant's. Both pruned of devices
  silent for the last-seen horizon; a line's set expires with the latest hashes.
* **Silence registry** (hash per shard at :func:`redis_silence_key`): device ->
  :class:`processor.core.silence.SilenceEntry` as JSON, for the devices the batch
  touched (and the episodes the silence check reported), in the same script call;
  entries of devices forgotten by the tracker are deleted. Loaded (one pipelined
  ``HGETALL`` of the shard and its parents) when a runner takes the shard, so a new
  owner — after a handoff, a deploy, a ``kill -9`` or a split — knows every device,
  not only those that appear again; and per device (``HMGET``) when a device the
  worker let go of after reporting its silence reads again. Bounded (issue 10 item
  9): a sorted set beside it (:func:`redis_silence_arrivals_key`) holds each
  entry's last arrival, and the script deletes up to 1,000 entries older than the
  forget time (``TAP_SILENCE_FORGET_AFTER_S``, on the shard's progress) per call.
* **Detector state** (:func:`redis_detector_key`): saved (one script call) for the
  devices whose state changed, after a commit (the worker throttles this, see
  ``processor.worker.STATE_SAVE_EVERY_S``); loaded (MGET) when a device first shows
  up on a shard this worker took over, so baselines survive a handoff.

TTLs: every key but the anomaly stream and the last-seen set expires (latest 7
days, window 1 day, detector state 7 days, silence registry 7 days after the
shard's last write, anomaly de-dup keys 1 day); the stream
is bounded by ``MAXLEN ~`` and the last-seen set is pruned of devices silent for 7
days. Keys of one batch live in different hash slots, and the script builds them
rather than declaring them in ``KEYS``: this assumes a non-clustered replication
group (what the stack creates); Redis Cluster would refuse it.

Outage: any connection error marks the cache *stale*; while stale, batches skip
Redis (PostgreSQL goes on), and :meth:`RedisCache.recover` pings it, and when it
answers, clears the flag and then re-applies the latest reading of every device
from PostgreSQL (clearing first means no batch committed meanwhile can be missed).
Window and stream entries of the outage are not rebuilt: they are recent views.

Auth: the token comes from Secrets Manager through a redis-py credential provider,
asked on every new connection; when Redis refuses it (rotation), the secret is
fetched again and the idle pooled connections reconnect (connections in use by other
threads are left alone: their writes must not be cut).
"""

from __future__ import annotations

import contextlib
import logging
import string
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, Protocol

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.retry import Retry

from processor import client_timeouts
from processor.contract.environment import ProcessorSettings
from processor.contract.storage import (
    REDIS_ANOMALY_STREAM,
    REDIS_LAST_SEEN,
    REDIS_LATEST_FIELDS,
    AnomalyStreamField,
    LatestField,
    WindowMemberField,
    redis_anomaly_dedup_key,
    redis_detector_key,
    redis_latest_key,
    redis_line_devices_key,
    redis_silence_arrivals_key,
    redis_silence_key,
    redis_window_key,
)
from processor.core.model import AcceptedReading, Anomaly, ProcessedBatch
from processor.secrets import SecretsError, SecretsProvider

log = logging.getLogger(__name__)

DAY_S: Final = 86_400


def redis_tls_options(enabled: bool, ca_bundle: str) -> dict[str, Any]:
    """redis-py's keyword arguments for TLS with certificate and host name checks (the
    processor's cache and the read API's client); an empty ``ca_bundle`` means the
    system trust store, which holds ElastiCache's Amazon CA."""
    if not enabled:
        return {}
    return {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": ca_bundle or None,
    }


def anomaly_id(anomaly: Anomaly) -> str:
    """Stable identity of an anomaly (the PostgreSQL unique key)."""
    return anomaly_identity(
        anomaly.device_id, anomaly.boot, anomaly.seq, anomaly.anomaly_type.value, anomaly.event_day
    )


def anomaly_identity(device_id: str, boot: int, seq: int, anomaly_type: str, day: date) -> str:
    """``<device_id>:<seq>:<anomaly_type>`` (the format before issue 10 item 4), then
    ``:<boot>:<event day>``: the anomalies table's key (migration 0007), so a rebooted
    device's anomaly (boot + 1, seq again from 0) and a version 1 device's anomaly
    on a seq reused on a later day each get their own stream entry."""
    return f"{device_id}:{seq}:{anomaly_type}:{boot}:{day.isoformat()}"


@dataclass(frozen=True, slots=True)
class CacheLimits:
    window_size: int = 100
    latest_ttl_s: int = 7 * DAY_S
    window_ttl_s: int = DAY_S
    detector_ttl_s: int = 7 * DAY_S
    anomaly_dedup_ttl_s: int = DAY_S
    anomaly_stream_maxlen: int = 10_000
    last_seen_horizon_s: int = 7 * DAY_S
    silence_ttl_s: int = 7 * DAY_S


#: Devices (and, separately, anomalies) per script call. A batch of the default
#: GetRecords size is one call; a 10,000-record batch is a few, so that no single
#: script keeps the (single-threaded) server busy for more than a few milliseconds.
#: The calls of one batch are independent: each is atomic and idempotent by itself.
MAX_ITEMS_PER_CALL: Final = 1_000

# One call per batch: ARGV[1] is one msgpack document (encoded by msgspec in one go),
# and the script loops over it on the server, so the client encodes one command
# instead of a few per device. Redis's Lua cmsgpack has no ``bin`` type, so every
# value in it is a msgpack *string*; 64-bit numbers (ts_us, seq) travel as decimal
# strings so that Lua's doubles never round them.
#
# Document: {latest_ttl_ms, window_ttl_ms, window_size, dedup_ttl_s, stream_maxlen,
#   prune_before_ms ('' = no pruning), latest_prefix, window_prefix, dedup_prefix,
#   stream_key, last_seen_key, devices, anomalies, latest field names,
#   silence_key ('' = none), {device, entry JSON, ...}, {device to delete, ...},
#   silence_ttl_ms, silence arrivals key, {last arrival ms, device, ...},
#   silence forget before ms ('' = no pruning)}
# devices: {device_id, ts_us, seq, last_seen_ms, {latest values, in the order of the
#   field names}, {window ts_us, identity prefix, member, ...} (an empty window list
#   leaves the window untouched: reconciliation), the line's device-set key};
#   anomalies: {anomaly_id, {stream field, value, ...}}.
# Returns {latest hashes replaced, window members added, stream entries added}.
#
# The keys are built in the script from the prefixes, not declared in KEYS: that is
# fine on a non-clustered Redis (an ElastiCache replication group with one shard,
# what the stack creates) but a script touching many undeclared keys of different
# hash slots is refused by Redis Cluster; cluster mode would need one call per slot.
# The latest hash's field names come from the contract ($ts_us, $seq).
_APPLY_BATCH: Final = string.Template("""
local function greater(a, b)
  -- non-negative integers as decimal strings: longer is larger, else lexicographic
  if #a ~= #b then return #a > #b end
  return a > b
end
local p = cmsgpack.unpack(ARGV[1])
local latest_ttl, window_ttl, window_size = p[1], p[2], p[3]
local dedup_ttl, maxlen, prune_before = p[4], p[5], p[6]
local latest_prefix, window_prefix, dedup_prefix = p[7], p[8], p[9]
local stream, last_seen, names = p[10], p[11], p[14]
local hash = {}
local replaced, added, streamed = 0, 0, 0
local seen = {}
local by_line = {}
for _, d in ipairs(p[12]) do
  local device, ts_us, seq = d[1], d[2], d[3]
  local line_members = by_line[d[7]]
  if not line_members then
    line_members = {}
    by_line[d[7]] = line_members
  end
  line_members[#line_members + 1] = d[4]
  line_members[#line_members + 1] = device
  local lk = latest_prefix .. device
  local cur = redis.call('HMGET', lk, '$ts_us', '$seq')
  if (not cur[1]) or (not cur[2]) or greater(ts_us, cur[1])
     or (ts_us == cur[1] and greater(seq, cur[2])) then
    local values = d[5]
    for j = 1, #names do
      hash[2 * j - 1] = names[j]
      hash[2 * j] = values[j]
    end
    redis.call('DEL', lk)
    redis.call('HSET', lk, unpack(hash))
    replaced = replaced + 1
  end
  redis.call('PEXPIRE', lk, latest_ttl)
  local w = d[6]
  if #w > 0 then
    local wk = window_prefix .. device
    local n = 0
    for i = 1, #w, 3 do
      -- first write of an identity wins (like PostgreSQL's ON CONFLICT DO NOTHING):
      -- a copy has the same event time, so only the members of that score are read
      local score, prefix, member = w[i], w[i + 1], w[i + 2]
      local copy = false
      for _, m in ipairs(redis.call('ZRANGEBYSCORE', wk, score, score)) do
        if string.sub(m, 1, #prefix) == prefix then
          copy = true
          break
        end
      end
      if not copy then
        redis.call('ZADD', wk, score, member)
        n = n + 1
      end
    end
    if n > 0 then
      redis.call('ZREMRANGEBYRANK', wk, 0, -(window_size + 1))
    end
    redis.call('PEXPIRE', wk, window_ttl)  -- a no-op when the key does not exist
    added = added + n
  end
  seen[#seen + 1] = d[4]
  seen[#seen + 1] = device
  if #seen >= 1000 then  -- keep unpack() far below Lua's stack limit
    redis.call('ZADD', last_seen, 'GT', unpack(seen))
    seen = {}
  end
end
if #seen > 0 then
  redis.call('ZADD', last_seen, 'GT', unpack(seen))
end
if prune_before ~= '' then
  redis.call('ZREMRANGEBYSCORE', last_seen, '-inf', prune_before)
end
-- each line's device set, as the last-seen set (pairs of score, device; 500 a call)
for line_key, members in pairs(by_line) do
  for i = 1, #members, 1000 do
    redis.call('ZADD', line_key, 'GT', unpack(members, i, math.min(i + 999, #members)))
  end
  if prune_before ~= '' then
    redis.call('ZREMRANGEBYSCORE', line_key, '-inf', prune_before)
  end
  redis.call('PEXPIRE', line_key, latest_ttl)
end
for _, a in ipairs(p[13]) do
  -- SET NX first: the stream gets an anomaly at most once per dedup TTL
  if redis.call('SET', dedup_prefix .. a[1], '1', 'NX', 'EX', dedup_ttl) then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(a[2]))
    streamed = streamed + 1
  end
end
local silence = p[15]
if silence ~= '' then
  local entries, gone = p[16], p[17]
  for i = 1, #entries, 1000 do  -- field/value pairs: 1000 is even
    redis.call('HSET', silence, unpack(entries, i, math.min(i + 999, #entries)))
  end
  local arrivals, scores, forget_before = p[19], p[20], p[21]
  for i = 1, #gone, 1000 do
    redis.call('HDEL', silence, unpack(gone, i, math.min(i + 999, #gone)))
    redis.call('ZREM', arrivals, unpack(gone, i, math.min(i + 999, #gone)))
  end
  for i = 1, #scores, 1000 do  -- score/member pairs
    redis.call('ZADD', arrivals, unpack(scores, i, math.min(i + 999, #scores)))
  end
  if forget_before ~= '' then
    -- bounded work per call: a backlog (a long-dead shard's devices) goes 1,000 a call
    local old = redis.call('ZRANGEBYSCORE', arrivals, '-inf', '(' .. forget_before,
                           'LIMIT', 0, 1000)
    if #old > 0 then
      redis.call('HDEL', silence, unpack(old))
      redis.call('ZREM', arrivals, unpack(old))
    end
  end
  redis.call('PEXPIRE', silence, p[18])
  redis.call('PEXPIRE', arrivals, p[18])
end
return {replaced, added, streamed}
""").substitute(ts_us=LatestField.TS_US.value, seq=LatestField.SEQ.value)

# ARGV[1]: msgpack {key prefix, ttl_ms, {device_id, ...}}; ARGV[2..]: the states, in
# the same order (raw bytes: they cannot ride in the msgpack document, see above).
_SAVE_STATES: Final = """
local p = cmsgpack.unpack(ARGV[1])
local prefix, ttl = p[1], p[2]
for i, device in ipairs(p[3]) do
  redis.call('SET', prefix .. device, ARGV[i + 1], 'PX', ttl)
end
return #p[3]
"""

_payload_encoder: Final = msgspec.msgpack.Encoder()
_window_encoder: Final = msgspec.json.Encoder()
_LATEST_PREFIX: Final = redis_latest_key("")
_WINDOW_PREFIX: Final = redis_window_key("")
_DETECTOR_PREFIX: Final = redis_detector_key("")
_DEDUP_PREFIX: Final = redis_anomaly_dedup_key("")


class LatestSource(Protocol):
    """What reconciliation needs from the PostgreSQL store."""

    def latest_per_device(self) -> Any: ...


def _ts_us(ts: datetime) -> int:
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * DAY_S + delta.seconds) * 1_000_000 + delta.microseconds


#: The fields of the latest-reading hash (the contract's order), in the order of
#: :func:`_latest_values`.
LATEST_FIELDS: Final = REDIS_LATEST_FIELDS
_TS_US_INDEX: Final = LATEST_FIELDS.index(LatestField.TS_US)
_SEQ_INDEX: Final = LATEST_FIELDS.index(LatestField.SEQ)


def _latest_values(accepted: AcceptedReading) -> list[str]:
    r = accepted.reading
    return [
        r.device_id,
        r.facility,
        r.line,
        r.sensor_type.value,
        "" if r.value is None else repr(r.value),
        "" if r.status is None else r.status.value,
        r.unit,
        r.ts.isoformat(),
        str(_ts_us(r.ts)),
        str(r.seq),
        str(r.schema_version),
        accepted.shard_id,
        accepted.sequence_number,
        accepted.arrival.isoformat(),
    ]


def latest_fields(accepted: AcceptedReading) -> dict[str, str]:
    """The latest-reading hash of a device (all strings; empty for None)."""
    return dict(zip(LATEST_FIELDS, _latest_values(accepted), strict=True))


def window_identity(accepted: AcceptedReading) -> bytes:
    """The prefix every window member of this reading's identity starts with."""
    r = accepted.reading
    identity = {WindowMemberField.BOOT: r.series, WindowMemberField.SEQ: r.seq}
    return _window_encoder.encode(identity)[:-1] + b","


def window_member(accepted: AcceptedReading) -> bytes:
    """Window member: deterministic compact JSON (a replay yields the same bytes), its
    identity first (:func:`window_identity`)."""
    r = accepted.reading
    return _window_encoder.encode(
        {
            WindowMemberField.BOOT: r.series,
            WindowMemberField.SEQ: r.seq,
            WindowMemberField.TS: r.ts.isoformat(),
            WindowMemberField.VALUE: r.value,
            WindowMemberField.STATUS: None if r.status is None else r.status.value,
        }
    )


def _flatten(fields: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for key, value in fields.items():
        out += (key, value)
    return out


def _device_entry(items: Sequence[AcceptedReading], window_size: int) -> list[Any]:
    """One device of the batch script's document (see :data:`_APPLY_BATCH`): the newest
    of ``items`` for the latest hash, the last ``window_size`` for the window."""
    newest = items[0] if len(items) == 1 else max(items, key=_newest_key)
    values = _latest_values(newest)
    ts_us = values[_TS_US_INDEX]
    window: list[str] = []
    if window_size > 0:
        for accepted in items[-window_size:]:
            window += (
                str(_ts_us(accepted.reading.ts)),
                window_identity(accepted).decode(),
                window_member(accepted).decode(),
            )
    return [
        newest.reading.device_id,
        ts_us,
        values[_SEQ_INDEX],
        str(int(ts_us) // 1000),
        values,
        window,
        redis_line_devices_key(newest.reading.facility, newest.reading.line),
    ]


def _newest_key(accepted: AcceptedReading) -> tuple[datetime, int]:
    return accepted.reading.ts, accepted.reading.seq


def _anomaly_entry(anomaly: Anomaly) -> list[Any]:
    identity = anomaly_id(anomaly)
    f = AnomalyStreamField
    fields = {
        f.ANOMALY_ID.value: identity,
        f.DEVICE_ID.value: anomaly.device_id,
        f.SEQ.value: str(anomaly.seq),
        f.TYPE.value: anomaly.anomaly_type.value,
        f.SEVERITY.value: anomaly.severity.value,
        f.SCORE.value: repr(anomaly.score),
        f.TS.value: anomaly.ts.isoformat(),
        f.SENSOR_TYPE.value: anomaly.sensor_type,
        f.VALUE.value: "" if anomaly.value is None else repr(anomaly.value),
        f.EXPLANATION.value: anomaly.explanation,
        f.BOOT.value: str(anomaly.boot),
    }
    return [identity, _flatten(fields)]


@dataclass(frozen=True, slots=True)
class _SilenceWrite:
    """A batch's changes to the shard's silence registry (see :data:`_APPLY_BATCH`)."""

    key: str  # '' = none
    registry: Sequence[str]  # device, entry JSON, ...
    forgotten: Sequence[str]
    arrivals_key: str
    scores: Sequence[str]  # last arrival ms, device, ... (same order as registry)
    forget_before_ms: str  # '' = no pruning


def _chunks(items: Sequence[Any], per_item: int = 1) -> list[Sequence[Any]]:
    """Slices of :data:`MAX_ITEMS_PER_CALL` items of ``per_item`` elements each."""
    size = MAX_ITEMS_PER_CALL * per_item
    return [items[i : i + size] for i in range(0, len(items), size)]


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
        socket_timeout_s: float = client_timeouts.REDIS_SOCKET_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.limits = limits or CacheLimits()
        self._credentials = _SecretsCredentials(secrets, settings.redis_auth_secret_arn)
        tls = redis_tls_options(settings.redis_tls, settings.redis_ca_bundle)
        self.client = redis.Redis(
            host=settings.redis_host,
            port=settings.redis_port,
            credential_provider=self._credentials,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=min(socket_timeout_s, client_timeouts.REDIS_CONNECT_TIMEOUT_S),
            health_check_interval=client_timeouts.REDIS_HEALTH_CHECK_INTERVAL_S,
            # Our own stale/recover logic replaces redis-py's retries: a dead Redis must
            # cost one failed call per batch at most, not seconds of back-off.
            retry=Retry(NoBackoff(), 0),
            **tls,
        )
        # Called directly, never in a pipeline: redis-py's pipeline sends a SCRIPT
        # EXISTS round trip before each execute; a direct call is one EVALSHA (and a
        # SCRIPT LOAD only after a Redis restart flushed the script cache).
        self._apply_batch = self.client.register_script(_APPLY_BATCH)
        self._save_states = self.client.register_script(_SAVE_STATES)
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
        """Run ``fn()``; on an AUTH failure refresh the token and retry once.

        Only *idle* pooled connections are dropped (the one that was refused is back
        in the pool by now): connections other runners are using stay untouched, so
        their in-flight writes complete (issue 10, item 8). A connection authenticated
        before the change keeps working; if Redis ever refuses one, its own call
        comes through here and it is dropped then."""
        try:
            return fn()
        except AuthenticationError:
            log.info("Redis refused the AUTH token; fetching the secret again")
            self._credentials.refresh_next = True
            self.client.connection_pool.disconnect(inuse_connections=False)
            return fn()
        except ResponseError as exc:
            # A connection authenticated before a rotation may get NOAUTH/WRONGPASS later.
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                self._credentials.refresh_next = True
                self.client.connection_pool.disconnect(inuse_connections=False)
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

    def apply(
        self,
        batch: ProcessedBatch,
        silence: Mapping[str, str] | None = None,
        forgotten: Sequence[str] = (),
        *,
        silence_arrivals: Mapping[str, int] | None = None,
        silence_forget_before_ms: int | None = None,
    ) -> bool:
        """Apply a committed batch, and the shard's changed silence registry entries
        (device -> JSON) and forgotten devices in the same call. False when skipped or
        failed (cache stale): the caller keeps the entries to save them next time.

        ``silence_arrivals`` gives each saved entry's last arrival (epoch ms) for the
        registry's arrival index; registry entries whose last arrival is before
        ``silence_forget_before_ms`` are deleted (up to 1,000 per call)."""
        if self._stale:
            return False
        if not batch.readings and not batch.anomalies and not silence and not forgotten:
            return True
        try:
            self._call(
                "apply",
                lambda: self._apply(
                    batch,
                    silence or {},
                    forgotten,
                    silence_arrivals or {},
                    silence_forget_before_ms,
                ),
            )
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "apply")
            return False
        return True

    def _apply(
        self,
        batch: ProcessedBatch,
        silence: Mapping[str, str],
        forgotten: Sequence[str],
        arrivals: Mapping[str, int],
        forget_before_ms: int | None,
    ) -> None:
        window_size = self.limits.window_size
        by_device: dict[str, list[AcceptedReading]] = {}
        for accepted in batch.readings:
            by_device.setdefault(accepted.reading.device_id, []).append(accepted)
        devices = [_device_entry(items, window_size) for items in by_device.values()]
        anomalies = [_anomaly_entry(a) for a in batch.anomalies]
        registry: list[str] = []
        scores: list[str] = []
        for device_id, entry in silence.items():
            registry += (device_id, entry)
            # An entry without its arrival is still indexed: as new (never pruned early).
            scores += (str(arrivals.get(device_id, 2**53)), device_id)
        key = (
            redis_silence_key(batch.shard_id)
            if registry or forgotten or forget_before_ms is not None
            else ""
        )
        self._run_batch(
            devices,
            anomalies,
            prune=True,
            silence=_SilenceWrite(
                key,
                registry,
                forgotten,
                redis_silence_arrivals_key(batch.shard_id) if key else "",
                scores,
                "" if forget_before_ms is None else str(forget_before_ms),
            ),
        )

    def _run_batch(
        self,
        devices: Sequence[list[Any]],
        anomalies: Sequence[list[Any]],
        *,
        prune: bool,
        silence: _SilenceWrite | None = None,
    ) -> list[int]:
        """Run :data:`_APPLY_BATCH` over ``devices``, ``anomalies`` and the silence
        registry's changes (one call per :data:`MAX_ITEMS_PER_CALL` of each); returns
        the summed counters."""
        limits = self.limits
        prune_before = ""
        now = time.monotonic()
        if prune and now - self._last_prune > 60:
            self._last_prune = now
            prune_before = str(int((time.time() - limits.last_seen_horizon_s) * 1000))
        device_chunks = _chunks(devices) or [[]]
        anomaly_chunks = _chunks(anomalies) or [[]]
        if silence is None:
            silence = _SilenceWrite("", (), (), "", (), "")
        silence_key, registry, forgotten = silence.key, silence.registry, silence.forgotten
        registry_chunks = _chunks(registry, 2) or [[]]
        score_chunks = _chunks(silence.scores, 2) or [[]]
        forgotten_chunks = _chunks(forgotten) or [[]]
        totals = [0, 0, 0]
        calls = max(len(device_chunks), len(anomaly_chunks), len(registry_chunks))
        for i in range(max(calls, len(forgotten_chunks))):
            payload = _payload_encoder.encode(
                [
                    limits.latest_ttl_s * 1000,
                    limits.window_ttl_s * 1000,
                    limits.window_size,
                    limits.anomaly_dedup_ttl_s,
                    limits.anomaly_stream_maxlen,
                    prune_before if i == 0 else "",
                    _LATEST_PREFIX,
                    _WINDOW_PREFIX,
                    _DEDUP_PREFIX,
                    REDIS_ANOMALY_STREAM,
                    REDIS_LAST_SEEN,
                    device_chunks[i] if i < len(device_chunks) else [],
                    anomaly_chunks[i] if i < len(anomaly_chunks) else [],
                    LATEST_FIELDS,
                    silence_key,
                    registry_chunks[i] if i < len(registry_chunks) else [],
                    forgotten_chunks[i] if i < len(forgotten_chunks) else [],
                    limits.silence_ttl_s * 1000,
                    silence.arrivals_key,
                    score_chunks[i] if i < len(score_chunks) else [],
                    silence.forget_before_ms if i == 0 else "",
                ]
            )
            counts = self._apply_batch(keys=[], args=[payload])
            totals = [t + int(c) for t, c in zip(totals, counts, strict=True)]
        return totals

    def add_anomalies(self, anomalies: Sequence[Anomaly]) -> bool:
        """Anomalies outside a batch (the silence timer), after their commit."""
        if self._stale or not anomalies:
            return not self._stale
        entries = [_anomaly_entry(a) for a in anomalies]
        try:
            self._call("anomalies", lambda: self._run_batch([], entries, prune=False))
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "anomalies")
            return False
        return True

    # -- detector state ---------------------------------------------------------------

    def save_detector_states(self, states: Mapping[str, bytes]) -> bool:
        """``SET PX`` of each state: one script call per :data:`MAX_ITEMS_PER_CALL`."""
        if not states:
            return True
        if self._stale:
            return False
        items = list(states.items())
        ttl_ms = self.limits.detector_ttl_s * 1000

        def run() -> None:
            for chunk in _chunks(items):
                header = _payload_encoder.encode([_DETECTOR_PREFIX, ttl_ms, [d for d, _ in chunk]])
                self._save_states(keys=[], args=[header, *(data for _, data in chunk)])

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

    # -- silence registry ---------------------------------------------------------------

    def load_silence_registry(self, shard_ids: Sequence[str]) -> dict[str, dict[str, str]] | None:
        """The silence registry of each shard (one pipelined ``HGETALL`` each); None
        when Redis is stale or fails, so the caller tries again later (meanwhile it
        knows only the devices it reads: a silence may be late, never false)."""
        if self._stale:
            return None
        keys = [redis_silence_key(s) for s in shard_ids]

        def run() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                result: list[Any] = pipe.execute()
                return result

        try:
            hashes = self._call("load_silence_registry", run)
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "load_silence_registry")
            return None
        return {
            shard: {_text(k): _text(v) for k, v in saved.items()}
            for shard, saved in zip(shard_ids, hashes, strict=True)
        }

    def load_silence_entries(self, shard_id: str, device_ids: Sequence[str]) -> dict[str, str]:
        """The saved registry entries of ``device_ids`` (one ``HMGET``), for devices the
        worker no longer holds that read again; {} when Redis is stale or fails (the
        device is then learned again: a silence may be late, never false)."""
        if self._stale or not device_ids:
            return {}
        key = redis_silence_key(shard_id)
        try:
            values = self._call(
                "load_silence_entries", lambda: self.client.hmget(key, list(device_ids))
            )
        except (RedisError, OSError, SecretsError) as exc:
            self._mark_stale(exc, "load_silence_entries")
            return {}
        return {d: _text(v) for d, v in zip(device_ids, values, strict=True) if v is not None}

    # -- reconciliation ---------------------------------------------------------------

    def set_latest(self, readings: Iterable[AcceptedReading]) -> int:
        """Compare-and-set the latest hash of each reading's device (and its last-seen
        time, ``GT``); returns how many were replaced. Windows and the stream are not
        touched. Raises on Redis errors (used by :meth:`recover`)."""
        devices = [_device_entry([accepted], 0) for accepted in readings]
        return self._run_batch(devices, [], prune=False)[0]

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
