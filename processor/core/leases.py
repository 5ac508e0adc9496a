"""Lease arithmetic: which shards this worker should take, keep, give up or steal.

Pure: the adapter reads the shard list (ListShards), the lease rows and the live
workers from PostgreSQL, calls :func:`plan_leases` with the current time, and
applies the plan with compare-and-set updates on the fencing counter (so two
workers acting on the same snapshot cannot both win a shard).

Rules, in order:

1. **Eligible shards.** A shard is eligible when it is not finished (checkpointed
   at SHARD_END) and each of its parents is finished or no longer listed (trimmed
   by retention). Children of a split or merge therefore wait for their parents,
   which keeps every device's readings in order.
2. **Free shards first.** A lease is held while it has an owner and
   ``expires_at > now``; otherwise the shard is free (never leased, released, or
   its owner died). Every worker computes the same water-filling assignment of the
   free shards — the least loaded live worker gets the next one, up to the fair
   share ``ceil(eligible / live workers)`` — and tries to take its own part.
3. **Balance, one move at a time.** When nothing is free but the most and least
   loaded live workers differ by two or more, exactly one shard moves per round:
   with :attr:`Rebalance.GIVE_UP` (default) the most loaded worker releases one
   (it finishes its batch first, so the handoff costs no rolled-back batch); with
   :attr:`Rebalance.STEAL` the least loaded worker takes one (the owner's next
   commit fails the fencing check). Ties break on the worker id, so on a common
   snapshot only one worker acts.
4. Leases of shards that are finished or no longer eligible are released.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime


def start_position(
    configured: str, *, parents: Collection[str], fencing: int, checkpoint: str | None
) -> str:
    """Where a shard with no checkpoint starts: the configured ``TAP_INITIAL_POSITION``
    only where it cannot skip a record (issue 10 item 6).

    ``LATEST`` means "records written from now on", which is right only for a shard
    the application has never read and which continues nothing: a parentless shard
    acquired for the first time (``fencing == 1`` after this acquisition). A child
    of a split or merge holds the records written since its parent closed, possibly
    before any reader of ours existed; a shard handed over before its first
    checkpoint was being read by a previous owner whose records are not stored. Both
    start at ``TRIM_HORIZON`` (at worst, records older than the application are read;
    never is one skipped). With a checkpoint the reader resumes after it anyway.
    """
    if configured == "LATEST" and not parents and fencing <= 1 and checkpoint is None:
        return "LATEST"
    return "TRIM_HORIZON"


class Rebalance(enum.StrEnum):
    """Which side moves a shard when the load is unbalanced."""

    GIVE_UP = "give_up"
    STEAL = "steal"


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """A shard as ListShards describes it (the Kinesis edge returns these)."""

    shard_id: str
    #: ``ParentShardId`` then ``AdjacentParentShardId``, those present: a split child
    #: has one parent, a merged shard two.
    parent_shard_ids: tuple[str, ...] = ()
    #: ``AdjacentParentShardId`` (also in ``parent_shard_ids``), kept in the lease row.
    adjacent_parent_shard_id: str | None = None
    starting_sequence_number: str = ""
    ending_sequence_number: str | None = None
    #: (StartingHashKey, EndingHashKey): the partition keys' MD5 hashes this shard
    #: takes (a split child inherits the silence registry entries in its range).
    hash_key_range: tuple[int, int] | None = None

    @property
    def closed(self) -> bool:
        """A shard with an ending sequence number takes no new records (split/merge)."""
        return self.ending_sequence_number is not None


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A row of the lease table (the PostgreSQL edge returns these)."""

    shard_id: str
    owner: str | None
    expires_at: datetime | None
    fencing: int
    checkpoint: str | None = None
    #: Checkpointed at SHARD_END: the shard is closed and fully processed.
    finished: bool = False
    parent_shard_ids: tuple[str, ...] = ()
    adjacent_parent: str | None = None
    updated_at: datetime | None = None
    #: The database's ``now()`` when the row was read (None: not read from a table):
    #: expiry is judged by the database's clock, never the worker's.
    db_now: datetime | None = None

    def held_at(self, now: datetime) -> bool:
        return self.owner is not None and self.expires_at is not None and self.expires_at > now

    @property
    def held(self) -> bool:
        """Owned and not expired by the clock the row was read with."""
        if self.db_now is None:
            raise ValueError("lease row read without a clock: use held_at(now)")
        return self.held_at(self.db_now)


@dataclass(frozen=True, slots=True)
class Acquire:
    """Take a lease by compare-and-set: succeed only if the row's fencing is still
    ``expected_fencing`` (``None``: the row does not exist yet, insert it)."""

    shard_id: str
    expected_fencing: int | None
    previous_owner: str | None


@dataclass(frozen=True, slots=True)
class LeasePlan:
    """What one worker should do this round."""

    #: Leases I hold and should renew.
    keep: tuple[str, ...]
    #: Free eligible shards assigned to me, in the order to try them.
    take: tuple[Acquire, ...]
    #: At most one lease to take from a live peer (``Rebalance.STEAL``).
    steal: Acquire | None
    #: Leases to give up: finished or ineligible shards, plus at most one for balance.
    release: tuple[str, ...]
    #: The one release made for balance (also in ``release``), if any.
    give_up: str | None
    eligible: tuple[str, ...]
    #: Shards that exist but wait for a parent to finish.
    waiting: tuple[str, ...]
    fair_share: int
    live_workers: tuple[str, ...]
    #: Shards per live worker after this snapshot (before the plan is applied).
    loads: tuple[tuple[str, int], ...]

    @property
    def balance_moves(self) -> int:
        """Shards this plan moves away from a live owner (0 or 1)."""
        return int(self.steal is not None) + int(self.give_up is not None)


def eligible_shards(
    shards: Iterable[ShardInfo], leases: dict[str, LeaseRow]
) -> tuple[list[str], list[str]]:
    """(eligible, waiting) shard ids, each sorted."""
    listed = {s.shard_id for s in shards}
    finished = {sid for sid, row in leases.items() if row.finished}
    eligible, waiting = [], []
    for shard in shards:
        if shard.shard_id in finished:
            continue
        if all(p in finished or p not in listed for p in shard.parent_shard_ids):
            eligible.append(shard.shard_id)
        else:
            waiting.append(shard.shard_id)
    return sorted(eligible), sorted(waiting)


def plan_leases(
    shards: Collection[ShardInfo],
    leases: Iterable[LeaseRow],
    live_workers: Iterable[str],
    me: str,
    now: datetime,
    rebalance: Rebalance = Rebalance.GIVE_UP,
) -> LeasePlan:
    """Decide this worker's lease actions from one consistent snapshot."""
    rows = {row.shard_id: row for row in leases}
    eligible, waiting = eligible_shards(shards, rows)
    eligible_set = set(eligible)
    live = sorted(set(live_workers) | {me})

    held: dict[str, list[str]] = {w: [] for w in live}
    free: list[str] = []
    for sid in eligible:
        row = rows.get(sid)
        if row is not None and row.held_at(now):
            assert row.owner is not None
            # A holder missing from the live set still holds its lease until expiry.
            held.setdefault(row.owner, []).append(sid)
        else:
            free.append(sid)

    fair = math.ceil(len(eligible) / len(live)) if eligible else 0
    loads = {w: len(held.get(w, [])) for w in live}

    # Water-filling: the least loaded (then lowest id) live worker gets the next free
    # shard, never beyond the fair share. Same snapshot -> same assignment everywhere.
    assigned: dict[str, list[str]] = {w: [] for w in live}
    virtual = dict(loads)
    for sid in free:
        worker = min(live, key=lambda w: (virtual[w], w))
        if virtual[worker] >= fair:
            break
        assigned[worker].append(sid)
        virtual[worker] += 1

    mine = held.get(me, [])
    release = [
        row.shard_id
        for row in rows.values()
        if row.owner == me and row.held_at(now) and row.shard_id not in eligible_set
    ]
    take = tuple(_acquire(rows.get(sid), sid) for sid in assigned[me])

    steal: Acquire | None = None
    give_up: str | None = None
    if not free and len(live) > 1:
        most = min(live, key=lambda w: (-loads[w], w))  # most loaded, lowest id
        least = min(live, key=lambda w: (loads[w], w))  # least loaded, lowest id
        if loads[most] - loads[least] >= 2:
            victim_shard = max(held[most])
            if rebalance is Rebalance.GIVE_UP and me == most:
                give_up = victim_shard
                release.append(victim_shard)
            elif rebalance is Rebalance.STEAL and me == least:
                steal = _acquire(rows[victim_shard], victim_shard)

    return LeasePlan(
        keep=tuple(s for s in mine if s != give_up),
        take=take,
        steal=steal,
        release=tuple(sorted(release)),
        give_up=give_up,
        eligible=tuple(eligible),
        waiting=tuple(waiting),
        fair_share=fair,
        live_workers=tuple(live),
        loads=tuple(sorted(loads.items())),
    )


def _acquire(row: LeaseRow | None, shard_id: str) -> Acquire:
    if row is None:
        return Acquire(shard_id, None, None)
    return Acquire(shard_id, row.fencing, row.owner)
