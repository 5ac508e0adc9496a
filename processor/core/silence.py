"""Silence: which devices stopped reporting, judged against the shard's own progress.

Pure: no I/O, no clock reads; every time is passed in (epoch seconds, floats).

**The clock is the shard, not the wall.** A device is silent when the *shard* moved
on without it: ``progress - last_arrival > threshold``, where ``progress`` is how far
the consumer has read the shard (:meth:`SilenceTracker.advance`), i.e. the newest
Kinesis arrival time read on it, or — only when a GetRecords reply says the reader
is at the tip — the time of that reply minus its ``MillisBehindLatest``
(:func:`fetch_progress`). A consumer that is minutes behind (PostgreSQL outage,
catch-up, a cold start from TRIM_HORIZON, a new owner inheriting lag) therefore sees
its devices as they were at the point it has read up to, and raises nothing; the
wall clock alone made every device of a lagging shard "silent" (issue 9).

**The expected interval is learned per device**: the median of the last
:attr:`SilenceConfig.gap_window` gaps between the *arrivals* of its readings — what
silence is about. Gaps of zero are skipped: a producer that buffers readings and
sends them in one PutRecords every five minutes has an arrival cadence of five
minutes, whatever its sampling rate. The median ignores up to four outliers in nine
(missing readings, a burst, the hole of an earlier silence). A device is silent
after ``max(min_silence_s, intervals x median)`` without a reading: a one-second
sensor after the configured minimum (60 s), a five-minute series after 25 minutes,
and one or two missing readings (an intermittent dropout) never. With fewer than
:attr:`SilenceConfig.min_gaps` gaps the cadence is unknown and
``unknown_cadence_silence_s`` (1 h) applies: one reading says nothing about how
often the next one comes, and an hourly historian export must not be called silent
before its second row.

**One anomaly per episode, with a deterministic identity.** The episode is "no
reading after ``seq`` N of boot B", so its anomaly is ``(device_id, B, N, silent)``
on the UTC day of its ``ts`` — the same key the anomalies table and the Redis stream
de-duplicate on. A replay, a second
owner after a handoff, or the parent's and the child's owner after a split all
report the same episode under the same key, so it is stored once. Its ``ts`` is the
moment the silence became definite (last arrival + threshold), not the moment a
timer noticed it, so the row is the same whoever writes it. The next reading ends
the episode: recovery needs no extra state.

**A reading proves the device alive by its arrival, whatever its seq** (issue 10
item 4). A device that reboots starts its seq again; ignoring every seq not above
the last one called a rebooted device silent while it was sending. So any reading
that arrived later than the last one moves ``last_arrival`` (and ends an episode);
which series the entry follows is decided apart: with a boot counter (schema
version 2) by ``(boot, seq)`` — a higher boot is the new series, a lower one a late
record of an old series (alive, but the series stays); without one (version 1) a
seq that went back on a newer arrival is followed (a restart, or a producer's
re-send of an old reading, which the next reading corrects).

**The registry.** The per-device entries (:class:`SilenceEntry`: last seq, last
arrival, recent gaps, whether the episode was reported) are what a
new owner of the shard needs to judge devices that never show up again; the adapter
persists them per shard (see ``processor.redis_cache``) and feeds them back with
:meth:`SilenceTracker.load`. After a shard split a child inherits the parent's
entries whose partition key hashes into its range (:func:`partition_hash`).

**Memory holds the devices that can still fall silent, the saved registry the rest**
(issue 10 item 9). Under device churn (replaced units, renamed ids, test rigs) a
tracker that kept every device until ``forget_after_s`` (a week) grew by every id
ever seen. An entry whose episode is reported *and saved* has nothing left to
decide until the device reads again, so :meth:`SilenceTracker.check` drops it from
memory; the saved registry keeps it until the forget time, so a new owner or a
restart still knows it (and :meth:`SilenceTracker.load` does not bring such entries
back into memory). A device that reads again after that is unknown to the tracker:
the adapter fetches its saved entry first (:meth:`SilenceTracker.unknown`,
:meth:`SilenceTracker.recall`), so its return ends the reported episode, its
learned cadence survives and the old episode is never reported twice; without the
saved entry (Redis down) it is learned again, which is late at worst, never
false. The saved registry itself drops entries whose last arrival is older than
``forget_after_s`` (the adapter prunes them by arrival time; :meth:`load` forgets
those it meets), so it is bounded by the devices seen within the forget time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import msgspec

from processor.core.model import AcceptedReading, Anomaly, AnomalyType, Severity

#: Version of the serialized :class:`SilenceEntry`; another version's entry is ignored
#: (the device is learned again from its next reading) rather than misread.
ENTRY_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class SilenceConfig:
    """The silence detector's parameters, with the processor's defaults."""

    #: Never silent before this many seconds without a reading (``TAP_SILENCE_AFTER_S``).
    min_silence_s: float = 60.0
    #: Silent after this many expected intervals without a reading. Five: a device that
    #: misses one or two readings in a row (radio dropouts) is not silent; five in a row
    #: is not noise any more.
    intervals: float = 5.0
    #: Threshold while the cadence is unknown (fewer than ``min_gaps`` gaps seen).
    unknown_cadence_silence_s: float = 3600.0
    #: Recent gaps whose median is the expected interval (odd: a true median).
    gap_window: int = 9
    #: Gaps needed before the learned cadence is trusted.
    min_gaps: int = 2
    #: Entries of devices silent for longer than this are dropped from the saved
    #: registry (``TAP_SILENCE_FORGET_AFTER_S``): the episode was reported long ago,
    #: and the registry must not grow for ever. Longer than the unknown-cadence limit,
    #: or a device seen once would be forgotten before it could be called silent.
    forget_after_s: float = 7 * 86_400.0

    def __post_init__(self) -> None:
        for name in ("min_silence_s", "intervals", "unknown_cadence_silence_s", "forget_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SilenceConfig.{name} must be > 0, not {getattr(self, name)!r}")
        if self.gap_window < 1 or self.min_gaps < 1 or self.min_gaps > self.gap_window:
            raise ValueError("SilenceConfig needs 1 <= min_gaps <= gap_window")
        if self.forget_after_s <= max(self.min_silence_s, self.unknown_cadence_silence_s):
            raise ValueError(
                f"SilenceConfig.forget_after_s ({self.forget_after_s!r}) must exceed the "
                "minimum silence and the unknown-cadence limit "
                f"({max(self.min_silence_s, self.unknown_cadence_silence_s)!r})"
            )


class SilenceEntry(msgspec.Struct, array_like=True, gc=False):
    """What the registry remembers about one device (about 60-90 bytes as JSON).

    JSON rather than msgpack: the entry rides inside the Redis batch script's msgpack
    document, where Lua's cmsgpack can only carry text. Times are integer
    milliseconds: exact, short, and about three times cheaper to encode than floats
    (it is encoded for every device of every batch).
    """

    version: int
    sensor_type: str
    last_seq: int
    last_arrival_ms: int  # epoch ms, Kinesis arrival (event time offline)
    gaps_ms: list[int] = msgspec.field(default_factory=list)
    #: ``last_seq`` of the episode already reported (-1: none). Reported iff equal to
    #: ``last_seq``; any reading that changes the entry sets it back to -1.
    reported_seq: int = -1
    #: The boot counter of the series followed (0 for schema version 1 readings).
    #: Last, with a default: entries saved before it existed decode as boot 0, and
    #: an older decoder ignores it (msgspec drops trailing array elements).
    boot: int = 0

    def expected_interval(self, min_gaps: int) -> float | None:
        """Median of the recent gaps in seconds; None while fewer than ``min_gaps``."""
        gaps = self.gaps_ms
        if len(gaps) < min_gaps:
            return None
        ordered = sorted(gaps)
        n = len(ordered)
        mid = n // 2
        median_ms = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0
        return median_ms / 1000.0

    def to_text(self) -> str:
        return _entry_encoder.encode(self).decode()

    @classmethod
    def from_text(cls, data: str | bytes) -> SilenceEntry:
        """Decode a registry entry; raises ``ValueError`` on anything else."""
        try:
            entry = _entry_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"not a silence entry: {exc}") from exc
        if entry.version != ENTRY_VERSION:
            raise ValueError(f"silence entry version {entry.version}, want {ENTRY_VERSION}")
        return entry


_entry_encoder: Final = msgspec.json.Encoder()
_entry_decoder: Final = msgspec.json.Decoder(SilenceEntry)

#: Kinesis maps a partition key to a 128-bit hash key with MD5.
HASH_KEY_MAX: Final = 2**128 - 1


def partition_hash(partition_key: str) -> int:
    """The Kinesis hash key of ``partition_key`` (MD5 as a 128-bit integer): a record
    lands in the one shard whose hash key range holds it."""
    digest = hashlib.md5(partition_key.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest, "big")


def fetch_progress(
    received_at: float | None, millis_behind_latest: int, *, full: bool
) -> float | None:
    """How far a GetRecords reply proves the shard was read, from the wall clock.

    Only a reply that is not full is trusted: a full one may stop anywhere in the
    backlog, and emulators (kinesalite) always answer ``MillisBehindLatest`` 0. A
    reply short of the limit means the reader reached the tip, where ``received_at -
    MillisBehindLatest`` is the tip's time. Returns None when it proves nothing (the
    newest arrival read is then the only clock)."""
    if received_at is None or full:
        return None
    return received_at - max(0, millis_behind_latest) / 1000.0


def _position(st: SilenceEntry) -> tuple[int, int, int]:
    """How far an entry has followed its device: a newer boot, then a later arrival,
    then a higher seq (a version 1 device's restarted seq arrives later)."""
    return (st.boot, st.last_arrival_ms, st.last_seq)


def _update(st: SilenceEntry, boot: int | None, seq: int, arrival_ms: int, window: int) -> bool:
    """Apply one reading to a known device's entry (the rule in the module doc);
    returns whether the entry changed."""
    changed = False
    if boot is not None and boot != st.boot:
        if boot > st.boot:  # the device restarted: a new series
            st.boot = boot
            st.last_seq = seq
            changed = True
        # else a late record of an earlier series: alive (below), the series stays
    elif seq > st.last_seq or (
        boot is None and seq < st.last_seq and arrival_ms > st.last_arrival_ms
    ):
        st.last_seq = seq
        changed = True
    gap = arrival_ms - st.last_arrival_ms
    if gap > 0:
        gaps = st.gaps_ms
        gaps.append(gap)
        if len(gaps) > window:
            del gaps[0]
        st.last_arrival_ms = arrival_ms
        changed = True
    if changed:
        st.reported_seq = -1
    return changed


@dataclass(slots=True)
class SilenceTracker:
    """The silence registry of one shard, and the detector that judges it."""

    config: SilenceConfig = field(default_factory=SilenceConfig)
    _entries: dict[str, SilenceEntry] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _forgotten: set[str] = field(default_factory=set)
    #: How far the shard has been read (epoch s); None until anything was read.
    progress: float | None = None
    #: Entries dropped from memory so far because their episode was reported and
    #: saved (they live on in the saved registry); a counter for the metrics.
    evicted: int = 0

    # -- registry ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, device_id: str) -> SilenceEntry | None:
        return self._entries.get(device_id)

    def devices(self) -> list[str]:
        return sorted(self._entries)

    def unknown(self, device_ids: Iterable[str]) -> list[str]:
        """The devices among ``device_ids`` with no entry in memory: new ones, or ones
        evicted after their silence was reported, whose saved entry the adapter fetches
        and hands to :meth:`recall` before the readings are observed."""
        entries = self._entries
        return sorted({d for d in device_ids if d not in entries})

    def recall(self, saved: Mapping[str, str | bytes]) -> list[str]:
        """Take back the saved entries of devices that read again (a reported entry
        too: the reading about to be observed ends its episode). Returns the corrupt
        ones, as :meth:`load` does."""
        return self._merge(saved, None, inherited=False, keep_reported=True)

    def load(
        self,
        saved: Mapping[str, str | bytes],
        *,
        hash_range: tuple[int, int] | None = None,
        inherited: bool = False,
    ) -> list[str]:
        """Merge saved entries (a registry hash); returns the devices whose entry was
        corrupt. ``hash_range`` keeps only the devices whose partition key hashes into
        it (a child shard taking its share of a parent's registry). The newer entry wins
        (:func:`_position`: boot, then last arrival, then seq); on a tie a reported
        episode stays reported. Entries
        taken from another shard's registry (``inherited``) are marked to be saved
        under this shard, so the parent's registry may expire.

        An own entry whose episode is reported stays out of memory (it is saved, and
        :meth:`recall` brings it back if the device reads again); one whose last
        arrival is older than ``forget_after_s`` before ``progress`` is forgotten (to
        delete from the saved registry)."""
        return self._merge(saved, hash_range, inherited=inherited, keep_reported=inherited)

    def _merge(
        self,
        saved: Mapping[str, str | bytes],
        hash_range: tuple[int, int] | None,
        *,
        inherited: bool,
        keep_reported: bool,
    ) -> list[str]:
        bad: list[str] = []
        horizon_ms = (
            None
            if self.progress is None
            else round((self.progress - self.config.forget_after_s) * 1000.0)
        )
        for device_id, data in saved.items():
            if hash_range is not None:
                h = partition_hash(device_id)
                if not hash_range[0] <= h <= hash_range[1]:
                    continue
            try:
                other = SilenceEntry.from_text(data)
            except ValueError:
                bad.append(device_id)
                continue
            mine = self._entries.get(device_id)
            if mine is None:
                if horizon_ms is not None and other.last_arrival_ms < horizon_ms:
                    if not inherited:
                        self._forgotten.add(device_id)
                    continue
                if other.reported_seq == other.last_seq and not keep_reported:
                    continue
            if mine is None or _position(other) > _position(mine):
                if mine is not None and len(other.gaps_ms) < len(mine.gaps_ms):
                    other.gaps_ms = mine.gaps_ms
                self._entries[device_id] = other
                if inherited:
                    self._dirty.add(device_id)
            elif _position(other) == _position(mine) and other.reported_seq > mine.reported_seq:
                mine.reported_seq = other.reported_seq
            elif _position(mine) > _position(other) and len(mine.gaps_ms) < len(other.gaps_ms):
                mine.gaps_ms = other.gaps_ms + mine.gaps_ms
                del mine.gaps_ms[: -self.config.gap_window]
        return sorted(bad)

    def dirty_entries(self) -> dict[str, str]:
        """Entries changed since the last ``clear_dirty`` (device -> text)."""
        entries = self._entries
        return {d: entries[d].to_text() for d in sorted(self._dirty) if d in entries}

    def arrivals_ms(self, device_ids: Iterable[str]) -> dict[str, int]:
        """Last arrival (epoch ms) of each known device among ``device_ids``: the saved
        registry's index, by which entries past the forget time are removed."""
        entries = self._entries
        return {d: entries[d].last_arrival_ms for d in device_ids if d in entries}

    def forgotten(self) -> list[str]:
        """Devices dropped by :meth:`check` (to delete from the saved registry)."""
        return sorted(self._forgotten)

    def clear_dirty(self, device_ids: Iterable[str] | None = None) -> None:
        if device_ids is None:
            self._dirty.clear()
            self._forgotten.clear()
        else:
            ids = set(device_ids)
            self._dirty -= ids
            self._forgotten -= ids

    def mark_all_dirty(self) -> None:
        """Save every entry again (the saved registry was lost: a Redis restart)."""
        self._dirty.update(self._entries)

    # -- the clock --------------------------------------------------------------------

    def advance(self, t: float | None) -> None:
        """The shard has been read up to ``t`` (never moves back)."""
        if t is not None and (self.progress is None or t > self.progress):
            self.progress = t

    # -- readings ---------------------------------------------------------------------

    def observe(
        self, device_id: str, seq: int, arrival: float, sensor_type: str, boot: int | None = None
    ) -> None:
        """One reading that arrived at ``arrival`` (epoch s); ``boot`` is its restart
        counter (None for schema version 1). A duplicate arriving no later than the
        last reading changes nothing; see the module doc for a seq that went back."""
        self._observe(device_id, seq, round(arrival * 1000.0), sensor_type, boot)

    def _observe(
        self, device_id: str, seq: int, arrival_ms: int, sensor_type: str, boot: int | None
    ) -> None:
        arrival = arrival_ms / 1000.0
        if self.progress is None or arrival > self.progress:
            self.progress = arrival
        st = self._entries.get(device_id)
        if st is None:
            self._entries[device_id] = SilenceEntry(
                ENTRY_VERSION, sensor_type, seq, arrival_ms, boot=boot or 0
            )
            self._dirty.add(device_id)
            self._forgotten.discard(device_id)
            return
        if _update(st, boot, seq, arrival_ms, self.config.gap_window):
            self._dirty.add(device_id)

    def observe_batch(self, readings: Iterable[AcceptedReading]) -> None:
        """:meth:`observe` every reading of a batch (in shard order): the hot path,
        so only the arrival time is converted, and the sensor type only for a device
        seen for the first time."""
        entries = self._entries
        dirty = self._dirty
        window = self.config.gap_window
        newest = 0
        for accepted in readings:
            r = accepted.reading
            device_id = r.device_id
            arrival_ms = round(accepted.arrival.timestamp() * 1000.0)
            if arrival_ms > newest:
                newest = arrival_ms
            st = entries.get(device_id)
            if st is None:
                self._observe(device_id, r.seq, arrival_ms, r.sensor_type.value, r.boot)
                continue
            if _update(st, r.boot, r.seq, arrival_ms, window):
                dirty.add(device_id)
        if newest:
            self.advance(newest / 1000.0)

    # -- detection --------------------------------------------------------------------

    def threshold(self, entry: SilenceEntry) -> float:
        """Seconds without a reading after which ``entry``'s device is silent."""
        cfg = self.config
        interval = entry.expected_interval(cfg.min_gaps)
        if interval is None:
            return max(cfg.min_silence_s, cfg.unknown_cadence_silence_s)
        return max(cfg.min_silence_s, cfg.intervals * interval)

    def check(self) -> list[Anomaly]:
        """One SILENT anomaly per device per silence episode, judged at ``progress``.

        Also lets go of the entries whose episode is reported and saved (not dirty):
        the saved registry has them (see the module doc, "Memory holds...")."""
        now = self.progress
        out: list[Anomaly] = []
        if now is None:
            return out
        forget_after = self.config.forget_after_s
        floor = self.config.min_silence_s
        gone: list[str] = []
        settled: list[str] = []
        dirty = self._dirty
        for device_id, st in self._entries.items():
            last_arrival = st.last_arrival_ms / 1000.0
            gap = now - last_arrival
            if st.reported_seq == st.last_seq:
                if device_id not in dirty:
                    settled.append(device_id)  # reported and saved: the registry has it
                elif gap > forget_after:
                    gone.append(device_id)
                continue
            if gap <= floor:  # the threshold is never below the floor: no sort needed
                continue
            limit = self.threshold(st)
            if gap <= limit:
                continue
            st.reported_seq = st.last_seq
            self._dirty.add(device_id)
            interval = st.expected_interval(self.config.min_gaps)
            cadence = "cadence unknown" if interval is None else f"expected every {interval:.3g} s"
            since = datetime.fromtimestamp(last_arrival, UTC).isoformat()
            out.append(
                Anomaly(
                    device_id=device_id,
                    boot=st.boot,
                    seq=st.last_seq,
                    ts=datetime.fromtimestamp(last_arrival + limit, UTC),
                    anomaly_type=AnomalyType.SILENT,
                    severity=Severity.WARNING,
                    score=round(gap, 3),
                    explanation=(
                        f"{st.sensor_type} device silent for {gap:.0f} s of shard progress "
                        f"(last reading seq {st.last_seq} at {since}, {cadence}, "
                        f"limit {limit:.0f} s)"
                    ),
                    sensor_type=st.sensor_type,
                )
            )
        for device_id in gone:
            del self._entries[device_id]
            self._dirty.discard(device_id)
            self._forgotten.add(device_id)
        for device_id in settled:
            del self._entries[device_id]
        self.evicted += len(settled)
        return out
