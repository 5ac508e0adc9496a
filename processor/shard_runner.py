"""The shard runner: one thread per held shard that reads, processes and commits it
while the lease is ours, and its prefetcher.

GetRecords -> :func:`processor.core.batch.process_records` -> ``commit_batch`` (one
PostgreSQL transaction, fenced by the lease) -> Redis -> metrics.
``StoreUnavailable``: back off and commit the *same* batch again (the detectors are
not re-run, so the replay yields the same anomalies). ``LeaseLost``: stop at once,
drop the shard's detector state, never touch the lease again. On any exit the
runner saves its detector states (unless they hold an uncommitted batch), releases
its lease (unless lost) and deregisters from its worker.

Separate from :mod:`processor.worker` because the runner is the per-shard data
path and the worker is the coordination around it (planning, renewals, chores,
shutdown, health): the runner sees only a :class:`RunnerContext`, the few edges
and settings it uses, and tells its worker what happened through the
:class:`RunnerHost` protocol, never reaching into the worker's state.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from processor.contract.environment import ProcessorSettings
from processor.contract.record import ValidationLimits
from processor.core.batch import committed_part, process_records
from processor.core.detection import DetectorBank, DetectorConfig
from processor.core.leases import ShardInfo
from processor.core.model import LeaseToken, ProcessedBatch
from processor.core.overrides import DetectorOverrides
from processor.core.silence import SilenceConfig, SilenceTracker, fetch_progress
from processor.error_kinds import ErrorKind, classify
from processor.kinesis_source import (
    FetchResult,
    KinesisSource,
    ShardReader,
    backoff_delay,
)
from processor.observability import Metrics
from processor.postgres import LeaseLost, PostgresStore, StoreUnavailable
from processor.redis_cache import RedisCache

log = logging.getLogger(__name__)

#: How often the silence detector runs on each shard's devices (it judges them on
#: the shard's progress, not on this timer; see processor.core.silence).
SILENCE_CHECK_S: Final = 5.0
#: Readings per batch whose event-to-commit latency is sampled for metrics.
LATENCY_SAMPLES_PER_BATCH: Final = 20
#: Detector states are saved to Redis at most this often per shard (and always before
#: a graceful release). Trade-off: after a ``kill -9`` the next owner resumes from
#: baselines up to this old (it re-learns the difference); no reading is lost or
#: stored twice, and anomaly identities (``<device>:<seq>:<type>``) stay stable.
STATE_SAVE_EVERY_S: Final = 5.0


class RunnerHost(Protocol):
    """What a runner tells the worker that started it (and the one thing it asks)."""

    def shard_info(self, shard_id: str) -> ShardInfo | None:
        """The shard as the last ListShards described it (parents, hash key range)."""
        ...

    def note_pending(self, shard_id: str) -> None:
        """Records were fetched and wait for their commit (liveness: stalls)."""
        ...

    def note_progress(self, shard_id: str) -> None:
        """A batch was committed: the shard advanced."""
        ...

    def request_shard_sync(self) -> None:
        """The shard ended: re-read ListShards now (its children become eligible)."""
        ...

    def runner_exited(self, runner: ShardRunner) -> None:
        """The runner is about to end: deregister it (its lease is no longer renewed)."""
        ...


@dataclass(frozen=True, slots=True)
class RunnerContext:
    """Everything a shard runner uses, shared by the runners of one worker."""

    store: PostgresStore
    cache: RedisCache
    source: KinesisSource
    settings: ProcessorSettings
    metrics: Metrics
    limits: ValidationLimits
    #: The current per-device detector overrides (re-read in the background).
    detector_overrides: Callable[[], DetectorOverrides | None]
    #: Second signal: stop retrying commits and releases, exit now.
    abandon: threading.Event
    host: RunnerHost


class _Prefetcher(threading.Thread):
    """Fetches the next GetRecords batch while the runner commits the current one.

    At most one batch ahead (a queue of one), so the reader runs at most one batch
    past the checkpoint. A stop discards that batch uncommitted: the next owner
    reads it again from the checkpoint. Overlapping the GetRecords round trip with
    the commit roughly doubles a shard's drain rate when both take similar time.
    """

    _DONE: Final = object()

    def __init__(self, reader: ShardReader, stop: threading.Event, shard_id: str) -> None:
        super().__init__(name=f"fetch-{shard_id}", daemon=True)
        self.reader = reader
        self.stop = stop
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=1)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                result = self.reader.fetch()
                if result is None:
                    break
                if not self._put((result, (time.monotonic() - started) * 1000)):
                    return
                if result.shard_end:
                    break
        except Exception as exc:  # handed to the runner, which logs it and gives up
            self._put(exc)
            return
        self._put(self._DONE)

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> tuple[FetchResult, float] | None:
        """The next fetched batch with its fetch time (ms); None when stopped or done."""
        while True:
            try:
                item = self.queue.get(timeout=0.05)
            except queue.Empty:
                if self.stop.is_set() or not self.is_alive():
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        return None
                else:
                    continue
            if item is self._DONE:
                return None
            if isinstance(item, Exception):
                raise item
            result: tuple[FetchResult, float] = item
            return result


class ShardRunner(threading.Thread):
    """Reads, processes and commits one shard while the lease is ours."""

    def __init__(
        self,
        context: RunnerContext,
        token: LeaseToken,
        checkpoint: str | None,
        initial_position: str = "TRIM_HORIZON",
    ) -> None:
        super().__init__(name=f"shard-{token.shard_id}", daemon=True)
        self.context = context
        self.token = token
        self.shard_id = token.shard_id
        self.checkpoint = checkpoint
        #: Where to start without a checkpoint (see start_position).
        self.initial_position = initial_position
        #: Set to stop fetching (shutdown, give-up, lease lost); the batch in hand is
        #: still committed unless the lease is lost.
        self.stop_fetching = threading.Event()
        self.lost = threading.Event()
        self.finished = False
        self.crashed = False
        self.released = False
        #: Set when the runner starts to exit: its lease is no longer renewed.
        self.exiting = False
        self.batches = 0
        #: When the detector states were last saved (throttled, see STATE_SAVE_EVERY_S).
        self._states_saved_at = time.monotonic()
        #: False while the detector bank holds the effects of a batch not committed
        #: (yet): such states must never be saved, or a replay would skip readings.
        self._bank_committed = True
        #: Durations of the current batch's steps (DEBUG logs).
        self.timings: dict[str, float] = {}
        self.bank = DetectorBank(config=DetectorConfig(), overrides=context.detector_overrides)
        #: The shard's silence registry: loaded from Redis when the runner starts (own
        #: and parents' entries), saved with every batch's Redis call. It holds only the
        #: devices that can still fall silent; reported and saved ones live in Redis
        #: until the forget time (issue 10 item 9).
        self.silence = SilenceTracker(
            SilenceConfig(
                min_silence_s=context.settings.silence_after_s,
                forget_after_s=context.settings.silence_forget_after_s,
            )
        )
        self._silence_loaded = False
        self._silence_reconciliations = context.cache.reconciliations

    # -- control from other threads ----------------------------------------------------

    def give_up(self, reason: str) -> None:
        if not self.stop_fetching.is_set():
            log.info("stopping shard", extra={"shard_id": self.shard_id, "reason": reason})
        self.stop_fetching.set()

    def lose(self, via: str) -> None:
        if not self.lost.is_set():
            self._log_lost(via)
        self.lost.set()
        self.stop_fetching.set()

    def _log_lost(self, via: str) -> None:
        self.context.metrics.count("LeasesLost")
        log.warning(
            "lease lost",
            extra={
                "event": "lease_lost",
                "via": via,
                "shard_id": self.shard_id,
                "fencing": self.token.fencing,
            },
        )

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        c = self.context
        try:
            self._run()
        except Exception as exc:
            self.crashed = True
            log.exception(
                "shard runner crashed",
                extra={
                    "event": "runner_crashed",
                    "shard_id": self.shard_id,
                    "kind": classify(exc).value,
                },
            )
        finally:
            # Whatever happens below, the runner is deregistered (issue 10, item 1): a
            # runner that stayed registered after dying kept its lease renewed forever
            # and the planner skipped its shard.
            self.exiting = True
            self.stop_fetching.set()  # ends the prefetch thread
            try:
                if not self.lost.is_set():
                    if self._bank_committed:
                        try:
                            self._save_states()  # the next owner starts from current baselines
                        except Exception:
                            log.exception("state save failed", extra={"shard_id": self.shard_id})
                    self._release()
            finally:
                # Baselines of a shard we no longer own must not linger (a later
                # owner's state is newer); Redis holds what we saved.
                self.bank = DetectorBank(config=self.bank.config)
                c.host.runner_exited(self)

    def _run(self) -> None:
        c = self.context
        reader = c.source.reader(
            self.shard_id,
            self.checkpoint,
            stop=self.stop_fetching,
            initial_position=self.initial_position,
        )
        log.info(
            "shard acquired",
            extra={
                "event": "shard_acquired",
                "shard_id": self.shard_id,
                "fencing": self.token.fencing,
                "checkpoint": self.checkpoint,
                "initial_position": self.initial_position,
            },
        )
        first = True
        next_silence = time.monotonic() + SILENCE_CHECK_S
        fetcher = _Prefetcher(reader, self.stop_fetching, self.shard_id)
        fetcher.start()
        while not self.stop_fetching.is_set():
            item = fetcher.next()
            if item is None:
                break
            result, self.timings["fetch_ms"] = item
            if result.records:
                c.host.note_pending(self.shard_id)
            if first:
                first = False
                log.info(
                    "shard reading",
                    extra={
                        "event": "shard_first_fetch",
                        "shard_id": self.shard_id,
                        "records": len(result.records),
                    },
                )
            c.metrics.millis_behind(self.shard_id, result.millis_behind_latest)
            process_started = time.monotonic()
            self._bank_committed = False
            batch = process_records(
                result.records,
                self.bank,
                c.limits,
                result.shard_end,
                shard_id=self.shard_id,
                state_loader=c.cache.load_detector_states,
            )
            self.timings["process_ms"] = (time.monotonic() - process_started) * 1000
            self._recall_silence_entries(batch)
            self.silence.observe_batch(batch.readings)
            full = len(result.records) >= c.settings.get_records_limit
            self.silence.advance(
                fetch_progress(result.received_at, result.millis_behind_latest, full=full)
            )
            if time.monotonic() >= next_silence:
                next_silence = time.monotonic() + SILENCE_CHECK_S
                self._load_silence_registry()
                evicted = self.silence.evicted
                batch.anomalies.extend(self.silence.check())
                if self.silence.evicted > evicted:
                    c.metrics.count("SilenceEntriesEvicted", self.silence.evicted - evicted)
            if not (batch.readings or batch.dead_letters or batch.anomalies or batch.shard_end):
                self._bank_committed = True  # nothing new for the detectors either
                continue
            if not self._commit(batch, len(result.records)):
                return
            self._bank_committed = True
            if result.shard_end:
                self.finished = True
                log.info("shard finished", extra={"event": "shard_end", "shard_id": self.shard_id})
                c.host.request_shard_sync()
                return

    def _commit(self, batch: ProcessedBatch, records: int) -> bool:
        """Commit ``batch`` until it sticks; False when the shard must be dropped."""
        c = self.context
        attempt = 0
        while True:
            if self.lost.is_set():
                return False
            started = time.monotonic()
            try:
                result = c.store.commit_batch(batch, self.token, datetime.now(UTC))
                break
            except LeaseLost:
                self.lose("commit")
                return False
            except StoreUnavailable as exc:
                c.metrics.count("StoreRetries")
                if c.abandon.is_set():
                    log.warning(
                        "giving up an uncommitted batch at shutdown (it will be replayed)",
                        extra={"shard_id": self.shard_id},
                    )
                    return False
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning(
                    "PostgreSQL unavailable; retrying the same batch",
                    extra={
                        "shard_id": self.shard_id,
                        "attempt": attempt,
                        "delay_s": round(delay, 2),
                        "error": str(exc)[:300],
                    },
                )
                # Not stop_fetching: a stopping worker still owes this batch its commit.
                self.lost.wait(delay)
        commit_ms = (time.monotonic() - started) * 1000
        self.batches += 1
        c.host.note_progress(self.shard_id)
        # Redis after PostgreSQL, and only what PostgreSQL stored: the cache never
        # shows what the record lacks (issue 10 item 5).
        redis_started = time.monotonic()
        if c.cache.reconciliations != self._silence_reconciliations:
            # Redis came back (possibly empty): save the whole registry again.
            self._silence_reconciliations = c.cache.reconciliations
            self.silence.mark_all_dirty()
        entries, forgotten = self.silence.dirty_entries(), self.silence.forgotten()
        committed = committed_part(
            batch, result.inserted_keys, result.inserted_sequence_numbers, result.stored_anomalies
        )
        progress = self.silence.progress
        if c.cache.apply(
            committed,
            entries,
            forgotten,
            silence_arrivals=self.silence.arrivals_ms(entries),
            silence_forget_before_ms=None
            if progress is None
            else round((progress - self.silence.config.forget_after_s) * 1000),
        ):
            self.silence.clear_dirty([*entries, *forgotten])
        if time.monotonic() - self._states_saved_at >= STATE_SAVE_EVERY_S:
            self._save_states()
            # Right after a save: only saved states can go (issue 10 item 9).
            evicted = self.bank.evict_idle(c.settings.detector_idle_evict_s)
            if evicted:
                c.metrics.count("DetectorStatesEvicted", len(evicted))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch committed",
                extra={
                    "shard_id": self.shard_id,
                    "records": records,
                    "commit_ms": round(commit_ms, 1),
                    "redis_ms": round((time.monotonic() - redis_started) * 1000, 1),
                    **{k: round(v, 1) for k, v in self.timings.items()},
                },
            )
        now = datetime.now(UTC)
        readings = batch.readings
        step = max(1, len(readings) // LATENCY_SAMPLES_PER_BATCH)
        c.metrics.batch_committed(
            records=records,
            readings=result.inserted,
            dead_letters=len(batch.dead_letters) + result.seq_conflicts,
            anomaly_types=[a.anomaly_type.value for a in committed.anomalies],
            latencies_ms=[(now - a.reading.ts).total_seconds() * 1000 for a in readings[::step]],
            commit_ms=commit_ms,
        )
        if result.duplicates:
            c.metrics.count("Duplicates", result.duplicates - result.seq_conflicts)
        if result.seq_conflicts:  # issue 10 item 4: dead-lettered, never silent
            c.metrics.count("SeqConflicts", result.seq_conflicts)
        return True

    def _recall_silence_entries(self, batch: ProcessedBatch) -> None:
        """Fetch the saved entries of the batch's devices the tracker does not hold: a
        device let go of after its silence was reported that now reads again keeps its
        reported episode and its cadence (issue 10 item 9). Before the registry is
        loaded the load merges them anyway; most unknown devices are new (no entry)."""
        if not self._silence_loaded or not batch.readings:
            return
        unknown = self.silence.unknown(a.reading.device_id for a in batch.readings)
        if unknown:
            saved = self.context.cache.load_silence_entries(self.shard_id, unknown)
            if saved:
                self.silence.recall(saved)

    def _load_silence_registry(self) -> None:
        """Learn every device of the shard from Redis: its own registry, and for a
        child of a split or merge its parents' entries in its hash key range. Until
        Redis answers this is retried at each check; meanwhile only the devices read
        are judged (a silence may be late, never false)."""
        if self._silence_loaded:
            return
        info = self.context.host.shard_info(self.shard_id)
        parents = info.parent_shard_ids if info is not None else ()
        saved = self.context.cache.load_silence_registry([self.shard_id, *parents])
        if saved is None:
            return
        bad = self.silence.load(saved.get(self.shard_id, {}))
        for parent in parents:
            if info is None or (info.hash_key_range is None and len(parents) == 1):
                # A split child without its range would take its sibling's devices too.
                log.warning("no hash key range: parent's silence registry not inherited")
                break
            bad += self.silence.load(
                saved.get(parent, {}), hash_range=info.hash_key_range, inherited=True
            )
        self._silence_loaded = True
        log.info(
            "silence registry loaded",
            extra={
                "event": "silence_registry_loaded",
                "shard_id": self.shard_id,
                "devices": len(self.silence),
                "parents": list(parents),
                "corrupt": len(bad),
            },
        )

    def _save_states(self) -> None:
        """Save the states changed since the last save (kept dirty if Redis fails)."""
        self._states_saved_at = time.monotonic()
        states = self.bank.dirty_states()
        if states and self.context.cache.save_detector_states(states):
            self.bank.clear_dirty(states)

    def _release(self) -> None:
        """Give the lease back; on any failure leave it to expire (nobody renews it
        once this runner is exiting, so a peer or this worker's planner takes the
        shard within one lease duration)."""
        c = self.context
        for attempt in range(3):
            try:
                self.released = c.store.release(self.token)
                log.info(
                    "lease released",
                    extra={
                        "event": "lease_released",
                        "shard_id": self.shard_id,
                        "released": self.released,
                    },
                )
                return
            except Exception as exc:
                kind = classify(exc)
                log.warning(
                    "lease release failed; it expires by itself",
                    extra={
                        "shard_id": self.shard_id,
                        "attempt": attempt,
                        "kind": kind.value,
                        "error": f"{type(exc).__name__}: {exc}"[:200],
                    },
                )
                if kind is ErrorKind.FATAL or c.abandon.wait(backoff_delay(attempt)):
                    return
