"""Throughput of one processor process, beside the COPY limit and the naive baseline.

What is timed (``records_per_s``): pre-generated GetRecords-shaped batches
(:class:`~processor.core.model.KinesisRecord` with the bytes a sensor sent; 500
devices, about 1 % anomalous readings, 0.5 % poison, from :class:`simulator.fleet.Fleet`)
go through exactly what a :class:`~processor.shard_runner.ShardRunner` does per batch:
``process_records`` (decode, validate, dedupe, detect, loading unknown devices'
detector state from Redis), ``commit_batch`` (one transaction: fence on the lease,
COPY into staging, insert readings/anomalies/dead letters, checkpoint) under a real
lease, ``RedisCache.apply`` and the detector-state save. Kinesis itself is not in
the loop: its speed is the emulator's, not ours.

In the same run, each on a fresh database of its own and the same servers:

* ``copy_limit_records_per_s``: the already-built reading rows (``reading_rows``
  tuples) COPYed straight into ``tap.readings``, one transaction per batch: what
  the storage path can take at all. Nothing is validated, deduplicated or fenced.
* ``naive_records_per_s``: what a user would write first: per record, decode and
  validate, run the detectors, one autocommit ``INSERT`` and one Redis ``SET``.
  Run on a bounded slice of the records (it is slow by design).

Goal: ``ratio_vs_copy >= 0.5`` (validation, detection, de-duplication, fencing and
Redis together may cost at most half of what the storage path can take) and
``ratio_vs_naive >= 20`` (batching must beat the per-record writes a first version
would do by more than an order of magnitude).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from psycopg import sql

from bench.machine import LoadWindow
from bench.stack import BenchStack
from local_pipeline.services.postgres import PostgresServer
from processor.contract.environment import VARIABLES_BY_NAME
from processor.contract.record import DEFAULT_LIMITS, Reading, decode_reading
from processor.contract.storage import (
    DEAD_LETTERS_COPY_COLUMNS,
    DEAD_LETTERS_TABLE,
    READINGS_COPY_COLUMNS,
    READINGS_TABLE,
    redis_latest_key,
)
from processor.core.batch import committed_part, process_records, reading_rows
from processor.core.detection import DetectorBank
from processor.core.model import Anomaly, DeadLetter, KinesisRecord, ProcessedBatch
from processor.core.silence import SilenceTracker
from processor.redis_cache import RedisCache
from simulator.bench import measure_generation
from simulator.fleet import Fleet

SHARD_ID: Final = "shardId-000000000000"
DEVICES: Final = 500
#: Probability per reading that an anomaly scenario starts; scenarios last tens of
#: readings, so this gives about 1 % anomalous readings (measured: 0.001 -> 2.6 %).
ANOMALY_RATE: Final = 0.0004
POISON_RATE: Final = 0.005
#: GetRecords' record limit by default: the batch a worker gets while catching up.
DEFAULT_BATCH: Final = int(VARIABLES_BY_NAME["TAP_GET_RECORDS_LIMIT"].default or 1000)
#: Kinesis-like 56-digit sequence numbers (kinesalite's shape), increasing.
_SEQUENCE_BASE: Final = 49_600_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000


@dataclass(frozen=True, slots=True)
class ThroughputOptions:
    records: int = 60_000
    batch: int = DEFAULT_BATCH
    naive_records: int = 3_000
    repeat: int = 3
    profile_path: Path | None = None
    #: Measure on a PostgreSQL with fsync on (as RDS), not the fixture's fsync=off.
    durable: bool = True


def make_batches(
    records: int, batch: int, *, seed: int = 7, devices: int = DEVICES
) -> list[list[KinesisRecord]]:
    """``records`` fleet records as GetRecords batches of one shard.

    Event times start ``records / devices`` seconds (plus a minute) in the past so
    every reading passes the freshness checks; each record "arrives" 40 ms after
    its event, as a healthy producer's would."""
    span_s = records / devices + 60
    start = datetime.now(UTC) - timedelta(seconds=span_s)
    fleet = Fleet(devices, seed, anomaly_rate=ANOMALY_RATE, poison_rate=POISON_RATE, start=start)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    out: list[KinesisRecord] = []
    for i, sim in enumerate(fleet.generate(records)):
        arrival = epoch + timedelta(milliseconds=sim.ts_ms + 40)
        out.append(
            KinesisRecord(SHARD_ID, str(_SEQUENCE_BASE + i), sim.partition_key, sim.data, arrival)
        )
    return [out[i : i + batch] for i in range(0, len(out), batch)]


# -- the pipeline ---------------------------------------------------------------------


def pipeline_round(
    stack: BenchStack,
    pg: PostgresServer,
    batches: Sequence[list[KinesisRecord]],
    profile_path: Path | None,
    bank: DetectorBank | None = None,
) -> tuple[dict[str, Any], list[ProcessedBatch]]:
    """One round; ``bank`` is a fresh :class:`DetectorBank` unless given (the
    bank-cost benchmark, ``bench.bank_throughput``, passes the one it compares)."""
    secrets = stack.secrets(pg)
    settings = stack.settings(stack.fresh_database("pipeline", pg), pg)
    store = stack.store(settings, secrets)
    stack.services.redis.flush()
    cache = RedisCache(settings, secrets)
    try:
        if not cache.recover(store):
            raise RuntimeError("Redis did not answer: the cache would skip every batch")
        store.sync_shards([(SHARD_ID, (), None)])
        lease = store.try_acquire(SHARD_ID, "bench", 600.0)
        if lease is None:
            raise RuntimeError("could not take the benchmark shard's lease")
        if bank is None:
            bank = DetectorBank()
        detectors = bank  # bound for the closure below (mypy narrows a local, not ``bank``)
        silence = SilenceTracker()
        next_check = [time.monotonic()]
        registry_loaded = [False]  # the runner recalls evicted devices once it loaded

        def one(records: list[KinesisRecord]) -> ProcessedBatch:
            # What ShardRunner._run and ._commit do per batch, minus Kinesis and metrics.
            batch = process_records(
                records,
                detectors,
                DEFAULT_LIMITS,
                shard_id=SHARD_ID,
                state_loader=cache.load_detector_states,
            )
            if registry_loaded[0] and batch.readings:  # ShardRunner._recall_silence_entries
                unknown = silence.unknown(a.reading.device_id for a in batch.readings)
                if unknown:
                    silence.recall(cache.load_silence_entries(SHARD_ID, unknown))
            silence.observe_batch(batch.readings)  # the silence registry, as the runner
            if time.monotonic() >= next_check[0]:
                next_check[0] = time.monotonic() + 5.0
                registry_loaded[0] = True
                batch.anomalies.extend(silence.check())
            result = store.commit_batch(batch, lease, datetime.now(UTC))
            entries = silence.dirty_entries()
            committed = committed_part(
                batch,
                result.inserted_keys,
                result.inserted_sequence_numbers,
                result.stored_anomalies,
            )
            progress = silence.progress
            if cache.apply(
                committed,
                entries,
                silence_arrivals=silence.arrivals_ms(entries),
                silence_forget_before_ms=None
                if progress is None
                else round((progress - silence.config.forget_after_s) * 1000),
            ):
                silence.clear_dirty(entries)
            states = detectors.dirty_states()
            if states and cache.save_detector_states(states):
                detectors.clear_dirty(states)
            return batch

        # One warm-up batch: staging tables, prepared connections, first Redis MGET.
        processed = [one(batches[0])]
        profiler = _start_profiler() if profile_path is not None else None
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for records in batches[1:]:
            processed.append(one(records))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if profiler is not None and profile_path is not None:
            profiler.stop()
            profile_path.write_text(profiler.output_text(unicode=False, color=False))
        if cache.stale:
            raise RuntimeError("Redis failed during the run: the figure would omit Redis")
        timed = sum(len(b) for b in batches[1:])
        readings = sum(len(b.readings) for b in processed[1:])
        return {
            "records": timed,
            "readings": readings,
            "dead_letters": sum(len(b.dead_letters) for b in processed[1:]),
            "anomalies": sum(len(b.anomalies) for b in processed[1:]),
            "seconds": wall,
            "records_per_s": timed / wall,
            "client_cpu_us_per_record": cpu / timed * 1e6,
        }, processed
    finally:
        cache.close()
        store.close()


def _start_profiler() -> Any:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    return profiler


# -- the COPY limit -------------------------------------------------------------------


def _copy_limit(
    stack: BenchStack, pg: PostgresServer, processed: Sequence[ProcessedBatch]
) -> dict[str, Any]:
    secrets = stack.secrets(pg)
    settings = stack.settings(stack.fresh_database("copy", pg), pg)
    stack.store(settings, secrets).close()  # migrations and partitions only
    when = datetime.now(UTC)
    # Built before the clock starts: the limit is the storage path, not our encoder.
    row_batches = [reading_rows(b, when) for b in processed[1:]]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*READINGS_TABLE.split(".")),
        sql.SQL(", ").join(sql.Identifier(c) for c in READINGS_COPY_COLUMNS),
    )
    with stack.connect(settings, secrets) as conn:
        started = time.perf_counter()
        for rows in row_batches:
            with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        seconds = time.perf_counter() - started
    rows_total = sum(len(r) for r in row_batches)
    return {"rows": rows_total, "seconds": seconds, "records_per_s": rows_total / seconds}


# -- the naive baseline ---------------------------------------------------------------


def _naive(
    stack: BenchStack, pg: PostgresServer, records: Sequence[KinesisRecord], budget_s: float
) -> dict[str, Any]:
    secrets = stack.secrets(pg)
    settings = stack.settings(stack.fresh_database("naive", pg), pg)
    stack.store(settings, secrets).close()
    stack.services.redis.flush()
    insert_reading = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(*READINGS_TABLE.split(".")),
        sql.SQL(", ").join(sql.Identifier(c) for c in READINGS_COPY_COLUMNS),
        sql.SQL(", ").join(sql.Placeholder() * len(READINGS_COPY_COLUMNS)),
    )
    insert_dead = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(*DEAD_LETTERS_TABLE.split(".")),
        sql.SQL(", ").join(sql.Identifier(c) for c in DEAD_LETTERS_COPY_COLUMNS),
        sql.SQL(", ").join(sql.Placeholder() * len(DEAD_LETTERS_COPY_COLUMNS)),
    )
    bank = DetectorBank()
    anomalies: list[Anomaly] = []
    redis = stack.services.redis.client()
    done = 0
    with stack.connect(settings, secrets) as conn:  # autocommit: one commit per INSERT
        started = time.perf_counter()
        for record in records:
            result = decode_reading(record.data, arrival=record.arrival)
            now = datetime.now(UTC)
            if isinstance(result, Reading):
                bank.observe_into(result, anomalies, arrival=record.arrival, shard_id=SHARD_ID)
                conn.execute(
                    insert_reading,
                    (
                        result.device_id,
                        result.seq,
                        result.facility,
                        result.line,
                        result.sensor_type.value,
                        result.value,
                        None if result.status is None else result.status.value,
                        result.unit,
                        result.ts,
                        record.arrival,
                        now,
                        record.shard_id,
                        record.sequence_number,
                        result.schema_version,
                        result.series,
                    ),
                )
                redis.set(redis_latest_key(result.device_id), record.data)
            else:
                dead = DeadLetter(
                    record.shard_id,
                    record.sequence_number,
                    record.partition_key,
                    record.data,
                    result.reason,
                    result.detail,
                    record.arrival,
                )
                conn.execute(
                    insert_dead,
                    (
                        dead.shard_id,
                        dead.sequence_number,
                        dead.partition_key,
                        dead.data,
                        dead.reason.value,
                        dead.detail,
                        dead.arrival,
                        now,
                    ),
                )
            done += 1
            if time.perf_counter() - started > budget_s:
                break
        seconds = time.perf_counter() - started
    # Its string keys would collide with the cache's hashes in later benchmarks.
    redis.flushdb()
    redis.close()
    return {"records": done, "seconds": seconds, "records_per_s": done / seconds}


# -- the benchmark --------------------------------------------------------------------


def run(stack: BenchStack, options: ThroughputOptions) -> dict[str, Any]:
    """Rounds of (pipeline, COPY limit) on fresh databases, then the naive baseline;
    the medians of the rounds are the figures (the machine is shared and noisy)."""
    batches = make_batches(options.records, options.batch)
    pg = stack.durable_postgres() if options.durable else stack.postgres
    pipeline_runs: list[dict[str, Any]] = []
    copy_runs: list[dict[str, Any]] = []
    processed: list[ProcessedBatch] = []
    with LoadWindow() as load:
        if options.profile_path is not None:
            # A round of its own: the profiler's overhead must not reach the figures.
            pipeline_round(stack, pg, batches, options.profile_path)
        for _ in range(max(1, options.repeat)):
            result, processed = pipeline_round(stack, pg, batches, None)
            pipeline_runs.append(result)
            copy_runs.append(_copy_limit(stack, pg, processed))
        flat = [r for b in batches for r in b]
        naive = _naive(stack, pg, flat[: options.naive_records], budget_s=30.0)
    # How fast the simulator makes such records (its own benchmark, reused): the
    # pre-generation is not timed above, but a load test needs it to be far faster.
    generation = measure_generation(
        DEVICES,
        min(options.records, 100_000),
        anomaly_rate=ANOMALY_RATE,
        poison_rate=POISON_RATE,
    )
    rate = statistics.median(r["records_per_s"] for r in pipeline_runs)
    copy_rate = statistics.median(r["records_per_s"] for r in copy_runs)
    last = pipeline_runs[-1]
    return {
        "records_per_s": rate,
        "copy_limit_records_per_s": copy_rate,
        "naive_records_per_s": naive["records_per_s"],
        "ratio_vs_copy": rate / copy_rate,
        "ratio_vs_naive": rate / naive["records_per_s"],
        "goal_ratio_vs_copy": 0.5,
        "goal_ratio_vs_naive": 20.0,
        "batch_records": options.batch,
        "postgres_durable": stack.is_durable(pg),
        "devices": DEVICES,
        "records_per_round": last["records"],
        "readings_per_round": last["readings"],
        "anomalies_per_round": last["anomalies"],
        "dead_letters_per_round": last["dead_letters"],
        "client_cpu_us_per_record": statistics.median(
            r["client_cpu_us_per_record"] for r in pipeline_runs
        ),
        "rounds": [
            {"pipeline_records_per_s": p["records_per_s"], "copy_records_per_s": c["records_per_s"]}
            for p, c in zip(pipeline_runs, copy_runs, strict=True)
        ],
        "naive_records": naive["records"],
        "generator_records_per_cpu_s": generation.records_per_cpu_s,
        "profile": str(options.profile_path) if options.profile_path else None,
        **load.as_json(),
    }
