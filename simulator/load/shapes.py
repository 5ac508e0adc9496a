"""Load shapes as pure arithmetic: elapsed seconds -> (users, spawn rate) or None.

Locust's :class:`~locust.LoadTestShape` calls ``tick()`` about once a second; the
adapter in :mod:`simulator.load.campaign` forwards to these plans, which hold no
Locust import so they are unit-tested with plain numbers.

Every shape is parameterized by ``users`` (the peak) and ``duration`` (seconds of
traffic), then holds zero users for ``drain`` seconds so the end-to-end listener
can see the last samples arrive before Locust stops (see e2e_listener).

* **ramp**: linear from 1 user to ``users`` over the first 80 % of the duration,
  then ``users`` for the last 20 % (so the top rate is held long enough to read).
* **step**: ``steps`` equal plateaus of ``users * k / steps`` users (k = 1..steps);
  the highest plateau whose throughput follows the offered load is the sustained
  rate.
* **spike**: 20 % of ``users`` for the first 40 %, all of them for the next 20 %,
  20 % again for the last 40 % (a burst and the recovery after it).
* **soak**: ``users`` for the whole duration, started over the first 10 % (at most
  30 s) of it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final

#: Spawn rate (users/s) when a shape jumps: fast enough that a tick's target is
#: reached within a second for campaigns of up to 100 users (Locust warns above
#: 100/s), and the next tick restates the target anyway.
_JUMP: Final = 100.0


class ShapeName(enum.StrEnum):
    RAMP = "ramp"
    STEP = "step"
    SPIKE = "spike"
    SOAK = "soak"


Tick = tuple[int, float] | None


@dataclass(frozen=True, slots=True)
class ShapePlan:
    """One campaign's shape: ``tick(elapsed_s)`` as Locust's ``LoadTestShape.tick``."""

    name: ShapeName
    users: int
    duration_s: float
    drain_s: float = 10.0
    steps: int = 5

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError(f"users must be at least 1, got {self.users}")
        if self.duration_s <= 0:
            raise ValueError(f"duration must be positive, got {self.duration_s}")
        if self.drain_s < 0:
            raise ValueError(f"drain must not be negative, got {self.drain_s}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")

    @property
    def total_s(self) -> float:
        """Seconds from start until ``tick`` returns None."""
        return self.duration_s + self.drain_s

    def tick(self, elapsed_s: float) -> Tick:
        if elapsed_s >= self.total_s:
            return None
        if elapsed_s >= self.duration_s:
            return 0, _JUMP  # drain: no traffic, the listener keeps polling
        return self.users_at(elapsed_s), _JUMP

    def users_at(self, elapsed_s: float) -> int:
        """Users wanted at ``elapsed_s`` (0 <= elapsed_s < duration)."""
        fraction = min(max(elapsed_s / self.duration_s, 0.0), 1.0)
        users = self.users
        if self.name is ShapeName.RAMP:
            if fraction >= 0.8:
                return users
            # 1 user at t=0 so the campaign sends from its first second.
            return max(1, math.ceil(users * fraction / 0.8))
        if self.name is ShapeName.STEP:
            step = min(int(fraction * self.steps), self.steps - 1)
            return max(1, math.ceil(users * (step + 1) / self.steps))
        if self.name is ShapeName.SPIKE:
            base = max(1, math.ceil(users * 0.2))
            return users if 0.4 <= fraction < 0.6 else base
        # SOAK: started over the first 10 % of the duration (at most 30 s).
        warmup_s = min(30.0, 0.1 * self.duration_s)
        if elapsed_s >= warmup_s:
            return users
        return max(1, math.ceil(users * elapsed_s / warmup_s))

    def step_bounds(self) -> list[tuple[float, float, int]]:
        """(start_s, end_s, users) of each plateau of a step shape (for reports)."""
        if self.name is not ShapeName.STEP:
            return []
        width = self.duration_s / self.steps
        return [
            (k * width, (k + 1) * width, max(1, math.ceil(self.users * (k + 1) / self.steps)))
            for k in range(self.steps)
        ]


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h``, ``1m30s`` -> seconds."""
    raw = text.strip().lower()
    if not raw:
        raise ValueError("empty duration")
    try:
        return float(raw)
    except ValueError:
        pass
    total = 0.0
    number = ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    for char in raw:
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total += float(number) * units[char]
            number = ""
        else:
            raise ValueError(f"invalid duration {text!r} (use e.g. 90, 90s, 5m, 1m30s)")
    if number:
        raise ValueError(f"invalid duration {text!r}: a number without a unit at the end")
    return total
