"""Fleet slices per Locust user: disjoint across processes, kept across restarts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simulator.fleet import Fleet
from simulator.load.slices import FleetSpec, SliceAllocator, skip_backlog, slot_count

SPEC = FleetSpec(devices=40, seed=3, rate=2.0, anomaly_rate=0.01, poison_rate=0.01)
factory = SPEC.slice


def test_spec_slice_is_the_fleets_own_slice() -> None:
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    whole = Fleet(40, 3, rate=2.0, anomaly_rate=0.01, poison_rate=0.01, start=start)
    for slot in (0, 3, 6):
        ours, theirs = SPEC.slice(slot, 7, start), whole.slice(slot, 7)
        assert ours.device_ids == theirs.device_ids
        assert [r.data for r in ours.generate(300)] == [r.data for r in theirs.generate(300)]


def test_slot_count_rounds_up_to_whole_processes() -> None:
    assert slot_count(10, 1) == 10
    assert slot_count(10, 4) == 12
    assert slot_count(8, 4) == 8


def test_processes_hand_out_disjoint_devices() -> None:
    devices: list[set[str]] = []
    for worker in range(3):
        allocator = SliceAllocator(factory, users=6, workers=3, worker_index=worker)
        assert allocator.capacity == 2
        for _ in range(allocator.capacity):
            _, fleet = allocator.acquire()
            devices.append(set(fleet.device_ids))
    everything = set().union(*devices)
    assert len(everything) == 40
    assert sum(len(d) for d in devices) == 40  # no device in two slices


def test_a_released_slot_comes_back_with_its_sequences() -> None:
    allocator = SliceAllocator(factory, users=2)
    slot, fleet = allocator.acquire()
    first = fleet.generate(5)
    allocator.release(slot)
    again, same = allocator.acquire()
    assert again == slot and same is fleet
    assert same.generate(1)[0].seq >= first[-1].seq  # continues, never restarts at 0
    allocator.acquire()
    with pytest.raises(RuntimeError, match="no free fleet slice"):
        allocator.acquire()


def test_skip_backlog_drops_only_old_readings() -> None:
    fleet = Fleet(devices=10, seed=1, rate=10.0)
    now = fleet.start_ms + 5000  # 5 s of readings are due
    pauses: list[int] = []
    skipped = skip_backlog(fleet, now, max_lag_ms=1000, pause=lambda: pauses.append(1))
    assert 350 <= skipped <= 410  # about 4 s x 10 devices x 10/s
    assert fleet.next_due_ms > now - 1000
    assert len(fleet.tick(now)) <= 110  # only the last second is still to send
