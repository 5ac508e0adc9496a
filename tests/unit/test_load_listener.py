"""The end-to-end listener's bookkeeping: pending, resolved, expired (fake clock)."""

from __future__ import annotations

from typing import Any

from simulator.load.e2e_listener import E2EListener, PendingSet, latency_ms


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pending_set_resolves_and_expires_in_follow_order() -> None:
    clock = Clock()
    pending = PendingSet(timeout_s=5, clock=clock)
    pending.add(("d1", 1), 1000)
    clock.now += 3
    pending.add(("d2", 7), 2000)
    pending.add(("d1", 1), 9999)  # following twice keeps the first
    assert pending.batch() == [(("d1", 1), 1000), (("d2", 7), 2000)]
    assert pending.batch(limit=1) == [(("d1", 1), 1000)]
    clock.now += 2.5  # d1 followed 5.5 s ago, d2 2.5 s ago
    assert [key for key, _ in pending.expire()] == [("d1", 1)]
    assert pending.resolve(("d2", 7)) is not None
    assert pending.resolve(("d2", 7)) is None
    assert len(pending) == 0


def test_latency_is_never_negative() -> None:
    assert latency_ms(1500.0, 1000) == 500.0
    assert latency_ms(990.0, 1000) == 0.0  # clocks a few ms apart


class Events:
    def __init__(self) -> None:
        self.fired: list[dict[str, Any]] = []

    def fire(self, **kwargs: Any) -> None:
        self.fired.append(kwargs)


def test_timeouts_are_failures_with_the_time_waited() -> None:
    events = Events()
    listener = E2EListener(events, pg_dsn="postgresql://x", redis_url="redis://x", timeout_s=0)
    listener.follow("d1", 4, 1000)
    listener.poll_postgres()  # expires before touching PostgreSQL: nothing left to query
    (event,) = events.fired
    assert event["request_type"] == "e2e"
    assert event["name"] == "event->postgres"
    assert event["exception"] == "not seen in PostgreSQL within 0 s"
    assert len(listener.redis) == 1  # Redis is tracked on its own
