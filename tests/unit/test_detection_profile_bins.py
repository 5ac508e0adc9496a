"""The time-of-week profile's bins start at 02:00 UTC (session 6), so the plant's
shift changes (06, 14, 22) fall on bin boundaries and a bin holds one shift's load.

The regression case is the one false SEASONAL of the month profile, seeds 1-3 (main,
2026-11-30): ``fac01-l01-m01-temperature-0``, seed 3, Monday 2026-10-19 07:01 UTC,
"4.1 sigma above its usual level for Mon 04-08 UTC (now 65 C, usual 26.3 C)". The
04-08 bin held the weekend's stand-by (04-06) and the first full-load hours (06-08),
and was learned mostly from its first half. The device's stream is regenerated
here with the simulator on the benchmark's settings (one device: its stream is the
one it has in the whole fleet).
"""

from __future__ import annotations

import msgspec

from bench.detection import _ARRIVAL, _LIMITS, PROFILES
from processor.contract.record import Reading, decode_reading
from processor.core.detection import DetectorBank, DetectorConfig
from processor.core.model import Anomaly, AnomalyType
from tests.unit.test_detection_ceiling import DAY_S, MONDAY, run
from tests.unit.test_detection_floor import machine_with_maintenance


def month_stream(seed: int, device_index: int) -> list[Reading]:
    profile = PROFILES["month"]
    fleet = profile.fleet(seed, range(device_index, device_index + 1))
    end = fleet.start_ms + int(profile.hours * 3_600_000)
    out = []
    while batch := fleet.tick(end - 1, limit=50_000):
        for record in batch:
            reading = decode_reading(record.data, arrival=_ARRIVAL, limits=_LIMITS)
            if isinstance(reading, Reading):
                out.append(reading)
    return out


def test_a_monday_start_is_not_a_seasonal_departure() -> None:
    """Seed 3's ``fac01-l01-m01-temperature-0`` (device 0): healthy but for a stuck
    spell on day 19; no SEASONAL in the month (one on Monday of week 3 before)."""
    readings = month_stream(3, 0)
    assert readings[0].device_id == "fac01-l01-m01-temperature-0"
    bank = DetectorBank()
    out: list[Anomaly] = []
    for reading in readings:
        bank.observe_into(reading, out)
    seasonal = [a for a in out if a.anomaly_type is AnomalyType.SEASONAL]
    assert seasonal == [], [(a.ts, a.explanation) for a in seasonal]


def test_a_bin_names_its_hours_from_the_offset() -> None:
    """A Sunday 23:00 reading is in Sunday's 22-02 bin (a bin belongs to the day it
    starts on, as a night shift does)."""
    series = machine_with_maintenance(4, MONDAY, 3.0, lambda t: 12.0 if t >= 20 * DAY_S else 0.0)
    got = [a for a in run(series) if a.anomaly_type is AnomalyType.SEASONAL]
    assert got
    hour = int(got[0].ts.timestamp() % 86_400 // 3600)
    first = (hour - 2) // 4 * 4 + 2
    assert f"{first % 24:02d}-{(first + 4) % 24:02d} UTC" in got[0].explanation


def test_a_profile_saved_with_bins_on_midnight_is_learned_again() -> None:
    """A state saved before the bins moved (an 84-entry profile) loads; its profile is
    started again at the next reading and not judged for ``profile_ready_days``, so
    bins learned for other hours never judge a reading."""
    series = machine_with_maintenance(5, MONDAY, 4.0, lambda t: 15.0 if t >= 22 * DAY_S else 0.0)
    bank = DetectorBank()
    cut = int(21 * DAY_S // 300)
    run(series[:cut], bank)
    state = bank.state_of("d1")
    assert state is not None and len(state.profile) == 86
    fields = msgspec.msgpack.decode(state.to_bytes())
    index = fields.index(state.profile)
    fields[index] = state.profile[:84]
    restored = DetectorBank()
    assert restored.load_state("d1", msgspec.msgpack.encode(fields))
    rest = run_from(restored, series, cut)
    assert [a for a in rest if a.anomaly_type is AnomalyType.SEASONAL] == []
    loaded = restored.state_of("d1")
    assert loaded is not None
    assert len(loaded.profile) == 86 and loaded.profile[84] == DetectorConfig().profile_bin_offset_s
    # The same series without the restart: the profile, ready, finds the +15 C.
    whole = run_from(bank, series, cut)
    assert [a for a in whole if a.anomaly_type is AnomalyType.SEASONAL]


def run_from(bank: DetectorBank, series: list[tuple[float, float]], cut: int) -> list[Anomaly]:
    from tests.unit.test_detection import T0, analog

    out: list[Anomaly] = []
    for seq, (t, value) in enumerate(series[cut:], start=cut + 1):
        bank.observe_into(analog(seq, t - T0.timestamp(), value), out)
    return out
