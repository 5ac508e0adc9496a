"""Which part of the fleet each Locust user sends: pure bookkeeping, no Locust.

The fleet is cut into ``slots`` slices (``fleet.slice(slot, slots)``); a running
user holds one slot. With ``workers`` Locust processes, process ``w`` only hands out
slots ``w, w + workers, w + 2 * workers, ...``, so two processes never send the
same device (which would repeat its ``(device_id, seq)`` pairs). Hence ``slots`` is
``users`` rounded up to a multiple of ``workers``: with 10 users on 4 processes
there are 12 slices and, at full load, 2 of them are idle. Choose ``users`` as a
multiple of ``--processes`` so every device sends.

A slice starts (its devices' round 0) when its slot is first taken, so a user
that joins a ramp at minute 4 sends from "now", not four minutes of backlog. A
slice outlives its user: when a shape lowers the user count and raises it again,
the next user takes the slot back and the devices continue their sequences
instead of starting again at seq 0 (which the processor would drop as
duplicates). Readings that fell due while a slot had no user are skipped (their
seqs are consumed, as if the devices had been silent), not sent in a burst.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from simulator.fleet import Fleet
from simulator.fleet_options import FleetOptions

#: How far behind real time a slice may start or resume; older readings are skipped.
DEFAULT_MAX_LAG_MS: Final = 1000
_SKIP_CHUNK: Final = 5000


def slot_count(users: int, workers: int) -> int:
    if users < 1 or workers < 1:
        raise ValueError(f"users and workers must be at least 1, got {users} and {workers}")
    return math.ceil(users / workers) * workers


class SliceAllocator:
    """Hands out the slots of one Locust process (``worker_index`` of ``workers``)."""

    def __init__(
        self,
        slice_factory: Callable[[int, int, datetime], Fleet],
        *,
        users: int,
        workers: int = 1,
        worker_index: int = 0,
    ) -> None:
        if not 0 <= worker_index < workers:
            raise ValueError(f"worker_index must be in [0, {workers}), got {worker_index}")
        self.slots = slot_count(users, workers)
        self.workers = workers
        self.worker_index = worker_index
        self._factory = slice_factory
        self._slices: dict[int, Fleet] = {}
        self._free = list(range(worker_index, self.slots, workers))
        self._held: set[int] = set()

    @property
    def capacity(self) -> int:
        """Users this process can hold at once."""
        return len(self._free) + len(self._held)

    def acquire(self) -> tuple[int, Fleet]:
        """The lowest free slot and its slice (created on first use)."""
        if not self._free:
            raise RuntimeError(
                f"no free fleet slice in process {self.worker_index}: more users than"
                f" the {self.capacity} this process was planned for"
            )
        self._free.sort()
        slot = self._free.pop(0)
        self._held.add(slot)
        fleet = self._slices.get(slot)
        if fleet is None:
            fleet = self._factory(slot, self.slots, datetime.now(UTC))
            self._slices[slot] = fleet
        return slot, fleet

    def release(self, slot: int) -> None:
        if slot in self._held:
            self._held.remove(slot)
            self._free.append(slot)


#: The campaign's fleet parameters: the fleet options every command shares
#: (their :meth:`~simulator.fleet_options.FleetOptions.slice` builds one slice).
FleetSpec = FleetOptions


def skip_backlog(
    fleet: Fleet,
    now_ms: int,
    *,
    max_lag_ms: int = DEFAULT_MAX_LAG_MS,
    pause: Callable[[], object] | None = None,
) -> int:
    """Drop the readings due before ``now_ms - max_lag_ms``; returns how many.

    Generated in chunks with ``pause()`` between them so a long skip does not
    block the other users of a gevent process.
    """
    horizon = now_ms - max_lag_ms
    skipped = 0
    while fleet.next_due_ms <= horizon or fleet.has_pending:
        chunk = fleet.tick(horizon, limit=_SKIP_CHUNK)
        if not chunk:
            break
        skipped += len(chunk)
        if pause is not None:
            pause()
    return skipped
