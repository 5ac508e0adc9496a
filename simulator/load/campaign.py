"""The campaign's Locust wiring: options, the selected shape, the fleet user and the
end-to-end listener's lifecycle. ``simulator/locustfile.py`` only imports this.

``tap load`` (:mod:`simulator.load.cli`) passes the ``--tap-*`` options below and
the target in ``TAP_LOAD_TARGET``; running ``locust -f simulator/locustfile.py``
by hand works the same way. Each Locust process (one, or the workers of
``--processes``) builds the fleet template once and its own listener; the master
only runs the shape.
"""

from __future__ import annotations

import json
import logging
import os
import random
from typing import Any, ClassVar

from locust import LoadTestShape, events
from locust.runners import MasterRunner, WorkerRunner

from simulator.fleet import SimRecord
from simulator.fleet_options import CAMPAIGN_FLEET, add_fleet_arguments, fleet_options
from simulator.kinesis_producer import PutOutcome
from simulator.load.api_user import SOURCES_SUFFIX, ReaderUser, sources_document
from simulator.load.e2e_listener import E2EListener
from simulator.load.kinesis_user import DEFAULT_BATCH_INTERVAL_S, KinesisUser
from simulator.load.read_mix import ReadMix
from simulator.load.shapes import ShapeName, ShapePlan, Tick
from simulator.load.slices import SliceAllocator
from simulator.load.sse_listener import AnomalyStreamListener
from simulator.load.target import TARGET_ENV, Target

log = logging.getLogger(__name__)


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("tap campaign (set by `tap load`)")
    group.add_argument("--tap-shape", choices=[s.value for s in ShapeName], default="ramp")
    group.add_argument("--tap-users", type=int, default=10, help="peak users")
    group.add_argument("--tap-duration", type=float, default=60.0, help="seconds of traffic")
    group.add_argument("--tap-drain", type=float, default=10.0, help="seconds at 0 users")
    group.add_argument("--tap-steps", type=int, default=5, help="plateaus of the step shape")
    add_fleet_arguments(group, prefix="tap-", defaults=CAMPAIGN_FLEET)
    group.add_argument("--tap-e2e-sample", type=float, default=0.01, help="share followed")
    group.add_argument("--tap-e2e-timeout", type=float, default=30.0, help="seconds")
    group.add_argument("--tap-workers", type=int, default=1, help="Locust processes")
    group.add_argument("--tap-retries", type=int, default=0, help="re-sends of refused entries")
    group.add_argument("--tap-batch-interval", type=float, default=DEFAULT_BATCH_INTERVAL_S)
    # The read side (issue 13): ReaderUser against `tap api`, SSE listeners.
    group.add_argument("--tap-readers", type=int, default=0, help="read users (fixed count)")
    group.add_argument("--tap-read-rate", type=float, default=10.0, help="read requests/s, all")
    group.add_argument("--tap-read-mix", choices=[m.value for m in ReadMix], default="board")
    group.add_argument("--tap-sse-listeners", type=int, default=0, help="anomaly stream listeners")
    group.add_argument("--tap-read-only", action="store_true", help="no writers")


def shape_plan(options: Any) -> ShapePlan:
    return ShapePlan(
        ShapeName(options.tap_shape),
        users=options.tap_users,
        duration_s=options.tap_duration,
        drain_s=options.tap_drain,
        steps=options.tap_steps,
    )


def load_target() -> Target:
    raw = os.environ.get(TARGET_ENV)
    if not raw:
        raise SystemExit(f"{TARGET_ENV} is not set: run campaigns with `tap load` (docs/LOAD.md)")
    return Target.from_json(raw)


class CampaignState:
    """Per Locust process: the slices this process hands out and its listener."""

    current: ClassVar[CampaignState | None] = None

    def __init__(self, environment: Any) -> None:
        options = environment.parsed_options
        runner = environment.runner
        self.options = options
        self.target = load_target()
        worker_index = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        workers = max(1, options.tap_workers)
        fleet = fleet_options(options, prefix="tap-")
        self.slices = SliceAllocator(
            fleet.slice,
            users=options.tap_users,
            workers=workers,
            worker_index=worker_index % workers,
        )
        self.sample = options.tap_e2e_sample
        self.listener: E2EListener | None = None
        if self.sample > 0:
            if not self.target.has_stores:
                raise SystemExit(
                    "--e2e-sample > 0 needs PostgreSQL and Redis in the target"
                    " (or pass --e2e-sample 0)"
                )
            assert self.target.pg_dsn is not None and self.target.redis_url is not None
            self.listener = E2EListener(
                environment.events.request,
                pg_dsn=self.target.pg_dsn,
                redis_url=self.target.redis_url,
                redis_ca=self.target.redis_ca,
                timeout_s=options.tap_e2e_timeout,
            )
        self.worker_index = worker_index
        self.stream_listener: AnomalyStreamListener | None = None
        # One process listens (the first): listeners are boards, not load to spread.
        if options.tap_sse_listeners > 0 and worker_index == 0:
            if not self.target.api_url:
                raise SystemExit("--sse-listeners needs the API's URL (--api-url)")
            self.stream_listener = AnomalyStreamListener(
                environment.events.request, self.target.api_url, count=options.tap_sse_listeners
            )

    @classmethod
    def of(cls, environment: Any) -> CampaignState:
        if cls.current is None:
            cls.current = cls(environment)
        return cls.current


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    # Class attributes: users are created by Locust with the environment only.
    target = load_target()
    FleetUser.stream_name = target.stream_name
    FleetUser.retries = options.tap_retries
    FleetUser.batch_interval_s = options.tap_batch_interval
    if options.tap_readers > 0:
        if not target.api_url:
            raise SystemExit("read users need the API's URL (--api-url, or the target's api_url)")
        ReaderUser.host = target.api_url
        ReaderUser.devices = options.tap_devices
        ReaderUser.seed = options.tap_seed
        ReaderUser.mix = ReadMix(options.tap_read_mix)
        ReaderUser.rate_per_user = options.tap_read_rate / options.tap_readers
        # Mixed campaigns: the readers are a fixed count, the shape drives the writers.
        ReaderUser.fixed_count = 0 if options.tap_read_only else options.tap_readers


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        return
    state = CampaignState.of(environment)
    if state.listener is not None:
        state.listener.start()
    if state.stream_listener is not None:
        state.stream_listener.start()


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    state = CampaignState.current
    if state is not None and state.listener is not None:
        state.listener.stop()
        log.info("e2e listener: followed %d records", state.listener.followed)
    if state is not None and state.stream_listener is not None:
        state.stream_listener.stop()
        counts = state.stream_listener.counts
        log.info("anomaly stream: %d events, %d failures", counts.events, counts.failures)
    options = environment.parsed_options
    if state is not None and options.tap_readers > 0 and options.csv_prefix:
        worker = f".{state.worker_index}" if isinstance(environment.runner, WorkerRunner) else ""
        path = options.csv_prefix + SOURCES_SUFFIX.format(worker=worker)
        document = sources_document(ReaderUser.answered, len(ReaderUser.devices_seen))
        with open(path, "w") as handle:
            json.dump(document, handle)


class CampaignShape(LoadTestShape):
    """The shape ``--tap-shape`` names (a single shape class: Locust uses the first
    it finds in a locustfile, so the choice is made here, not by class)."""

    def tick(self) -> Tick:
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        assert options is not None
        plan = shape_plan(options)
        tick = plan.tick(self.get_run_time())
        if tick is None or options.tap_readers <= 0 or options.tap_read_only:
            return tick  # read-only: the shape drives the readers themselves
        users, spawn_rate = tick
        # Mixed: the fixed-count readers for the traffic time, the shape's writers on top.
        return (users + options.tap_readers if users else 0), max(spawn_rate, options.tap_readers)


class FleetUser(KinesisUser):
    """A KinesisUser sending its slice of the campaign's fleet and sampling the
    accepted records for the end-to-end listener."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.state = CampaignState.of(environment)
        self._rng = random.Random()
        self._picked: dict[bytes, SimRecord] = {}

    def slices(self) -> SliceAllocator:
        return self.state.slices

    def on_start(self) -> None:
        super().on_start()
        # Seeded per slot: the same campaign follows the same records.
        self._rng.seed(self.state.options.tap_seed * 1_000_003 + (self.slot or 0))

    def before_send(self, records: list[SimRecord]) -> None:
        if self.state.listener is None:
            return
        sample, rand = self.state.sample, self._rng.random
        # Poison is dead-lettered and anomalies may be out of range: follow only
        # readings the processor stores.
        self._picked = {
            r.data: r for r in records if r.poison is None and r.anomaly is None and rand() < sample
        }

    def after_send(self, outcome: PutOutcome[SimRecord]) -> None:
        picked = self._picked
        listener = self.state.listener
        if not picked or listener is None:
            return
        for record, _shard in outcome.accepted:
            if picked.pop(record.data, None) is not None:
                listener.follow(record.partition_key, record.seq, record.ts_ms)
