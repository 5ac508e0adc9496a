"""The processor's one back-off policy: exponential delays with jitter, pure.

Used by the Kinesis reader (:func:`processor.kinesis_source.backoff_delay`, also the
shard runner's commit retry) and by :func:`processor.postgres.retry.with_pg_retry`.
The random source is passed in (``random`` itself, or a seeded ``random.Random`` in a
test), so the same draws give the same delays.

Why jitter: many readers throttled together, or many workers reconnecting after a
database failover, would otherwise retry in lock-step. Why a bounded exponent: the
ceiling reaches its maximum after a few doublings anyway, and ``base * 2 ** n`` with
an unbounded ``n`` overflows a float at n = 1024 (a wait for the schema that lasts
about 45 minutes used to end in OverflowError).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Protocol

#: 2**10 times any base we use is far past any maximum delay.
MAX_DOUBLINGS: Final = 10


class UniformSource(Protocol):
    """``random`` itself or a ``random.Random``."""

    def uniform(self, a: float, b: float) -> float: ...


class Jitter(enum.Enum):
    #: Uniform in [0, ceiling] ("full jitter"): spreads reconnects the most.
    FULL = "full"
    #: Uniform in [ceiling / 4, ceiling]: spread, but never retried at once (a Kinesis
    #: retry must not land inside the same 200 ms read window).
    UPPER_THREE_QUARTERS = "upper_three_quarters"


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float
    max_s: float
    jitter: Jitter
    max_doublings: int = MAX_DOUBLINGS

    def ceiling(self, doublings: int) -> float:
        """``min(max_s, base_s * 2**doublings)``, the exponent bounded."""
        return min(self.max_s, self.base_s * (2 ** min(doublings, self.max_doublings)))

    def delay(self, doublings: int, rng: UniformSource) -> float:
        """One delay, drawn from ``rng`` (``rng.uniform``: one draw per delay)."""
        ceiling = self.ceiling(doublings)
        low = ceiling / 4 if self.jitter is Jitter.UPPER_THREE_QUARTERS else 0.0
        return rng.uniform(low, ceiling)
