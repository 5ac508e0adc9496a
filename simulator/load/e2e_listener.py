"""End-to-end latency in the Locust report: follow a sample of the records sent and
fire ``e2e`` request events when they reach PostgreSQL and Redis.

For every followed record (``device_id``, ``seq``, event time ``ts``) two greenlets
poll the stores the processor writes:

* ``event->postgres``: ``tap.readings`` (:data:`READINGS_TABLE`), batched by
  ``(device_id, seq, event_ts)`` (the partition key, so PostgreSQL prunes to one
  daily partition). Response time = the row's ``processed_at`` (the time the
  processor committed the batch, see processor/migrations/0001) minus the event
  time: exact, whatever the polling interval.
* ``event->redis``: the device's recent-window sorted set
  (:func:`redis_window_key`, scored by event time in µs: a member within the
  record's event millisecond), falling back to the latest hash's ``seq`` (a newer
  reading implies this one was applied: the processor writes a shard's readings in
  order). Redis stores no commit time, so the response time is
  when this listener *first observes* the reading minus the event time: it
  over-states the true latency by at most one polling interval (``redis_interval_s``,
  100 ms by default).

Both are clamped at 0 ms (producer and processor clocks may differ by a few ms on
different hosts). A record not seen within ``timeout_s`` is a failure event with
the timeout as its response time (it took at least that long), and records still
pending when the campaign stops are failures too ("campaign ended"). The shapes
end with a drain period of zero users so the last samples have time to arrive.

This module does not import Locust: it receives the ``request`` event hook and
imports gevent only when started, so its bookkeeping is unit-tested plainly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from processor.contract.storage import (
    READINGS_TABLE,
    LatestField,
    redis_latest_key,
    redis_window_key,
    split_qualified,
)
from simulator.load.summary import E2E, E2E_POSTGRES, E2E_REDIS

if TYPE_CHECKING:
    from psycopg import sql

log = logging.getLogger(__name__)

Key = tuple[str, int]

#: Keys per PostgreSQL query / Redis pipeline: bounded so one poll stays short.
MAX_KEYS_PER_POLL: Final = 2000


@cache
def _select_arrived() -> sql.Composed:
    """The arrival query, the table name quoted as an identifier (psycopg imported
    when first polled, like the connection itself)."""
    from psycopg import sql

    return sql.SQL(
        "SELECT r.device_id, r.seq, r.processed_at"
        " FROM {readings} AS r"
        " JOIN unnest(%s::text[], %s::bigint[], %s::timestamptz[])"
        " AS k(device_id, seq, event_ts)"
        " ON r.device_id = k.device_id AND r.seq = k.seq AND r.event_ts = k.event_ts"
    ).format(readings=sql.Identifier(*split_qualified(READINGS_TABLE)))


@dataclass(slots=True)
class Followed:
    ts_ms: int
    followed_at: float  # time.monotonic() when the listener took it


class PendingSet:
    """Followed records not yet seen in one store (pure bookkeeping)."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._items: dict[Key, Followed] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: Key, ts_ms: int) -> None:
        self._items.setdefault(key, Followed(ts_ms, self._clock()))

    def batch(self, limit: int = MAX_KEYS_PER_POLL) -> list[tuple[Key, int]]:
        """The oldest ``limit`` pending keys with their event times."""
        out: list[tuple[Key, int]] = []
        for key, item in self._items.items():  # insertion order = follow order
            out.append((key, item.ts_ms))
            if len(out) >= limit:
                break
        return out

    def resolve(self, key: Key) -> Followed | None:
        return self._items.pop(key, None)

    def expire(self) -> list[tuple[Key, Followed]]:
        """Remove and return the keys followed more than ``timeout_s`` ago."""
        deadline = self._clock() - self.timeout_s
        expired: list[tuple[Key, Followed]] = []
        for key, item in self._items.items():
            if item.followed_at > deadline:
                break  # insertion order: every later key is younger
            expired.append((key, item))
        for key, _ in expired:
            del self._items[key]
        return expired

    def drain(self) -> list[tuple[Key, Followed]]:
        items = list(self._items.items())
        self._items.clear()
        return items


def latency_ms(arrived_ms: float, ts_ms: int) -> float:
    return max(0.0, arrived_ms - ts_ms)


class E2EListener:
    """Polls PostgreSQL and Redis for the followed records; fires ``e2e`` events."""

    def __init__(
        self,
        request_event: Any,
        *,
        pg_dsn: str,
        redis_url: str,
        redis_ca: str | None = None,
        timeout_s: float = 30.0,
        pg_interval_s: float = 0.25,
        redis_interval_s: float = 0.1,
    ) -> None:
        self._request_event = request_event
        self._pg_dsn = pg_dsn
        self._redis_url = redis_url
        self._redis_ca = redis_ca
        self.timeout_s = timeout_s
        self.pg_interval_s = pg_interval_s
        self.redis_interval_s = redis_interval_s
        self.postgres = PendingSet(timeout_s)
        self.redis = PendingSet(timeout_s)
        self.followed = 0
        self._greenlets: list[Any] = []
        self._pg: Any = None
        self._redis: Any = None
        self._running = False

    # --- what the users call -------------------------------------------------------

    def follow(self, device_id: str, seq: int, ts_ms: int) -> None:
        key = (device_id, seq)
        self.postgres.add(key, ts_ms)
        self.redis.add(key, ts_ms)
        self.followed += 1

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        import gevent

        self._running = True
        self._greenlets = [
            gevent.spawn(self._loop, self.poll_postgres, self.pg_interval_s, "PostgreSQL"),
            gevent.spawn(self._loop, self.poll_redis, self.redis_interval_s, "Redis"),
        ]

    def stop(self) -> None:
        """Stop polling; one last look, then every record still pending is a failure."""
        if not self._running:
            return
        self._running = False
        import gevent

        gevent.killall(self._greenlets, block=True, timeout=5)
        for poll in (self.poll_postgres, self.poll_redis):
            try:
                poll()
            except Exception as exc:
                log.warning("e2e listener: final poll failed: %s", exc)
        for name, pending in ((E2E_POSTGRES, self.postgres), (E2E_REDIS, self.redis)):
            now = time.monotonic()
            for _, item in pending.drain():
                waited_ms = (now - item.followed_at) * 1000.0
                self._fire(name, waited_ms, "campaign ended before the record was seen")
        for closer in (self._pg, self._redis):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:  # closing is best effort at the end of a run
                    log.debug("e2e listener: close failed: %s", exc)

    def _loop(self, poll: Callable[[], None], interval_s: float, store: str) -> None:
        import gevent

        failures = 0
        while self._running:
            started = time.monotonic()
            try:
                poll()
                failures = 0
            except Exception as exc:
                # The store may be restarting; the pending records time out honestly.
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning(
                        "e2e listener: polling %s failed (%d times): %s", store, failures, exc
                    )
                self._reset(store)
            gevent.sleep(max(0.0, interval_s - (time.monotonic() - started)))

    def _reset(self, store: str) -> None:
        target = self._pg if store == "PostgreSQL" else self._redis
        if target is not None:
            try:
                target.close()
            except Exception as exc:
                log.debug("e2e listener: close failed: %s", exc)
        if store == "PostgreSQL":
            self._pg = None
        else:
            self._redis = None

    # --- polling -------------------------------------------------------------------

    def _pg_connection(self) -> Any:
        if self._pg is None:
            import psycopg

            # Autocommit: each poll sees the latest commits (no long snapshot), and a
            # missing table (processor not migrated yet) does not poison a transaction.
            self._pg = psycopg.connect(self._pg_dsn, autocommit=True, connect_timeout=5)
        return self._pg

    def _redis_client(self) -> Any:
        if self._redis is None:
            import redis

            kwargs: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
            if self._redis_url.startswith("rediss://") and self._redis_ca:
                kwargs["ssl_ca_certs"] = self._redis_ca
            self._redis = redis.Redis.from_url(self._redis_url, **kwargs)
        return self._redis

    def poll_postgres(self) -> None:
        self._expire(E2E_POSTGRES, self.postgres, "PostgreSQL")
        batch = self.postgres.batch()
        if not batch:
            return
        import psycopg

        devices = [key[0] for key, _ in batch]
        seqs = [key[1] for key, _ in batch]
        times = [datetime.fromtimestamp(ts_ms / 1000.0, UTC) for _, ts_ms in batch]
        try:
            query = _select_arrived()
            rows = self._pg_connection().execute(query, (devices, seqs, times)).fetchall()
        except psycopg.errors.UndefinedTable:
            return  # the processor has not migrated the schema yet
        for device_id, seq, processed_at in rows:
            item = self.postgres.resolve((device_id, int(seq)))
            if item is not None:
                arrived_ms = processed_at.timestamp() * 1000.0
                self._fire(E2E_POSTGRES, latency_ms(arrived_ms, item.ts_ms))

    def poll_redis(self) -> None:
        self._expire(E2E_REDIS, self.redis, "Redis")
        batch = self.redis.batch()
        if not batch:
            return
        client = self._redis_client()
        pipe = client.pipeline(transaction=False)
        for (device_id, _seq), ts_ms in batch:
            event_us = int(ts_ms) * 1000
            pipe.zcount(redis_window_key(device_id), event_us, event_us + 999)
            pipe.hget(redis_latest_key(device_id), LatestField.SEQ)
        answers = pipe.execute()
        observed_ms = time.time() * 1000.0
        for index, (key, _) in enumerate(batch):
            in_window, latest = answers[2 * index], answers[2 * index + 1]
            if in_window or (latest is not None and int(latest) >= key[1]):
                item = self.redis.resolve(key)
                if item is not None:
                    self._fire(E2E_REDIS, latency_ms(observed_ms, item.ts_ms))

    def _expire(self, name: str, pending: PendingSet, store: str) -> None:
        for _ in pending.expire():
            self._fire(
                name,
                self.timeout_s * 1000.0,
                f"not seen in {store} within {self.timeout_s:g} s",
            )

    def _fire(self, name: str, response_time_ms: float, error: str | None = None) -> None:
        self._request_event.fire(
            request_type=E2E,
            name=name,
            response_time=response_time_ms,
            response_length=0,
            exception=error,
            context={},
        )
