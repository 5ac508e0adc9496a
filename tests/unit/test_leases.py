"""Lease planning: simulated workers on a fake lease table and a fake clock."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from processor.core.leases import (
    Acquire,
    LeasePlan,
    LeaseRow,
    Rebalance,
    ShardInfo,
    eligible_shards,
    plan_leases,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=10)
FOUR = [ShardInfo(f"shard-{i}") for i in range(4)]
S4 = [ShardInfo(f"s{i}") for i in range(4)]


class FakeTable:
    """The lease table with the compare-and-set semantics the PostgreSQL store has."""

    def __init__(self) -> None:
        self.rows: dict[str, LeaseRow] = {}

    def acquire(self, acq: Acquire, me: str, now: datetime) -> bool:
        row = self.rows.get(acq.shard_id)
        if acq.expected_fencing is None:
            if row is not None:
                return False
            self.rows[acq.shard_id] = LeaseRow(acq.shard_id, me, now + LEASE, 1)
            return True
        if row is None or row.fencing != acq.expected_fencing:
            return False
        self.rows[acq.shard_id] = dataclasses.replace(
            row, owner=me, expires_at=now + LEASE, fencing=row.fencing + 1
        )
        return True

    def renew(self, shard_id: str, me: str, now: datetime) -> None:
        row = self.rows[shard_id]
        if row.owner == me and row.held_at(now):
            self.rows[shard_id] = dataclasses.replace(row, expires_at=now + LEASE)

    def release(self, shard_id: str, me: str) -> None:
        row = self.rows[shard_id]
        if row.owner == me:
            self.rows[shard_id] = dataclasses.replace(row, owner=None, expires_at=None)

    def finish(self, shard_id: str) -> None:
        self.rows[shard_id] = dataclasses.replace(self.rows[shard_id], finished=True)

    def owners(self, now: datetime) -> dict[str, str]:
        return {s: r.owner for s, r in self.rows.items() if r.owner and r.held_at(now)}

    def loads(self, now: datetime) -> Counter[str]:
        return Counter(self.owners(now).values())


class Cluster:
    """Workers running one planning round each per simulated second."""

    def __init__(self, shards: list[ShardInfo], mode: Rebalance = Rebalance.GIVE_UP) -> None:
        self.shards = shards
        self.table = FakeTable()
        self.now = T0
        self.mode = mode
        self.heartbeats: dict[str, datetime] = {}
        self.running: list[str] = []
        self.moves_per_round: list[int] = []

    def start(self, worker: str) -> None:
        self.running.append(worker)

    def kill(self, worker: str) -> None:
        self.running.remove(worker)

    def live(self) -> set[str]:
        return {w for w, beat in self.heartbeats.items() if beat + LEASE > self.now}

    def round(self) -> list[LeasePlan]:
        self.now += timedelta(seconds=1)
        before = self.table.owners(self.now)
        plans = []
        for worker in self.running:
            self.heartbeats[worker] = self.now
            plan = plan_leases(
                self.shards, self.table.rows.values(), self.live(), worker, self.now, self.mode
            )
            plans.append(plan)
            for sid in plan.keep:
                self.table.renew(sid, worker, self.now)
            for sid in plan.release:
                self.table.release(sid, worker)
            for acq in plan.take:
                self.table.acquire(acq, worker, self.now)
            if plan.steal is not None:
                self.table.acquire(plan.steal, worker, self.now)
        after = self.table.owners(self.now)
        # a move: a shard that a live owner held at the start of the round and lost
        live = self.live()
        self.moves_per_round.append(
            sum(1 for s, o in before.items() if o in live and after.get(s) != o)
        )
        return plans

    def run(self, rounds: int) -> None:
        for _ in range(rounds):
            self.round()

    def load_counts(self) -> list[int]:
        loads = self.table.loads(self.now)
        return sorted((loads.get(w, 0) for w in self.running), reverse=True)


@pytest.mark.parametrize("mode", list(Rebalance))
@pytest.mark.parametrize(("workers", "expected"), [(2, [2, 2]), (3, [2, 1, 1])])
def test_workers_starting_together_balance_at_once(
    workers: int, expected: list[int], mode: Rebalance
) -> None:
    cluster = Cluster(FOUR, mode)
    for i in range(workers):
        cluster.start(f"w{i}")
    cluster.run(2)  # round 1: the others' heartbeats are not visible to w0 yet
    cluster.run(3)
    assert cluster.load_counts() == expected
    assert sum(cluster.load_counts()) == 4
    cluster.moves_per_round.clear()
    cluster.run(30)  # stable: no churn once balanced
    assert cluster.moves_per_round == [0] * 30
    assert cluster.load_counts() == expected


@pytest.mark.parametrize("mode", list(Rebalance))
def test_late_joiners_converge_one_move_per_round(mode: Rebalance) -> None:
    cluster = Cluster(FOUR, mode)
    cluster.start("a")
    cluster.run(3)
    assert cluster.load_counts() == [4]
    cluster.start("b")
    cluster.run(10)
    assert cluster.load_counts() == [2, 2]
    cluster.start("c")
    cluster.run(10)
    assert cluster.load_counts() == [2, 1, 1]
    assert max(cluster.moves_per_round) == 1
    assert sum(cluster.moves_per_round) == 3  # a->b twice, then one to c
    assert cluster.table.owners(cluster.now).keys() == {s.shard_id for s in FOUR}


def test_expired_leases_are_taken_after_expiry_only() -> None:
    cluster = Cluster(FOUR)
    cluster.start("a")
    cluster.start("b")
    cluster.run(5)
    assert cluster.load_counts() == [2, 2]
    cluster.kill("b")  # kill -9: no release, no renewal
    died = cluster.now
    while cluster.now < died + LEASE - timedelta(seconds=1):
        cluster.round()
        assert cluster.table.loads(cluster.now)["a"] == 2, cluster.now - died
    cluster.run(2)
    assert cluster.load_counts() == [4]
    assert cluster.now - died <= LEASE + timedelta(seconds=1)


def test_released_leases_are_taken_in_the_next_round() -> None:
    cluster = Cluster(FOUR)
    cluster.start("a")
    cluster.start("b")
    cluster.run(5)
    for sid, owner in cluster.table.owners(cluster.now).items():
        if owner == "b":
            cluster.table.release(sid, "b")  # SIGTERM handoff
    cluster.kill("b")
    cluster.heartbeats.pop("b")
    cluster.round()
    assert cluster.load_counts() == [4]


def test_split_children_wait_for_the_parent_to_finish() -> None:
    shards = [
        ShardInfo("parent"),
        ShardInfo("child-1", ("parent",)),
        ShardInfo("child-2", ("parent",)),
        ShardInfo("other"),
    ]
    cluster = Cluster(shards)
    cluster.start("a")
    cluster.start("b")
    plans = cluster.round()
    assert plans[0].eligible == ("other", "parent")
    assert plans[0].waiting == ("child-1", "child-2")
    cluster.run(5)
    assert set(cluster.table.owners(cluster.now)) == {"parent", "other"}
    owner = cluster.table.owners(cluster.now)["parent"]
    cluster.table.finish("parent")  # checkpointed at SHARD_END
    plans = cluster.round()
    plan = next(p for p in plans if "parent" in p.release)
    assert plan.fair_share == 2
    cluster.run(3)
    owners = cluster.table.owners(cluster.now)
    assert set(owners) == {"child-1", "child-2", "other"}
    assert owner in owners.values()
    assert sorted(cluster.table.loads(cluster.now).values()) == [1, 2]


def test_eligibility_of_merges_and_trimmed_parents() -> None:
    rows = {"p1": LeaseRow("p1", None, None, 3, "seq", finished=True)}
    shards = [ShardInfo("p1"), ShardInfo("p2"), ShardInfo("merged", ("p1", "p2"))]
    assert eligible_shards(shards, rows) == (["p2"], ["merged"])
    # p2 trimmed by retention (no longer listed): the merged child may start
    assert eligible_shards([ShardInfo("p1"), ShardInfo("merged", ("p1", "p2"))], rows) == (
        ["merged"],
        [],
    )


def row(shard: str, owner: str | None, seconds_left: float = 5, fencing: int = 1) -> LeaseRow:
    return LeaseRow(shard, owner, T0 + timedelta(seconds=seconds_left), fencing)


def test_unbalanced_snapshot_gives_exactly_one_move() -> None:
    rows = [row("s0", "a"), row("s1", "a"), row("s2", "a", fencing=7), row("s3", "b")]
    live = {"a", "b", "c"}
    give = {w: plan_leases(S4, rows, live, w, T0) for w in sorted(live)}
    assert [w for w, p in give.items() if p.balance_moves] == ["a"]
    assert give["a"].give_up == "s2" and "s2" in give["a"].release
    assert "s2" not in give["a"].keep
    assert give["a"].fair_share == 2
    steal = {w: plan_leases(S4, rows, live, w, T0, Rebalance.STEAL) for w in sorted(live)}
    assert [w for w, p in steal.items() if p.balance_moves] == ["c"]
    assert steal["c"].steal == Acquire("s2", 7, "a")
    assert steal["a"].keep == ("s0", "s1", "s2")


def test_free_shards_go_to_the_least_loaded_first() -> None:
    # a holds 2, b holds 0, two shards free: both go to b, none to a.
    rows = [row("s0", "a"), row("s1", "a"), row("s2", "x", seconds_left=-1)]
    plan_a = plan_leases(S4, rows, {"a", "b"}, "a", T0)
    plan_b = plan_leases(S4, rows, {"a", "b"}, "b", T0)
    assert plan_a.take == ()
    assert plan_b.take == (Acquire("s2", 1, "x"), Acquire("s3", None, None))
    assert plan_a.balance_moves == plan_b.balance_moves == 0


def test_a_holder_outside_the_live_set_keeps_its_lease_until_expiry() -> None:
    rows = [row("s0", "ghost", seconds_left=3)]
    plan = plan_leases(S4, rows, set(), "me", T0)
    assert [a.shard_id for a in plan.take] == ["s1", "s2", "s3"]
    later = plan_leases(S4, rows, set(), "me", T0 + timedelta(seconds=4))
    assert [a.shard_id for a in later.take] == ["s0", "s1", "s2", "s3"]


def test_my_expired_lease_is_retaken_not_kept() -> None:
    rows = [row("s0", "me", seconds_left=-1, fencing=4)]
    plan = plan_leases(S4[:1], rows, {"me"}, "me", T0)
    assert plan.keep == ()
    assert plan.take == (Acquire("s0", 4, "me"),)


def test_no_shards_no_plan() -> None:
    plan = plan_leases([], [], {"a"}, "a", T0)
    assert (plan.take, plan.keep, plan.release, plan.fair_share) == ((), (), (), 0)


# -- issue 10 item 6: where a shard without a checkpoint starts -------------------------


def test_latest_only_for_a_parentless_shard_never_read() -> None:
    from processor.core.leases import start_position

    assert start_position("LATEST", parents=(), fencing=1, checkpoint=None) == "LATEST"
    # A child of a split or merge: its records may predate any reader of ours.
    assert start_position("LATEST", parents=("p",), fencing=1, checkpoint=None) == "TRIM_HORIZON"
    assert (
        start_position("LATEST", parents=("p", "q"), fencing=1, checkpoint=None) == "TRIM_HORIZON"
    )
    # Handed over (or re-acquired after a crash) before its first checkpoint.
    assert start_position("LATEST", parents=(), fencing=2, checkpoint=None) == "TRIM_HORIZON"
    # TRIM_HORIZON stays TRIM_HORIZON; with a checkpoint the reader resumes after it.
    assert start_position("TRIM_HORIZON", parents=(), fencing=1, checkpoint=None) == (
        "TRIM_HORIZON"
    )
    assert start_position("LATEST", parents=(), fencing=1, checkpoint="49") == "TRIM_HORIZON"


# --- one LeaseRow and one ShardInfo for the edges and the planner (issue 12 item 4) ---


def test_a_row_read_from_the_table_is_held_by_the_database_clock() -> None:
    """The PostgreSQL edge returns the core's LeaseRow with the database's now():
    ``held`` judges expiry by that clock, never the worker's."""
    expires = T0 + timedelta(seconds=5)
    read = LeaseRow("s0", "w1", expires, 3, db_now=T0)
    assert read.held and read.held_at(T0)
    assert not dataclasses.replace(read, db_now=expires).held  # expiry is exclusive
    assert not dataclasses.replace(read, owner=None).held
    with pytest.raises(ValueError, match="without a clock"):
        _ = LeaseRow("s0", "w1", expires, 3).held


def test_the_planner_takes_the_rows_and_shards_the_edges_return() -> None:
    """Rows with the table's extra columns and shards with ListShards' fields go to
    the planner as they are: a merged child waits for both parents."""
    shards = [
        ShardInfo("p1", ending_sequence_number="9"),
        ShardInfo("p2", ending_sequence_number="9"),
        ShardInfo("m", ("p1", "p2"), adjacent_parent_shard_id="p2", hash_key_range=(0, 9)),
    ]
    assert shards[0].closed and not shards[2].closed
    rows = [
        LeaseRow("p1", None, None, 2, "9", finished=True, updated_at=T0, db_now=T0),
        LeaseRow("p2", "w2", T0 + LEASE, 1, parent_shard_ids=(), updated_at=T0, db_now=T0),
        LeaseRow("m", None, None, 0, parent_shard_ids=("p1", "p2"), adjacent_parent="p2"),
    ]
    plan = plan_leases(shards, rows, ["w1", "w2"], "w1", T0)
    assert plan.eligible == ("p2",) and plan.waiting == ("m",)
