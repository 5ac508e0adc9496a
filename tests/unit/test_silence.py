"""The silence detector (``processor.core.silence``) with a fake clock: time is the
shard's progress, passed in."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from processor.contract.environment import ProcessorSettings, SettingsError
from processor.core.model import AnomalyType, Severity
from processor.core.silence import (
    HASH_KEY_MAX,
    SilenceConfig,
    SilenceEntry,
    SilenceTracker,
    fetch_progress,
    partition_hash,
)

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC).timestamp()


def feed(tracker: SilenceTracker, device: str, seqs_and_times: list[tuple[int, float]]) -> None:
    for seq, t in seqs_and_times:
        tracker.observe(device, seq, t, "temperature")


def regular(
    n: int, step: float, *, start: float = T0, first_seq: int = 0
) -> list[tuple[int, float]]:
    return [(first_seq + i, start + i * step) for i in range(n)]


def test_a_lagging_consumer_raises_no_silence() -> None:
    """Twenty 1-Hz devices read 3 minutes late in batches of 100 (catch-up after a
    PostgreSQL outage): the wall clock is 180 s ahead of every reading, the shard's
    progress is not. The wall-clock detector called all twenty silent (issue 9)."""
    tracker = SilenceTracker(SilenceConfig(min_silence_s=60.0))
    records = [(f"d{i}", k, T0 + k + i * 0.01) for k in range(600) for i in range(20)]
    got = []
    for offset in range(0, len(records), 100):
        batch = records[offset : offset + 100]
        for device, seq, t in batch:
            tracker.observe(device, seq, t, "temperature")
        wall = batch[-1][2] + 180.0
        # full replies while catching up: the wall clock proves nothing
        tracker.advance(fetch_progress(wall, 180_000, full=True))
        got += tracker.check()
    assert got == []
    # at the tip, an emulator saying "0 ms behind" with a short reply moves the clock
    assert fetch_progress(T0 + 700, 0, full=False) == T0 + 700
    assert fetch_progress(T0 + 700, 5_000, full=False) == T0 + 695
    assert fetch_progress(None, 0, full=False) is None


def test_silence_is_judged_on_shard_progress_once_per_episode() -> None:
    tracker = SilenceTracker()
    feed(tracker, "a", regular(120, 1.0))
    feed(tracker, "b", regular(180, 1.0))  # "b" keeps the shard moving past "a"
    last_a = T0 + 119
    assert tracker.progress == last_a + 60
    assert [a.device_id for a in tracker.check()] == []  # "more than" 60 s
    feed(tracker, "b", regular(100, 1.0, start=T0 + 180, first_seq=180))
    got = tracker.check()
    assert [(a.device_id, a.seq, a.anomaly_type, a.severity) for a in got] == [
        ("a", 119, AnomalyType.SILENT, Severity.WARNING)
    ]
    (a,) = got
    assert a.ts.timestamp() == pytest.approx(last_a + 60)  # when it became definite
    assert a.score == pytest.approx(T0 + 279 - last_a)
    assert "expected every 1 s" in a.explanation and "limit 60 s" in a.explanation
    tracker.advance(T0 + 5 * 3600)
    assert [x.device_id for x in tracker.check()] == ["b"]  # "a" is not reported again
    assert tracker.check() == []
    # recovery ends the episode; the next silence is a new one with a new identity
    feed(tracker, "a", regular(100, 1.0, start=T0 + 5 * 3600, first_seq=500))
    tracker.advance(T0 + 5 * 3600 + 99 + 61)
    assert [(x.device_id, x.seq) for x in tracker.check()] == [("a", 599)]


def test_a_five_minute_cadence_is_learned() -> None:
    rng = random.Random(3)
    tracker = SilenceTracker()
    got = []
    t = T0
    for seq in range(2000):  # about a week at one reading per 5 minutes, +-20 s jitter
        t = T0 + seq * 300 + rng.uniform(-20, 20)
        tracker.advance(t)  # offline: the next row's time is the shard's progress
        got += tracker.check()
        feed(tracker, "slow", [(seq, t)])
    assert got == []
    tracker.advance(t + 3 * 3600)
    (a,) = tracker.check()
    assert a.seq == 1999 and "expected every" in a.explanation
    assert 24 * 60 < a.ts.timestamp() - t < 26 * 60  # five intervals of about 300 s


def test_intermittent_dropouts_do_not_alarm_but_a_silence_does() -> None:
    tracker = SilenceTracker()
    times = regular(50, 300.0)
    # one or two readings lost (their seqs skipped, or not: a CSV has no seq gaps)
    kept = [x for x in times if x[0] not in (20, 30, 31)]
    got = []
    for seq, t in kept:
        tracker.advance(t)
        got += tracker.check()
        feed(tracker, "d", [(seq, t)])
    assert got == []
    interval = tracker.entry("d").expected_interval(2)  # type: ignore[union-attr]
    assert interval == pytest.approx(300.0)  # the median: dropouts don't skew it
    last = kept[-1][1]
    tracker.advance(last + 5 * 300)
    assert tracker.check() == []
    tracker.advance(last + 5 * 300 + 1)
    assert len(tracker.check()) == 1


def test_a_device_seen_once_waits_for_the_unknown_cadence_limit() -> None:
    tracker = SilenceTracker()
    feed(tracker, "new", [(0, T0)])
    tracker.advance(T0 + 1800)
    assert tracker.check() == []
    tracker.advance(T0 + 3601)
    (a,) = tracker.check()
    assert "cadence unknown" in a.explanation


def test_the_identity_is_deterministic_across_owners() -> None:
    """The first owner saves its registry and dies before the silence is due; a second
    owner loads it and reports the episode; a third replays from the same registry.
    All report the same (device, seq, type, ts): the store keeps one row."""
    first = SilenceTracker()
    feed(first, "a", regular(30, 1.0))
    feed(first, "b", regular(31, 1.0))
    saved = first.dirty_entries()
    first.clear_dirty()
    assert first.dirty_entries() == {}

    def owner() -> list[tuple[str, int, AnomalyType, float]]:
        tracker = SilenceTracker()
        assert tracker.load(saved) == []
        assert tracker.devices() == ["a", "b"]
        feed(tracker, "b", regular(200, 1.0, start=T0 + 31, first_seq=31))
        return [(x.device_id, x.seq, x.anomaly_type, x.ts.timestamp()) for x in tracker.check()]

    second, third = owner(), owner()
    assert second == third == [("a", 29, AnomalyType.SILENT, T0 + 29 + 60)]

    # A registry saved after the report keeps it reported: the next owner is quiet.
    tracker = SilenceTracker()
    tracker.load(saved)
    tracker.advance(T0 + 1000)
    assert len(tracker.check()) == 2
    after = SilenceTracker()
    after.load(tracker.dirty_entries())
    after.advance(T0 + 2000)
    assert after.check() == []


def test_load_merges_by_seq_and_skips_corrupt_entries() -> None:
    tracker = SilenceTracker()
    feed(tracker, "a", regular(10, 1.0, first_seq=100))
    older = SilenceTracker()
    feed(older, "a", regular(10, 1.0))
    feed(older, "b", regular(10, 1.0))
    bad = tracker.load({**older.dirty_entries(), "c": "junk", "d": b'[99,"x",1,1000]'})
    assert bad == ["c", "d"]
    assert tracker.entry("a").last_seq == 109  # type: ignore[union-attr]
    assert tracker.entry("b").last_seq == 9  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        SilenceEntry.from_text("[1]")


def test_split_children_share_the_parents_devices() -> None:
    parent = SilenceTracker()
    for i in range(200):
        feed(parent, f"dev-{i:04d}", regular(3, 1.0))
    saved = parent.dirty_entries()
    middle = HASH_KEY_MAX // 2
    low, high = SilenceTracker(), SilenceTracker()
    low.load(saved, hash_range=(0, middle), inherited=True)
    high.load(saved, hash_range=(middle + 1, HASH_KEY_MAX), inherited=True)
    assert sorted(low.devices() + high.devices()) == sorted(saved)
    assert set(low.devices()).isdisjoint(high.devices()) and low.devices() and high.devices()
    assert all(partition_hash(d) <= middle for d in low.devices())
    assert set(low.dirty_entries()) == set(low.devices())  # saved under the child next


def test_long_dead_devices_are_forgotten() -> None:
    tracker = SilenceTracker()
    feed(tracker, "dead", regular(5, 1.0))
    feed(tracker, "alive", regular(5, 1.0))
    tracker.clear_dirty()
    tracker.advance(T0 + 100)
    assert len(tracker.check()) == 2
    feed(tracker, "alive", [(10, T0 + 8 * 86_400)])
    tracker.check()
    assert tracker.devices() == ["alive"] and tracker.forgotten() == ["dead"]
    tracker.clear_dirty()
    assert tracker.forgotten() == []


def test_duplicates_change_nothing_and_config_is_checked() -> None:
    tracker = SilenceTracker()
    feed(tracker, "a", regular(5, 1.0))
    before = tracker.entry("a").to_text()  # type: ignore[union-attr]
    # Re-sends arriving no later than the last reading; a later arrival proves the
    # device alive whatever its seq (test_a_v1_device_restarting_its_seq_is_alive).
    feed(tracker, "a", [(4, T0 + 4), (2, T0 + 1)])
    assert tracker.entry("a").to_text() == before  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="min_silence_s"):
        SilenceConfig(min_silence_s=0)
    with pytest.raises(ValueError, match="min_gaps"):
        SilenceConfig(gap_window=1, min_gaps=2)


def test_a_producer_that_buffers_is_judged_on_its_sending_cadence() -> None:
    """A gateway samples at 1 Hz but sends 300 readings in one PutRecords every 5
    minutes: they arrive together (gaps of zero are skipped), so the cadence is the
    5-minute one and the pauses between sends are not silences."""
    tracker = SilenceTracker()
    got = []
    seq = 0
    for burst in range(48):
        arrival = T0 + burst * 300.0
        tracker.advance(arrival)
        got += tracker.check()
        for _ in range(300):
            tracker.observe("gw", seq, arrival, "pressure")
            seq += 1
    assert got == []
    assert tracker.entry("gw").expected_interval(2) == pytest.approx(300.0)  # type: ignore[union-attr]


def test_the_batch_path_matches_one_reading_at_a_time() -> None:
    from processor.contract.record import Reading, SensorType
    from processor.core.model import AcceptedReading

    def accepted(device: str, seq: int, at: float) -> AcceptedReading:
        ts = datetime.fromtimestamp(at, UTC)
        reading = Reading(
            device_id=device,
            facility="f",
            line="l",
            sensor_type=SensorType.TEMPERATURE,
            unit="C",
            ts=ts,
            seq=seq,
            schema_version=1,
            value=70.0,
        )
        return AcceptedReading(reading, "s", str(seq), ts)

    rng = random.Random(5)
    readings = [
        accepted(f"d{rng.randrange(5)}", rng.randrange(60), T0 + i * 0.5 + rng.random())
        for i in range(300)
    ]
    one, batch = SilenceTracker(), SilenceTracker()
    for a in readings:
        one.observe(a.reading.device_id, a.reading.seq, a.arrival.timestamp(), "temperature")
    for offset in range(0, len(readings), 37):
        batch.observe_batch(readings[offset : offset + 37])
    assert one.dirty_entries() == batch.dirty_entries()
    assert one.progress == batch.progress


def test_a_reboot_mid_stream_is_not_a_silence() -> None:
    """Issue 10 item 4 for silence: a device sends seq 0..119 (boot 0), reboots and
    sends seq 0..199 again (boot 1) while another device keeps the shard moving. It
    is sending all along: no SILENT. The old tracker ignored every reading whose seq
    was not above 119 and called the rebooted device silent while it sent."""
    tracker = SilenceTracker()
    for i in range(120):
        tracker.observe("a", i, T0 + i, "temperature", boot=0)
    for i in range(200):
        tracker.observe("a", i, T0 + 120 + i, "temperature", boot=1)
        tracker.observe("b", i, T0 + 120 + i + 0.5, "temperature")
    assert tracker.check() == []
    entry = tracker.entry("a")
    assert entry is not None and (entry.boot, entry.last_seq) == (1, 199)
    # A late record of the old series proves the device alive but does not move the
    # series back.
    tracker.observe("a", 119, T0 + 330, "temperature", boot=0)
    assert (entry.boot, entry.last_seq, entry.last_arrival_ms) == (1, 199, (T0 + 330) * 1000)
    # A real silence after the reboot: one SILENT whose identity carries the new boot.
    tracker.advance(T0 + 330 + 61)
    got = tracker.check()
    assert [(a.device_id, a.boot, a.seq, a.anomaly_type) for a in got] == [
        ("a", 1, 199, AnomalyType.SILENT),
        ("b", 0, 199, AnomalyType.SILENT),
    ]
    tracker.advance(T0 + 3600)
    assert tracker.check() == []  # one anomaly per episode


def test_a_v1_device_restarting_its_seq_is_alive() -> None:
    """Without a boot counter (schema version 1) a restarted sequence is told apart
    only by its arrival: a newer arrival with a lower seq is the device, alive, and
    its series is followed from there."""
    tracker = SilenceTracker()
    feed(tracker, "a", regular(100, 1.0))
    feed(tracker, "a", regular(100, 1.0, start=T0 + 100))  # seq 0..99 again
    feed(tracker, "b", regular(200, 1.0, start=T0 + 0.5))
    assert tracker.check() == []
    tracker.advance(T0 + 199 + 61)
    got = tracker.check()
    assert [(a.device_id, a.boot, a.seq) for a in got] == [("a", 0, 99), ("b", 0, 199)]
    assert got[0].ts.timestamp() == pytest.approx(T0 + 199 + 60)


def test_entries_saved_before_the_boot_field_still_load() -> None:
    """The registry written by the running version (six fields) decodes as boot 0,
    and the old decoder's shape is a prefix of the new one (a rolling deploy)."""
    old = b'[1,"temperature",41,1700000000000,[1000,1000],41]'
    entry = SilenceEntry.from_text(old)
    assert (entry.boot, entry.last_seq, entry.reported_seq) == (0, 41, 41)
    tracker = SilenceTracker()
    assert tracker.load({"a": old}) == []
    tracker.observe("a", 0, 1_700_000_100.0, "temperature", boot=1)
    assert (tracker.entry("a").boot, tracker.entry("a").last_seq) == (1, 0)  # type: ignore[union-attr]


# -- bounded memory under device churn (issue 10 item 9) -------------------------------


class FakeRegistry:
    """The shard's saved registry (Redis in the worker): what survives the process."""

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    def save(self, tracker: SilenceTracker) -> None:
        """What the worker does after a commit: write the changed entries, delete the
        forgotten ones, then mark them saved."""
        entries, forgotten = tracker.dirty_entries(), tracker.forgotten()
        self.saved.update(entries)
        for device_id in forgotten:
            self.saved.pop(device_id, None)
        tracker.clear_dirty([*entries, *forgotten])


def test_memory_is_bounded_by_active_devices_under_churn() -> None:
    """50,000 device ids, 20 new per second, each reporting every 2 s for 10 s and then
    quiet for good (replaced units). Each silence is reported once and saved; the
    tracker must then let the device go. Before the fix it kept every device ever
    seen for ``forget_after_s`` (a week): 50,000 entries at the end."""
    tracker = SilenceTracker(SilenceConfig(min_silence_s=60.0))
    registry = FakeRegistry()
    new_per_s, period, lifetime, total = 20, 2, 10, 50_000
    reported: list[str] = []
    peak = 0
    second = 0
    while second * new_per_s < total + new_per_s * 200:  # run on until all are silent
        now = T0 + second
        first_live = max(0, second - lifetime) * new_per_s
        for index in range(first_live, min(total, (second + 1) * new_per_s)):
            age = second - index // new_per_s
            if age % period == 0 and age < lifetime:
                tracker.observe(f"dev-{index:06d}", age // period, now, "temperature")
        tracker.advance(now)
        if second % 5 == 0:  # the worker's silence check, then the batch's save
            reported += [a.device_id for a in tracker.check()]
            registry.save(tracker)
        peak = max(peak, len(tracker))
        second += 1
    assert sorted(reported) == [f"dev-{i:06d}" for i in range(total)]  # each once
    # Active devices: 20/s alive for 10 s, quiet for 60-70 s until reported, and up to
    # one check interval (5 s) until the save after the report: ~90 s of creations.
    assert peak <= new_per_s * 90, peak
    tracker.check()  # the last saved reports leave too
    assert len(tracker) == 0
    assert len(registry.saved) == total  # the saved registry still knows every one


def test_a_new_owner_reports_a_device_that_died_before_handoff_exactly_once() -> None:
    """The first owner reports two silences but dies after saving only one report. The
    next owner, from the saved registry, reports the other once and never the saved
    one; an owner after it reports nothing. Reported entries stay out of memory."""
    registry = FakeRegistry()
    first = SilenceTracker()
    feed(first, "dead", regular(10, 1.0))
    feed(first, "done", regular(10, 1.0))
    first.advance(T0 + 40)
    assert first.check() == []
    registry.save(first)
    first.advance(T0 + 70)
    assert [a.device_id for a in first.check()] == ["dead", "done"]
    registry.saved["done"] = first.dirty_entries()["done"]  # then the owner dies

    def owner() -> tuple[SilenceTracker, list[str]]:
        tracker = SilenceTracker()
        feed(tracker, "other", regular(90, 1.0))  # its first batch, before the load
        assert tracker.load(registry.saved) == []
        reported = [a.device_id for a in tracker.check()]
        registry.save(tracker)
        tracker.check()
        return tracker, reported

    second, reported = owner()
    assert reported == ["dead"]
    assert second.devices() == ["other"]  # the reported devices live in Redis only
    third, reported = owner()
    assert reported == []
    assert third.devices() == ["other"]


def test_a_device_that_returns_after_eviction_is_alive_and_reported_once_more() -> None:
    registry = FakeRegistry()
    tracker = SilenceTracker()
    feed(tracker, "a", regular(10, 1.0))
    feed(tracker, "b", regular(300, 1.0))
    assert [a.seq for a in tracker.check()] == [9]
    registry.save(tracker)
    tracker.check()
    assert tracker.entry("a") is None  # reported and saved: evicted

    # It reports again: the worker fetches the unknown device's saved entry first.
    assert tracker.unknown(["a", "b"]) == ["a"]
    assert tracker.recall({"a": registry.saved["a"]}) == []
    feed(tracker, "a", [(10 + i, T0 + 300 + i) for i in range(10)])
    entry = tracker.entry("a")
    assert entry is not None and entry.reported_seq == -1 and entry.last_seq == 19
    assert entry.expected_interval(2) == 1.0  # the learned cadence survived (median)
    feed(tracker, "b", regular(50, 1.0, start=T0 + 300, first_seq=300))
    assert tracker.check() == []  # alive: the old episode is not reported again
    registry.save(tracker)
    feed(tracker, "b", regular(100, 1.0, start=T0 + 350, first_seq=350))
    assert [(a.device_id, a.seq) for a in tracker.check()] == [("a", 19)]  # a new episode

    # A late re-send of an old reading after eviction changes nothing, reports nothing.
    registry.save(tracker)
    tracker.check()
    assert tracker.entry("a") is None
    tracker.recall({"a": registry.saved["a"]})
    feed(tracker, "a", [(5, T0 + 5)])
    assert tracker.check() == [] and tracker.entry("a") is None

    # Without its saved entry (Redis down) it is learned again: alive, no duplicate.
    feed(tracker, "a", [(20, T0 + 460)])
    assert tracker.check() == [] and tracker.entry("a") is not None


def test_saved_entries_past_the_forget_time_are_forgotten_at_load() -> None:
    old = SilenceTracker()
    feed(old, "ancient", regular(3, 1.0))
    tracker = SilenceTracker(SilenceConfig(forget_after_s=7200.0))
    feed(tracker, "fresh", [(0, T0 + 8000)])
    tracker.load(old.dirty_entries())
    assert tracker.devices() == ["fresh"] and tracker.forgotten() == ["ancient"]
    with pytest.raises(ValueError, match="forget_after_s"):
        SilenceConfig(forget_after_s=1800.0)  # below the unknown-cadence limit (1 h)


def test_the_forget_time_is_a_checked_setting() -> None:
    base = {
        "TAP_STREAM_NAME": "s",
        "TAP_DB_HOST": "db",
        "TAP_DB_NAME": "tap",
        "TAP_DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:db",
        "TAP_REDIS_HOST": "redis",
        "TAP_REDIS_AUTH_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:r",
        "AWS_REGION": "eu-west-2",
        "TAP_ENVIRONMENT": "dev",
    }
    assert ProcessorSettings.from_environ(base).silence_forget_after_s == 7 * 86_400
    chosen = ProcessorSettings.from_environ(base | {"TAP_SILENCE_FORGET_AFTER_S": "172800"})
    assert chosen.silence_forget_after_s == 172_800
    for bad in ("3600", "nan", "a week", "1e9"):
        with pytest.raises(SettingsError, match="TAP_SILENCE_FORGET_AFTER_S"):
            ProcessorSettings.from_environ(base | {"TAP_SILENCE_FORGET_AFTER_S": bad})
    # Any accepted value makes a valid tracker config (above every silence limit).
    SilenceConfig(min_silence_s=86_400.0, forget_after_s=172_800.0)
