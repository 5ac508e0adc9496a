"""Issue 10 item 9: the detector bank forgets idle devices (their state is in Redis),
so memory stays bounded under device churn. A fake clock: every
time is passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processor.contract.record import Reading, SensorType
from processor.core.detection import DetectorBank, DetectorConfig, load_states

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SHARD = "shardId-000000000000"


def reading(device: str, seq: int, seconds: float, value: float = 70.0) -> Reading:
    return Reading(
        device_id=device,
        facility="fac01",
        line="l01",
        sensor_type=SensorType.TEMPERATURE,
        unit="C",
        ts=T0 + timedelta(seconds=seconds),
        seq=seq,
        schema_version=1,
        value=value,
    )


def observe(bank: DetectorBank, device: str, seq: int, seconds: float) -> None:
    bank.observe(
        reading(device, seq, seconds), arrival=T0 + timedelta(seconds=seconds), shard_id=SHARD
    )


def test_only_saved_devices_idle_long_enough_are_evicted() -> None:
    bank = DetectorBank(config=DetectorConfig())
    observe(bank, "d1", 1, 0)
    observe(bank, "d2", 1, 100)
    observe(bank, "d3", 1, 200)
    # d1 is 200 s behind the newest reading but its state is not saved yet: it stays.
    assert bank.evict_idle(idle_after_s=120) == []
    saved = bank.dirty_states()
    bank.clear_dirty()  # what a successful save to Redis does
    assert bank.evict_idle(idle_after_s=120) == ["d1"]
    assert bank.devices() == ["d2", "d3"]
    assert bank.forget_shard(SHARD) == ["d2", "d3"], "the shard map forgot d1 as well"
    # An evicted device that comes back gets its saved state (the Redis MGET).
    assert bank.missing(["d1"]) == ["d1"]
    load_states(bank, {"d1": saved["d1"]})
    state = bank.state_of("d1")
    assert state is not None and state.count == 1 and state.last_seq == 1


def test_a_lagging_consumer_evicts_none_of_the_devices_it_reads() -> None:
    """The clock is the bank's newest reading, not the wall: readings hours old (a
    consumer catching up after an outage) are as recent as the shard's progress."""
    bank = DetectorBank(config=DetectorConfig())
    for second in range(0, 600, 10):
        observe(bank, "d1", second, second - 4 * 3600)
        observe(bank, "d2", second, second - 4 * 3600)
    bank.clear_dirty()
    assert bank.evict_idle(idle_after_s=120) == []
    assert bank.devices() == ["d1", "d2"]


def test_churn_keeps_the_bank_bounded() -> None:
    """New device ids keep appearing (replacements, renames); each reports for a
    minute and goes quiet. With eviction the bank holds about the devices of the last
    idle window, not every device ever seen."""
    bank = DetectorBank(config=DetectorConfig())
    idle_after = 300.0
    sizes = []
    for second in range(0, 7200, 5):
        # 2 new devices every 5 s, each reporting every 5 s for 60 s.
        for device_index in range(max(0, (second - 60) // 5 * 2), second // 5 * 2 + 2):
            observe(bank, f"dev-{device_index:06d}", second, second)
        bank.clear_dirty()
        bank.evict_idle(idle_after_s=idle_after)
        sizes.append(len(bank))
    seen = 7200 // 5 * 2
    # Live (60 s) + idle window (300 s), 2 new per 5 s.
    bound = int((60 + idle_after + 10) / 5 * 2) + 2
    assert max(sizes) <= bound < seen
    assert sizes[-1] <= bound
