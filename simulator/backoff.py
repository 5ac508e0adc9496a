"""The one back-off policy of the simulator and the harness: how often and how long
to wait before re-sending what Kinesis refused.

Full jitter ("Exponential Backoff and Jitter", AWS Architecture Blog): the wait
after attempt ``n`` is uniform in ``[0, min(cap, base * 2**n)]``, so producers that
were throttled together spread out instead of hitting the shard again in
lock-step. The loop itself is tenacity's (a maintained library), not ours.

The processor keeps its own pure policy (``processor/core/backoff.py``): the
simulator may not import processor internals (the import rules in pyproject.toml),
and the processor image does not install tenacity.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tenacity


def _last_result(state: tenacity.RetryCallState) -> Any:
    assert state.outcome is not None  # tenacity calls this after an attempt
    return state.outcome.result()


@dataclass(frozen=True, slots=True)
class Backoff:
    """``max_attempts`` counts the first try: with 5 a thing is tried at most five
    times. ``base_s`` and ``cap_s`` bound the jittered wait (seconds)."""

    max_attempts: int = 5
    base_s: float = 0.05
    cap_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got {self.base_s} and {self.cap_s}")

    def ceiling_s(self, attempt: int) -> float:
        """The longest wait after attempt ``attempt`` (1-based)."""
        return min(self.cap_s, self.base_s * 2**attempt)

    def retrying(
        self,
        *,
        again: Callable[[Any], bool],
        sleep: Callable[[float], None] = time.sleep,
        before_sleep: Callable[[Any], None] | None = None,
    ) -> tenacity.Retrying:
        """A tenacity loop that calls again while ``again(result)`` is true and
        attempts remain; it returns the last result when they run out (the caller
        decides what an exhausted result means) and lets exceptions through
        untouched (an error no retry can fix is the caller's to raise).

        ``before_sleep`` sees the previous result (``state.outcome.result()``)."""
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            # tenacity's exponent is attempt - 1: a multiplier of 2 * base gives
            # base * 2**attempt, the ceiling above.
            wait=tenacity.wait_random_exponential(multiplier=2 * self.base_s, max=self.cap_s),
            retry=tenacity.retry_if_result(again),
            retry_error_callback=_last_result,
            sleep=sleep,
            before_sleep=before_sleep,
        )
