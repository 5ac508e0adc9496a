"""Calling the store while PostgreSQL is down: retry with the processor's one back-off
policy (:mod:`processor.core.backoff`, full jitter) until the call succeeds, a stop
is requested or the attempts run out.

Separate because its callers are outside the edge (the worker's start-up, the
migrate command) and it knows only one thing of the edge: that
:class:`~processor.postgres.errors.StoreUnavailable` is transient and everything
else is not.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from processor.core.backoff import Backoff, Jitter
from processor.postgres.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class RetryPolicy:
    """Exponential back-off with full jitter for :func:`with_pg_retry`
    (:mod:`processor.core.backoff`, the processor's one policy)."""

    initial_delay_s: float = 0.2
    max_delay_s: float = 5.0
    #: None: retry until ``stop`` is set.
    max_attempts: int | None = None
    sleep: Callable[[float], None] = field(default=time.sleep)

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.initial_delay_s, self.max_delay_s, Jitter.FULL)


def with_pg_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy | None = None,
    stop: threading.Event | None = None,
    on_retry: Callable[[int, StoreUnavailable, float], None] | None = None,
) -> T:
    """Call ``fn`` until it does not raise :class:`StoreUnavailable`.

    Other errors (``LeaseLost``, bugs) propagate at once. When ``stop`` is set
    (SIGTERM) or ``max_attempts`` is reached, the last ``StoreUnavailable`` is
    raised. ``on_retry(attempt, error, delay)`` is for logs and metrics.
    """
    policy = policy or RetryPolicy()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except StoreUnavailable as exc:
            if (policy.max_attempts is not None and attempt >= policy.max_attempts) or (
                stop is not None and stop.is_set()
            ):
                raise
            # Full jitter spreads reconnects of many workers after a failover.
            delay = policy.backoff.delay(attempt - 1, random)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            else:
                log.warning(
                    "PostgreSQL unavailable (attempt %d), retrying in %.2fs: %s",
                    attempt,
                    delay,
                    exc,
                )
            if stop is not None:
                if stop.wait(delay):
                    raise
            else:
                policy.sleep(delay)
