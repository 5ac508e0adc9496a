"""The processor's run loop: leases, one reader thread per held shard, graceful stop.

Threads (all in one process; the work is I/O-bound and the GIL is not the limit at
the batch sizes Kinesis allows per shard):

* **plan thread** (:meth:`Worker._plan_loop`), a round every 250 ms: list the
  lease rows and live workers, run the pure planner
  (:func:`processor.core.leases.plan_leases`) and acquire / give up shards; every
  10 s (and right after a shard ends) it syncs ListShards into the lease table.
  The short round is what makes a handoff fast: a released lease is picked up by
  a peer within one round, without LISTEN/NOTIFY plumbing through a connection pool.
* **renew thread** (:meth:`Worker._renew_loop`): heartbeat and renew the held
  leases every ``lease_duration / 3``, apart from the planner so that a planner
  blocked on a row a paused peer keeps locked cannot let our own leases expire.
* **shard runners** (:class:`processor.shard_runner.ShardRunner`), one per held
  shard: GetRecords -> process -> commit (fenced by the lease) -> Redis -> metrics.
  They see only a :class:`~processor.shard_runner.RunnerContext` (store, cache,
  source, settings, metrics, the abandon event) and report back through the
  :class:`~processor.shard_runner.RunnerHost` methods this worker implements
  (``note_pending``, ``note_progress``, ``request_shard_sync``, ``runner_exited``,
  ``shard_info``).
* **main thread**: signals, periodic chores (Redis reconciliation, partitions,
  metrics flush) and the health endpoint's clock.

SIGTERM / SIGINT (ECS stop, deploy, scale-in): the worker leaves the live-worker
set first (so peers' fair share counts without it), every runner stops fetching,
commits the batch it holds, saves its detector states and releases its lease;
peers take the shards on their next round. A second signal abandons retries.
"""

from __future__ import annotations

import enum
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Final

from processor.contract.environment import ProcessorSettings
from processor.contract.record import DEFAULT_LIMITS
from processor.core.detection import DetectorConfig
from processor.core.leases import ShardInfo, plan_leases, start_position
from processor.core.model import LeaseToken
from processor.detector_overrides import OverridesRefresher
from processor.health import HealthServer
from processor.kinesis_source import KinesisSource
from processor.observability import Metrics
from processor.postgres import (
    PostgresStore,
    StoreError,
    StoreUnavailable,
    with_pg_retry,
)
from processor.redis_cache import RedisCache
from processor.secrets import SecretsProvider
from processor.shard_runner import RunnerContext, ShardRunner

log = logging.getLogger(__name__)

#: How often the lease thread looks at the lease table (handoff latency).
LEASE_POLL_S: Final = 0.25
#: How often ListShards is re-read (new shards after a split or a reshard).
SHARD_SYNC_S: Final = 10.0
#: How often partitions are ensured after start-up.
PARTITIONS_EVERY_S: Final = 3600.0
#: Floor of the client-side deadline of a lease-table call (see _lease_call_timeout_s).
LEASE_CALL_MIN_TIMEOUT_S: Final = 2.0
#: Pause before re-acquiring a shard whose runner crashed (no hot loop on a bug).
CRASH_COOLDOWN_S: Final = 5.0


class Phase(enum.StrEnum):
    """Where the process is: liveness and readiness mean different things in each."""

    #: Waiting for PostgreSQL (schema, partitions): live while it keeps retrying,
    #: never ready.
    STARTING = "starting"
    #: Lease loops running: ready when PostgreSQL and Redis answer.
    RUNNING = "running"
    STOPPING = "stopping"


@dataclass
class WorkerStatus:
    """What the health endpoint reports; written by the threads, read by HTTP."""

    phase: Phase = Phase.STARTING
    #: Last sign of life of the start-up loop (each attempt and each retry).
    startup_tick: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.monotonic)
    lease_tick: float = field(default_factory=time.monotonic)
    plan_tick: float = field(default_factory=time.monotonic)
    main_tick: float = field(default_factory=time.monotonic)
    store_ok_at: float = 0.0
    shards_listed: int = 0
    live_workers: int = 0
    stopping: bool = False


class Worker:
    """One processor process: wires the edges together and runs the threads."""

    def __init__(
        self,
        settings: ProcessorSettings,
        *,
        secrets: SecretsProvider | None = None,
        store: PostgresStore | None = None,
        cache: RedisCache | None = None,
        source: KinesisSource | None = None,
        metrics: Metrics | None = None,
        lease_poll_s: float = LEASE_POLL_S,
    ) -> None:
        self.settings = settings
        self.me = settings.worker_id
        self.secrets = secrets or SecretsProvider.from_settings(settings)
        self.store = store or PostgresStore.from_settings(
            settings, self.secrets, max_idle_connections=12
        )
        # Issue 9: per-device detector settings, re-read from PostgreSQL in the background.
        self.detector_overrides = OverridesRefresher(
            self.store.run_query,
            settings.detector_overrides_refresh_s,
            DetectorConfig(),
        ).start()
        self.cache = cache or RedisCache(settings, self.secrets)
        self.source = source or KinesisSource(settings)
        self.metrics = metrics or Metrics(settings.metrics_namespace, settings.stream_name)
        self.limits = DEFAULT_LIMITS
        self.lease_poll_s = lease_poll_s
        self.stop = threading.Event()
        #: Second signal: stop retrying commits and releases, exit now.
        self.abandon = threading.Event()
        self.status = WorkerStatus()
        self._runners: dict[str, ShardRunner] = {}
        self._runners_lock = threading.Lock()
        self._cooldown: dict[str, float] = {}
        #: shard id -> when its oldest uncommitted records were fetched (monotonic);
        #: kept across a runner crash so a crash loop shows as a stall (liveness).
        self._pending_since: dict[str, float] = {}
        self._shards: list[ShardInfo] = []
        self._sync_now = threading.Event()
        #: What the shard runners use: they never reach into the worker (shard_runner.py).
        self._runner_context = RunnerContext(
            store=self.store,
            cache=self.cache,
            source=self.source,
            settings=settings,
            metrics=self.metrics,
            limits=self.limits,
            detector_overrides=self.detector_overrides.current,
            abandon=self.abandon,
            host=self,
        )
        self._renew_thread = threading.Thread(target=self._renew_loop, name="renew", daemon=True)
        self._plan_thread = threading.Thread(target=self._plan_loop, name="plan", daemon=True)

    # -- runner bookkeeping --------------------------------------------------------------

    def runners(self) -> dict[str, ShardRunner]:
        with self._runners_lock:
            return dict(self._runners)

    def runner_exited(self, runner: ShardRunner) -> None:
        with self._runners_lock:
            if self._runners.get(runner.shard_id) is runner:
                del self._runners[runner.shard_id]
            if runner.crashed:
                self._cooldown[runner.shard_id] = time.monotonic() + CRASH_COOLDOWN_S
            else:
                self._pending_since.pop(runner.shard_id, None)
        self.metrics.leases_held(len(self._runners))

    def note_pending(self, shard_id: str) -> None:
        """A runner fetched records (they wait for their commit)."""
        with self._runners_lock:
            self._pending_since.setdefault(shard_id, time.monotonic())

    def note_progress(self, shard_id: str) -> None:
        """A runner committed a batch: the shard advanced."""
        with self._runners_lock:
            self._pending_since.pop(shard_id, None)

    def _reap_dead_runners(self) -> None:
        """Deregister runners whose thread ended without doing so itself (a bug or a
        BaseException in their exit path): their leases must not be renewed."""
        with self._runners_lock:
            dead = [r for r in self._runners.values() if r.ident is not None and not r.is_alive()]
        for runner in dead:
            log.error(
                "shard runner died without deregistering",
                extra={"event": "runner_reaped", "shard_id": runner.shard_id},
            )
            runner.crashed = True
            self.runner_exited(runner)

    def request_shard_sync(self) -> None:
        self._sync_now.set()

    def shard_info(self, shard_id: str) -> ShardInfo | None:
        """The shard as the last ListShards described it."""
        return next((s for s in self._shards if s.shard_id == shard_id), None)

    # -- start-up ----------------------------------------------------------------------

    def start(self) -> None:
        """Check the schema, prepare partitions, start the lease thread (no signal handlers).

        Blocks while PostgreSQL is unreachable (an outage, a failover, the master
        password's first rotation), retrying with back-off. Meanwhile the process is
        live (each attempt ticks ``startup_tick``; an attempt is bounded by the
        client timeouts) but not ready, so the ECS health check (``/health/live``)
        does not kill it in a loop (issue 10, item 2)."""
        self.status.phase = Phase.STARTING
        self.status.startup_tick = time.monotonic()
        log.info(
            "processor starting",
            extra={
                "stream": self.settings.stream_name,
                "lease_duration_s": self.settings.lease_duration_s,
                "poll_interval_ms": self.settings.poll_interval_ms,
                "limit": self.settings.get_records_limit,
            },
        )

        def on_retry(attempt: int, exc: StoreUnavailable, delay: float) -> None:
            self.status.startup_tick = time.monotonic()
            log.warning(
                "PostgreSQL unavailable at start-up",
                extra={"attempt": attempt, "delay_s": round(delay, 2), "error": str(exc)[:300]},
            )

        # Migrations run in the migrate task with the owner's secret (issue 11); wait
        # (SchemaBehind is retryable, readiness stays false) until they are applied.
        with_pg_retry(self.store.require_schema, stop=self.stop, on_retry=on_retry)
        self.status.startup_tick = time.monotonic()
        with_pg_retry(self.store.ensure_partitions, stop=self.stop, on_retry=on_retry)
        self.status.store_ok_at = time.monotonic()
        self.cache.recover(self.store)
        now = time.monotonic()
        # The loops' clocks start now, not when the object was built minutes ago.
        self.status.lease_tick = self.status.plan_tick = self.status.main_tick = now
        self.status.phase = Phase.RUNNING
        self._renew_thread.start()
        self._plan_thread.start()
        log.info("processor running", extra={"event": "running"})

    # -- the lease thread ----------------------------------------------------------------

    def _renew_loop(self) -> None:
        """Heartbeat and renew the held leases every ``lease_duration / 3``.

        A thread of its own: a planner round can block on a lease row that a paused
        peer holds locked inside its commit transaction, and that must not stop our
        renewals too (every lease of this worker would expire with the peer's).
        It keeps renewing while a stopping worker's runners finish their batches.
        """
        renew_every = self.settings.lease_duration_s / 3
        while True:
            started = time.monotonic()
            self.status.lease_tick = started
            self._reap_dead_runners()
            runners = self.runners()
            if self.stop.is_set() and (not runners or self.abandon.is_set()):
                return
            try:
                # A renewal blocked on a black-holed connection must give up before
                # the next one is due, or every lease of this worker expires with it.
                with self.store.call_deadline(self._lease_call_timeout_s()):
                    self._renew(runners)
                self.status.store_ok_at = time.monotonic()
            except StoreUnavailable as exc:
                log.warning(
                    "lease renewal failed: PostgreSQL unavailable", extra={"error": str(exc)[:300]}
                )
            except Exception:
                log.exception("lease renewal failed")
            while time.monotonic() - started < renew_every:
                if self.stop.is_set() and not self.runners():
                    return
                time.sleep(0.05)

    def _plan_loop(self) -> None:
        """Every 250 ms: sync shards when due, plan, acquire and give up."""
        next_sync = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            self.status.plan_tick = now
            try:
                with self.store.call_deadline(self._lease_call_timeout_s()):
                    if now >= next_sync or self._sync_now.is_set():
                        self._sync_now.clear()
                        self._sync_shards()
                        next_sync = now + SHARD_SYNC_S
                    self._plan_round()
                self.status.store_ok_at = time.monotonic()
            except StoreUnavailable as exc:
                log.warning(
                    "lease round failed: PostgreSQL unavailable", extra={"error": str(exc)[:300]}
                )
            except Exception:
                log.exception("lease round failed")
            self.stop.wait(self.lease_poll_s)

    def _lease_call_timeout_s(self) -> float:
        """Client-side deadline of one lease-table call: a renewal period (the
        statements are single-row or single-statement updates taking milliseconds)."""
        return max(LEASE_CALL_MIN_TIMEOUT_S, self.settings.lease_duration_s / 3)

    def _leave_live_set(self) -> None:
        try:
            self.store.remove_worker(self.me)
        except StoreError as exc:
            log.warning("could not leave the live-worker set", extra={"error": str(exc)[:200]})

    def _renew(self, runners: dict[str, ShardRunner]) -> None:
        if not self.stop.is_set():
            self.store.heartbeat(self.me)
        # Only leases of runners that still read them: a dead or exiting runner's
        # lease must expire so that its shard is taken again (issue 10, item 1).
        tokens = [
            r.token
            for r in runners.values()
            if not r.lost.is_set() and not r.exiting and r.is_alive()
        ]
        if not tokens:
            return
        _, lost = self.store.renew(tokens, self.settings.lease_duration_s)
        for token in lost:
            runner = runners.get(token.shard_id)
            if runner is not None and runner.token == token:
                runner.lose("renew")

    def _sync_shards(self) -> None:
        try:
            shards = self.source.list_shards()
        except Exception as exc:
            # Keep the last list: Kinesis control-plane hiccups must not stop reading.
            log.warning("ListShards failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        # Upsert only what changed: the upsert locks existing lease rows, and a row a
        # stalled peer keeps locked would block this thread (see PostgresStore.try_acquire).
        known = {
            row.shard_id: (tuple(row.parent_shard_ids), row.adjacent_parent)
            for row in self.store.list_leases()
        }
        changed = [
            (s.shard_id, list(s.parent_shard_ids), s.adjacent_parent_shard_id)
            for s in shards
            if known.get(s.shard_id) != (s.parent_shard_ids, s.adjacent_parent_shard_id)
        ]
        if changed:
            self.store.sync_shards(changed)
        self._shards = shards
        self.status.shards_listed = len(shards)

    def _plan_round(self) -> None:
        if not self._shards:
            return
        rows = self.store.list_leases()
        live = self.store.live_workers(self.settings.lease_duration_s)
        self.status.live_workers = len(live)
        # Rows read from the table carry the database clock; none yet: ours.
        db_now = (rows[0].db_now if rows else None) or datetime.now(UTC)
        runners = self.runners()
        with self._runners_lock:
            for lease in rows:
                if lease.held and lease.owner != self.me:
                    self._pending_since.pop(lease.shard_id, None)  # a peer reads it now
        plan = plan_leases(
            self._shards,
            rows,
            live,
            self.me,
            db_now,
        )
        for shard_id in plan.release:
            runner = runners.get(shard_id)
            if runner is not None:
                runner.give_up("rebalance" if shard_id == plan.give_up else "ineligible")
            else:
                # A lease row says it is ours but no runner reads it (e.g. a runner that
                # exited without releasing): give it back.
                row = next((r for r in rows if r.shard_id == shard_id), None)
                if row is not None and row.owner == self.me:
                    self.store.release(LeaseToken(shard_id, self.me, row.fencing))
        for acquire in plan.take:
            if acquire.shard_id in runners:
                continue
            if self._cooldown.get(acquire.shard_id, 0.0) > time.monotonic():
                continue
            token = self.store.try_acquire(
                acquire.shard_id,
                self.me,
                self.settings.lease_duration_s,
                expected_fencing=acquire.expected_fencing,
            )
            if token is None:
                continue
            checkpoint = self.store.checkpoint_of(acquire.shard_id)
            # LATEST only for a parentless shard never read before (issue 10 item 6).
            info = self.shard_info(acquire.shard_id)
            position = start_position(
                self.settings.initial_position,
                parents=info.parent_shard_ids if info is not None else ("unknown",),
                fencing=token.fencing,
                checkpoint=checkpoint,
            )
            runner = ShardRunner(self._runner_context, token, checkpoint, position)
            with self._runners_lock:
                self._runners[acquire.shard_id] = runner
            if self.stop.is_set():
                runner.give_up("shutdown")  # acquired while the stop signal arrived
            runner.start()
        self.metrics.leases_held(len(self.runners()))

    # -- main loop ---------------------------------------------------------------------

    def run_forever(self, chores_every_s: float = 1.0) -> None:
        """Periodic chores until ``stop``; then wait for the runners and the lease thread."""
        next_partitions = time.monotonic() + PARTITIONS_EVERY_S
        while not self.stop.wait(chores_every_s):
            self.status.main_tick = time.monotonic()
            # Reconcile after an outage, and notice a Redis that restarted empty.
            if self.cache.stale or not self.cache.check():
                self.cache.recover(self.store)
            if time.monotonic() >= next_partitions:
                next_partitions = time.monotonic() + PARTITIONS_EVERY_S
                try:
                    self.store.ensure_partitions()
                except StoreError as exc:
                    log.warning("partition maintenance failed", extra={"error": str(exc)[:200]})
            self.metrics.maybe_flush()
        self.shutdown()

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Stop fetching, let each runner commit and release, then stop the threads."""
        self.status.stopping = True
        self.status.phase = Phase.STOPPING
        self.stop.set()
        started = time.monotonic()
        # Leave the live set first: peers then count their fair share without us and
        # take each released shard on their next round.
        self._leave_live_set()
        budget = timeout_s if timeout_s is not None else self.settings.lease_duration_s
        deadline = started + budget
        while (runners := self.runners()) and time.monotonic() < deadline:
            for runner in runners.values():
                runner.give_up("shutdown")
            time.sleep(0.01)
        if self.runners():
            log.warning("runners still busy at the shutdown deadline; abandoning")
            self.abandon.set()
        for thread in (self._plan_thread, self._renew_thread):
            if thread.is_alive():
                thread.join(timeout=5)
        self.metrics.flush()
        log.info(
            "processor stopped",
            extra={"event": "stopped", "shutdown_ms": round((time.monotonic() - started) * 1000)},
        )
        self.detector_overrides.stop()
        self.cache.close()
        self.store.close()

    # -- health --------------------------------------------------------------------------

    def live(self) -> tuple[bool, dict[str, Any]]:
        """Is the process making progress? Its loops tick, no runner thread died
        registered, and no shard has had records waiting longer than
        ``TAP_SHARD_STALL_S`` while PostgreSQL answers (a wedged runner: a restart
        frees the shard; while PostgreSQL is down a restart would not help)."""
        now = time.monotonic()
        lease_age = now - self.status.lease_tick
        main_age = now - self.status.main_tick
        limit = max(15.0, 2 * self.settings.lease_duration_s)
        store_answers = now - self.status.store_ok_at < max(5.0, self.settings.lease_duration_s)
        with self._runners_lock:
            dead = sorted(
                s for s, r in self._runners.items() if r.ident is not None and not r.is_alive()
            )
            stalled = sorted(
                s
                for s, since in self._pending_since.items()
                if now - since > self.settings.shard_stall_s
            )
        if self.status.phase is Phase.STARTING:
            startup_age = now - self.status.startup_tick
            return startup_age < limit, {
                "worker": self.me,
                "phase": self.status.phase.value,
                "startup_loop_age_s": round(startup_age, 2),
                "stopping": self.status.stopping,
            }
        ok = lease_age < limit and main_age < limit and not dead
        ok = ok and not (stalled and store_answers)
        return ok, {
            "worker": self.me,
            "phase": self.status.phase.value,
            "renew_loop_age_s": round(lease_age, 2),
            "plan_loop_age_s": round(now - self.status.plan_tick, 2),
            "main_loop_age_s": round(main_age, 2),
            "dead_runners": dead,
            "stalled_shards": stalled,
            "stopping": self.status.stopping,
        }

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready to process: start-up done (schema and partitions), the lease loop
        ticking, PostgreSQL answering, Redis not stale, not stopping."""
        now = time.monotonic()
        pg_ok = now - self.status.store_ok_at < max(5.0, self.settings.lease_duration_s)
        redis_ok = not self.cache.stale
        running = self.status.phase is Phase.RUNNING
        leases_loop = running and now - self.status.plan_tick < max(
            15.0, 2 * self.settings.lease_duration_s
        )
        runners = self.runners()
        ok = running and leases_loop and pg_ok and redis_ok and not self.status.stopping
        return ok, {
            "worker": self.me,
            "phase": self.status.phase.value,
            "leases_loop": leases_loop,
            "postgres": pg_ok,
            "redis": redis_ok,
            "leases": sorted(runners),
            "leases_held": len(runners),
            "shards_listed": self.status.shards_listed,
            "live_workers": self.status.live_workers,
            "stopping": self.status.stopping,
        }


def install_signal_handlers(worker: Worker) -> None:
    """SIGTERM/SIGINT: graceful stop; a second one: stop retrying."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if worker.stop.is_set():
            worker.abandon.set()
            return
        log.info(
            "signal received; handing shards over",
            extra={"event": "signal", "signal": signal.Signals(signum).name},
        )
        worker.stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run(settings: ProcessorSettings, *, on_started: Callable[[Worker], None] | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the process exit code."""
    worker = Worker(settings)
    install_signal_handlers(worker)
    health = HealthServer(
        settings.health_port, worker.live, worker.ready, host=settings.health_host
    ).start()
    try:
        worker.start()
        if on_started is not None:
            on_started(worker)
        worker.run_forever()
    except StoreError as exc:
        if worker.stop.is_set():
            return 0  # stopped while PostgreSQL was still unreachable at start-up
        log.error("processor failed", extra={"error": str(exc)[:500]})
        return 1
    except Exception:
        # A malformed secret, a bug: one JSON line with the traceback, exit 1 so that
        # ECS replaces the task (the error is in the logs, never a secret value).
        log.exception("processor failed")
        return 1
    finally:
        health.stop()
    return 0
