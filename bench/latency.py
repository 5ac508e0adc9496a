"""End-to-end latency on the local stack: event time to PostgreSQL commit and to Redis.

Set-up: kinesalite (4 shards), moto (secrets), the local PostgreSQL and Redis over
TLS, and processor processes (``python -m processor``, the task's command) started
by :class:`local_pipeline.verify.ProcessorCluster` with the synthesized task
environment made local (the default 200 ms poll interval and lease of the task).

Sender *processes* (so their CPU does not steal this process's GIL from the Redis
observer; one per 1,500 records/s, each a ``Fleet.slice`` of the same fleet) run
:class:`simulator.fleet.Fleet` in real time: every 50 ms each takes the readings
due (``Fleet.tick``) and PutRecords them. Event time is the reading's
``ts``, so the latency includes the sender's tick (on average 25 ms) as a real
sensor gateway's batching would.

How each end is measured:

* **PostgreSQL**: the commit time of the transaction that stored the row,
  ``pg_xact_commit_timestamp(xmin)`` (``track_commit_timestamp`` is switched on for
  the run), minus ``event_ts``. Exact for every reading. ``processed_at`` would be
  wrong: the processor stamps it before its transaction starts.
* **Redis**: the cache writes no written-at field (the latest hash carries the
  event ``ts`` and the Kinesis ``arrival`` only), so an observer polls the latest
  hash (``HMGET seq ts``) of a sample of up to 200 devices every 20 ms and records,
  for every new ``seq`` it sees, the time it saw it minus the reading's ``ts``.
  That is the latency a dashboard reader sees, with up to 20 ms of polling error
  (10 ms on average, included). A reading overwritten before a poll is not seen;
  at 1 Hz per device that does not happen.
* ``arrival`` (Kinesis ``ApproximateArrivalTimestamp``) minus event time, and
  commit minus arrival, are reported too: the producer's share and the processors'.

A step *breaks* when the processors do not keep up (the stored readings lag the
sent ones when sending stops by more than one second's worth) or the PostgreSQL
p99 exceeds the 1 s goal. The full run measures 1,000 and 5,000 records/s, then
looks for the break: higher rates while both held, else the rates in between.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from psycopg import sql

from bench.machine import LoadWindow
from bench.stack import BenchStack
from processor.contract.environment import VARIABLES_BY_NAME
from processor.contract.storage import (
    READINGS_TABLE,
    LatestField,
    redis_latest_key,
    split_qualified,
)

#: The issue's goal: p99 event -> PostgreSQL at 1,000 records/s with 200 ms polling.
P99_GOAL_S: Final = 1.0
SEND_TICK_S: Final = 0.05
REDIS_POLL_S: Final = 0.02
REDIS_SAMPLE_DEVICES: Final = 200
SHARDS: Final = 4
#: A Python sender (Fleet + boto3 PutRecords) did about 2,000 records/s on the
#: loaded machine; a step gets one sender process per this many records/s.
RECORDS_PER_SENDER: Final = 1_500


@dataclass(frozen=True, slots=True)
class Step:
    """One load level: ``devices`` sensors reporting ``rate`` times a second."""

    devices: int
    rate: float = 1.0

    @property
    def records_per_s(self) -> float:
        return self.devices * self.rate


@dataclass(frozen=True, slots=True)
class LatencyOptions:
    #: Always measured: the issue's two figures (1,000 devices x 1 Hz; 5,000 records/s).
    steps: tuple[Step, ...] = (Step(1_000), Step(5_000))
    #: Then, to find where it breaks: upwards while the last step held, or between
    #: the last step that held and the first that broke.
    steps_up: tuple[Step, ...] = (Step(8_000), Step(12_000))
    steps_between: tuple[Step, ...] = (Step(2_000), Step(3_000), Step(4_000))
    seconds: float = 30.0
    #: Readings of the first seconds are left out: processors warm up, detectors load.
    warmup_s: float = 5.0
    processors: int = 1


class _RedisObserver(threading.Thread):
    """Polls the latest hash of sampled devices; records (seen - ts) per new seq."""

    def __init__(self, client: Any, devices: list[str]) -> None:
        super().__init__(name="redis-observer", daemon=True)
        self.client = client
        self.devices = devices
        self.stop = threading.Event()
        #: (event epoch s, seen - event in s) per new (device, seq) seen
        self.seen: list[tuple[float, float]] = []

    def run(self) -> None:
        last: dict[str, bytes | None] = {}
        keys = [redis_latest_key(d) for d in self.devices]
        while not self.stop.is_set():
            started = time.monotonic()
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(key, LatestField.SEQ, LatestField.TS)
            answers = pipe.execute()
            seen_at = time.time()
            for key, (seq, ts) in zip(keys, answers, strict=True):
                if seq is None or last.get(key) == seq:
                    continue
                last[key] = seq
                event = datetime.fromisoformat(ts.decode()).timestamp()
                self.seen.append((event, seen_at - event))
            self.stop.wait(max(0.0, REDIS_POLL_S - (time.monotonic() - started)))


def _send(
    environment: dict[str, str],
    stream: str,
    step: Step,
    start_ms: int,
    part: tuple[int, int],
    seconds: float,
    out: multiprocessing.connection.Connection,
) -> None:
    """A sender process: its slice ``part = (index, count)`` of the fleet in real
    time for ``seconds``; reports counts."""
    import os

    os.environ.update(environment)
    from local_pipeline.services.aws_emulator import emulator_client
    from local_pipeline.verify import fleet_records, put_records
    from simulator.fleet import Fleet

    client = emulator_client("kinesis", environment["AWS_ENDPOINT_URL_KINESIS"])
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    fleet = Fleet(step.devices, 7, rate=step.rate, start=start).slice(*part)
    sent, readings, late_ticks = 0, 0, 0
    # Wait for the common start, so the slices' clocks agree.
    time.sleep(max(0.0, start_ms / 1000 - time.time()))
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        tick = time.monotonic()
        records = fleet_records(fleet.tick(datetime.now(UTC)))
        if records:
            result = put_records(client, stream, records)
            sent += result.records
            readings += len(result.keys)
        spent = time.monotonic() - tick
        if spent > SEND_TICK_S:
            late_ticks += 1
        time.sleep(max(0.0, SEND_TICK_S - spent))
    out.send(
        {
            "records": sent,
            "readings": readings,
            "seconds": time.monotonic() - started,
            "late_ticks": late_ticks,
        }
    )
    out.close()


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "samples": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "samples": len(values)}


# The warm-up is counted from the first event the sender produced.
_READINGS: Final = sql.Identifier(*split_qualified(READINGS_TABLE))
_PG_LATENCY_SQL: Final = sql.SQL(
    """
SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - event_ts),
       extract(epoch FROM arrival_ts - event_ts),
       extract(epoch FROM pg_xact_commit_timestamp(xmin) - arrival_ts)
FROM {readings}
WHERE event_ts >= (SELECT min(event_ts) FROM {readings}) + make_interval(secs => %s)
"""
).format(readings=_READINGS)
_FIRST_EVENT_SQL: Final = sql.SQL("SELECT extract(epoch FROM min(event_ts)) FROM {}").format(
    _READINGS
)


def _run_step(
    stack: BenchStack, step: Step, options: LatencyOptions, log_dir: Path
) -> dict[str, Any]:
    from local_pipeline.verify import wait_until

    lease_s = float(VARIABLES_BY_NAME["TAP_LEASE_DURATION_S"].default or 10)
    stack.services.redis.flush()
    cluster = stack.cluster(SHARDS, "latency", log_dir, lease_duration_s=lease_s)
    redis = stack.services.redis.client()
    try:
        names = [f"w{i + 1}" for i in range(options.processors)]
        for name in names:
            cluster.start(name)
        per = SHARDS // len(names)
        expected = [per + (1 if i < SHARDS % len(names) else 0) for i in range(len(names))]
        cluster.wait_balanced(names, expected, timeout=60)

        from simulator.fleet import Fleet

        ids = Fleet(step.devices, 7, rate=step.rate).device_ids
        sample = ids[:: max(1, len(ids) // REDIS_SAMPLE_DEVICES)][:REDIS_SAMPLE_DEVICES]
        observer = _RedisObserver(redis, sample)
        observer.start()

        context = multiprocessing.get_context("spawn")
        count = max(1, math.ceil(step.records_per_s / RECORDS_PER_SENDER))
        # Start a little ahead: spawned interpreters take a moment to import.
        start_ms = int((time.time() + 3.0) * 1000)
        pipes, senders = [], []
        for index in range(count):
            receive, send = context.Pipe(duplex=False)
            args = (
                stack.services.client_environment(),
                cluster.stream,
                step,
                start_ms,
                (index, count),
                options.seconds,
                send,
            )
            pipes.append(receive)
            senders.append(context.Process(target=_send, args=args, daemon=True))
        with LoadWindow() as load:
            for sender in senders:
                sender.start()
            reports = [r.recv() if r.poll(options.seconds + 120) else {} for r in pipes]
            for sender in senders:
                sender.join(timeout=10)
            stopped = time.time()
            sent: dict[str, Any] = {
                key: sum(r.get(key, 0) for r in reports)
                for key in ("records", "readings", "late_ticks")
            }
            sent["seconds"] = max((r.get("seconds", 0.0) for r in reports), default=0.0)
            # Drained: every reading sent is stored (or we give up after 60 s).
            wait_until(
                lambda: cluster.view.count_readings() >= sent.get("readings", 0),
                timeout=60,
                interval=0.25,
            )
            backlog_s = time.time() - stopped
            time.sleep(0.5)  # the last Redis applies follow their commits
            observer.stop.set()
            observer.join(timeout=5)

        with stack.postgres.admin_connection(cluster.database) as conn:
            rows = conn.execute(_PG_LATENCY_SQL, (options.warmup_s,)).fetchall()
            first_row = conn.execute(_FIRST_EVENT_SQL).fetchone()
            stored = cluster.view.count_readings()
        commit = [float(r[0]) for r in rows if r[0] is not None]
        arrival = [float(r[1]) for r in rows if r[1] is not None]
        in_pipeline = [float(r[2]) for r in rows if r[2] is not None]
        pg = _percentiles(commit)
        cutoff = float(first_row[0]) + options.warmup_s if first_row and first_row[0] else 0.0
        redis_latencies = [lat for event, lat in observer.seen if event >= cutoff]
        result = {
            "devices": step.devices,
            "rate_per_device_hz": step.rate,
            "offered_records_per_s": step.records_per_s,
            "sent_records_per_s": sent.get("records", 0) / max(sent.get("seconds", 1), 1e-9),
            "sent_readings": sent.get("readings", 0),
            "stored_readings": stored,
            "senders": count,
            "sender_late_ticks": sent.get("late_ticks", 0),
            "drain_after_send_s": backlog_s,
            "event_to_postgres": pg,
            "event_to_redis": _percentiles(redis_latencies),
            "event_to_kinesis_arrival": _percentiles(arrival),
            # The processors' share: Kinesis arrival to commit.
            "kinesis_arrival_to_postgres": _percentiles(in_pipeline),
            "processors": options.processors,
            **load.as_json(),
        }
        # Broken: not kept up (more than a second's worth left when sending stopped,
        # or readings missing), or the p99 goal missed.
        result["broken"] = bool(
            stored < sent.get("readings", 0) or backlog_s > 1.5 or pg["p99_ms"] > P99_GOAL_S * 1000
        )
        return result
    finally:
        redis.close()
        cluster.stop_all()


def run(stack: BenchStack, options: LatencyOptions, log_dir: Path) -> dict[str, Any]:
    stack.enable_commit_timestamps()
    steps = [
        _run_step(stack, step, options, log_dir / f"step{i + 1}")
        for i, step in enumerate(options.steps)
    ]
    held = [st["offered_records_per_s"] for st in steps if not st["broken"]]
    broken = [st["offered_records_per_s"] for st in steps if st["broken"]]
    if broken:
        low, high = max(held, default=0.0), min(broken)
        search = [st for st in options.steps_between if low < st.records_per_s < high]
    else:
        search = list(options.steps_up)
    for step in search:
        steps.append(_run_step(stack, step, options, log_dir / f"step{len(steps) + 1}"))
        if steps[-1]["broken"]:
            break
    first = steps[0]
    out: dict[str, Any] = {
        "p50_ms": first["event_to_postgres"]["p50_ms"],
        "p95_ms": first["event_to_postgres"]["p95_ms"],
        "p99_ms": first["event_to_postgres"]["p99_ms"],
        "redis_p50_ms": first["event_to_redis"]["p50_ms"],
        "redis_p95_ms": first["event_to_redis"]["p95_ms"],
        "redis_p99_ms": first["event_to_redis"]["p99_ms"],
        "goal_p99_ms": P99_GOAL_S * 1000,
        "poll_interval_ms": int(VARIABLES_BY_NAME["TAP_POLL_INTERVAL_MS"].default or 200),
        "seconds_per_step": options.seconds,
        "steps": steps,
    }
    broken = [s["offered_records_per_s"] for s in steps if s["broken"]]
    held = [s["offered_records_per_s"] for s in steps if not s["broken"]]
    # Held below the lowest rate that broke (a noisy step above it does not count).
    below = [r for r in held if not broken or r < min(broken)]
    out["max_sustained_records_per_s"] = max(below) if below else 0.0
    out["breaks_at_records_per_s"] = min(broken) if broken else None
    out["median_p99_ms"] = statistics.median(s["event_to_postgres"]["p99_ms"] for s in steps)
    return out
