"""When a device's recent window in Redis can answer a raw-readings query: pure.

The processor keeps each device's newest readings in a sorted set scored by event
time (:func:`processor.contract.storage.redis_window_key`). It is a cache, not the
record: a worker whose Redis calls fail skips Redis and the window of that time is
never rebuilt, a Redis restart loses it, a key expires after a day of silence. So the
API answers from it only when the members **prove** the answer is what PostgreSQL
would give (``GET /devices/{id}/readings`` otherwise reads PostgreSQL):

* every member parses (a member written before the window carried ``boot`` does not);
* the newest member is the latest reading the cache holds for the device (the
  caller checks that one is fresh, by the same rule as ``/latest``), so nothing
  newer is missing;
* a member lies *before* the range's start, so nothing at the start is missing;
* from that member to the newest, ``seq`` goes up by exactly one within one
  ``boot``: no reading is missing in between. A device that skips a ``seq`` (a
  reading lost before the stream, a dead letter) or restarts in the window makes the
  window prove nothing, and PostgreSQL answers: slower, never wrong.

Page size: as PostgreSQL's, in the same order ``(event_ts, boot, seq)``; a full
page carries the same ``next_cursor`` PostgreSQL's would, and the next page is read
from PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from processor.contract.storage import WindowMemberField


@dataclass(frozen=True, slots=True)
class WindowReading:
    ts: datetime
    boot: int
    seq: int
    value: float | None
    status: str | None


def parse_members(members: Sequence[bytes | str]) -> list[WindowReading] | None:
    """The window's readings in ``(ts, boot, seq)`` order; None when one does not
    parse (an older member format, or not a window member at all)."""
    f = WindowMemberField
    readings = []
    for member in members:
        try:
            doc = json.loads(member)
            value = doc[f.VALUE]
            readings.append(
                WindowReading(
                    ts=datetime.fromisoformat(doc[f.TS]),
                    boot=int(doc[f.BOOT]),
                    seq=int(doc[f.SEQ]),
                    value=None if value is None else float(value),
                    status=doc[f.STATUS],
                )
            )
        except (ValueError, KeyError, TypeError):
            return None
    return sorted(readings, key=lambda r: (r.ts, r.boot, r.seq))


def readings_in_range(
    window: list[WindowReading],
    latest: tuple[datetime, int],
    start: datetime,
    end: datetime,
) -> list[WindowReading] | None:
    """The readings with ``start <= ts < end``, or None when the window cannot prove
    that they are all of them (module docstring). ``latest``: ``(ts, seq)`` of the
    device's latest reading in the cache."""
    if not window or (window[-1].ts, window[-1].seq) != latest:
        return None
    first = next((i for i, r in enumerate(window) if r.ts >= start), len(window))
    if first == 0:
        return None  # nothing before the start: older readings may be missing
    proof = window[first - 1 :]
    for older, newer in itertools.pairwise(proof):
        if newer.boot != older.boot or newer.seq != older.seq + 1:
            return None
    return [r for r in window[first:] if r.ts < end]
