"""A tiny counter-free random source for rare events (SplitMix64).

Each device needs independent streams for its noise, its anomaly scenarios and its
poison records, so that turning ``--anomaly-rate`` or ``--poison-rate`` on does not
change the clean signal a device produces. A :class:`random.Random` per stream
would cost about 2.5 KB of Mersenne-Twister state each (75 MB for 10,000 devices
with three streams); SplitMix64 holds one integer. It is slower per draw than
``Random.random()``, which is why the hot per-reading noise uses ``Random`` and
only rare events (scenario starts, dwell times, poison) roll these dice.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final, TypeVar

_MASK64: Final = (1 << 64) - 1
_INV_2_53: Final = 1.0 / (1 << 53)

T = TypeVar("T")


def stream_key(*parts: object) -> int:
    """A 64-bit seed from a tuple of parts, stable across processes and Python
    versions (``hash()`` is salted per process for strings)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Dice:
    """SplitMix64 (Steele, Lea and Flood 2014): full period 2^64, passes BigCrush."""

    __slots__ = ("_state",)

    def __init__(self, key: int) -> None:
        self._state = key & _MASK64

    def next_u64(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def random(self) -> float:
        """Uniform in [0, 1)."""
        return (self.next_u64() >> 11) * _INV_2_53

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high] (inclusive, like ``random.randint``)."""
        return low + int(self.random() * (high - low + 1))

    def choice(self, options: tuple[T, ...] | list[T]) -> T:
        return options[int(self.random() * len(options))]

    def expovariate_mean(self, mean: float) -> float:
        """Exponential with the given mean: the dwell time of a memoryless state."""
        return -mean * math.log(1.0 - self.random())

    def geometric_gap(self, probability: float) -> int:
        """Number of trials before the next success when each succeeds with
        ``probability``: drawing it once replaces one coin flip per reading."""
        if probability <= 0.0:
            return -1  # never
        if probability >= 1.0:
            return 0
        return int(math.log(1.0 - self.random()) / math.log(1.0 - probability))
