"""Issue 10 item 9: the detector bank forgets idle devices (their state is in Redis),
so memory and the silence scan stay bounded under device churn. A fake clock: every
time is passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processor.contract.record import Reading, SensorType
from processor.core.detection import DetectorBank, DetectorConfig, load_states
from processor.core.model import AnomalyType

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


def test_only_saved_devices_reported_silent_and_idle_long_enough_are_evicted() -> None:
    bank = DetectorBank(config=DetectorConfig(silence_after_seconds=60))
    observe(bank, "d1", 1, 0)
    observe(bank, "d2", 1, 100)
    now = T0 + timedelta(seconds=200)
    # d1 is idle for 200 s but its state is not saved yet: it must stay.
    assert bank.evict_idle(now, idle_after_s=120) == []
    silent = bank.check_silence(now)
    assert {a.device_id for a in silent if a.anomaly_type is AnomalyType.SILENT} == {"d1", "d2"}
    saved = bank.dirty_states()
    bank.clear_dirty()  # what a successful save to Redis does
    assert bank.evict_idle(now, idle_after_s=120) == ["d1"]
    assert bank.devices() == ["d2"]
    assert bank.forget_shard(SHARD) == ["d2"], "the shard map forgot d1 as well"
    # An evicted device that comes back gets its saved state (the Redis MGET).
    assert bank.missing(["d1"]) == ["d1"]
    load_states(bank, {"d1": saved["d1"]})
    state = bank.state_of("d1")
    assert state is not None and state.count == 1 and state.last_seq == 1


def test_a_device_not_yet_reported_silent_is_kept() -> None:
    """Eviction never takes away the SILENT anomaly a device is owed."""
    bank = DetectorBank(config=DetectorConfig(silence_after_seconds=600))
    observe(bank, "d1", 1, 0)
    bank.clear_dirty()
    now = T0 + timedelta(seconds=300)
    # Idle past a (mis)configured 120 s, but not silent yet: kept until reported.
    assert bank.evict_idle(now, idle_after_s=120) == []
    later = T0 + timedelta(seconds=700)
    assert [a.device_id for a in bank.check_silence(later)] == ["d1"]
    bank.clear_dirty()
    assert bank.evict_idle(later, idle_after_s=120) == ["d1"]


def test_churn_keeps_the_bank_bounded() -> None:
    """New device ids keep appearing (replacements, renames); each reports for a
    minute and goes quiet. With eviction the bank holds about the devices of the last
    idle window, not every device ever seen."""
    bank = DetectorBank(config=DetectorConfig(silence_after_seconds=60))
    idle_after = 300.0
    sizes = []
    for second in range(0, 7200, 5):
        # 2 new devices every 5 s, each reporting every 5 s for 60 s.
        for device_index in range(max(0, (second - 60) // 5 * 2), second // 5 * 2 + 2):
            observe(bank, f"dev-{device_index:06d}", second, second)
        now = T0 + timedelta(seconds=second)
        bank.check_silence(now)
        bank.clear_dirty()
        bank.evict_idle(now, idle_after_s=idle_after)
        sizes.append(len(bank))
    seen = 7200 // 5 * 2
    # Live (60 s) + idle window (300 s) + silence check granularity, 2 new per 5 s.
    bound = int((60 + idle_after + 10) / 5 * 2) + 2
    assert max(sizes) <= bound < seen
    assert sizes[-1] <= bound
