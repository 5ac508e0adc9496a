"""Checks that the pipeline lost nothing and duplicated nothing, and the processes
that make it run: shared by the processor's integration tests, the e2e suite and
the demo.

The contract every scenario asserts: the set of ``(device_id, seq)`` sent equals the
set stored in ``tap.readings``, no key is stored twice, every poison record is in
``tap.dead_letters`` with its expected reason, and Redis's latest reading of each
device equals PostgreSQL's.

Typical use::

    sent = put_records(kinesis, stream, fleet_records(fleet.generate(2000)))
    view = StoreView(lambda: server.admin_connection(database))
    assert wait_until(lambda: view.stored_keys() >= sent.keys, timeout=30)
    report = compare(sent.keys, view)
    assert report.ok, report.summary()

    with ProcessorProcess.start(env, log_dir / "w1.log", name="w1") as w1:
        w1.wait_for_event("shard_acquired", timeout=10)
        w1.terminate()                           # SIGTERM
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from psycopg import sql

from local_pipeline.processes import ProcessorProcess
from processor.contract.record import Reading, SensorType, encode_reading
from processor.contract.storage import (
    READINGS_TABLE,
    SHARD_LEASES_TABLE,
    LatestField,
    redis_latest_key,
)
from processor.core.model import AcceptedReading
from processor.postgres import reads
from processor.postgres.identifiers import table_identifier
from simulator.backoff import Backoff
from simulator.kinesis_producer import KinesisProducer

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Record:
    """A record to send with what it is: a reading key, or a poison record's
    expected reject reason."""

    data: bytes
    partition_key: str
    key: Key | None = None
    expected_reason: str | None = None


@dataclass(slots=True)
class SendResult:
    """What was sent: reading keys (each once, whatever the producer repeated), the
    poison records' expected reasons, and the Kinesis routing."""

    keys: set[Key] = field(default_factory=set)
    poison_reasons: list[str] = field(default_factory=list)
    records: int = 0
    #: shard id -> number of records routed to it
    shards: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def merge(self, other: SendResult) -> SendResult:
        self.keys |= other.keys
        self.poison_reasons += other.poison_reasons
        self.records += other.records
        for shard, n in other.shards.items():
            self.shards[shard] = self.shards.get(shard, 0) + n
        self.seconds += other.seconds
        return self


# --- generating readings ------------------------------------------------------------


def make_readings(
    devices: int,
    per_device: int,
    *,
    start: datetime | None = None,
    first_seq: int = 0,
    prefix: str = "dev",
    interval: timedelta = timedelta(milliseconds=100),
) -> list[Record]:
    """Plain, anomaly-free temperature readings, device-interleaved in time order:
    ``devices * per_device`` records whose keys are ``(f"{prefix}-{i:04d}", seq)``."""
    start = start or datetime.now(UTC)
    out: list[Record] = []
    for k in range(per_device):
        seq = first_seq + k
        for i in range(devices):
            device_id = f"{prefix}-{i:04d}"
            reading = Reading(
                device_id=device_id,
                facility="fac1",
                line=f"l{i % 4:02d}",
                sensor_type=SensorType.TEMPERATURE,
                unit="C",
                ts=start + interval * seq,
                seq=seq,
                schema_version=1,
                # A smooth, bounded wave: no limit, spike or stuck anomaly fires.
                value=round(65.0 + 3.0 * ((seq + i) % 20) / 20.0, 3),
            )
            out.append(Record(encode_reading(reading), device_id, (device_id, seq)))
    return out


def fleet_records(records: Iterable[Any]) -> list[Record]:
    """The simulator's ``SimRecord`` objects as :class:`Record` (poison included)."""
    from simulator.poison import EXPECTED_REASON, PoisonKind

    out = []
    for r in records:
        if r.poison is not None:
            reason = EXPECTED_REASON[PoisonKind(r.poison)].value
            out.append(Record(r.data, r.partition_key, None, reason))
        else:
            out.append(Record(r.data, r.partition_key, (r.partition_key, r.seq)))
    return out


# --- sending --------------------------------------------------------------------------


#: The harness re-sends refused entries longer than a simulator run would: a test
#: wants every record in, and the emulators throttle in bursts.
PUT_BACKOFF: Final = Backoff(max_attempts=20, base_s=0.05, cap_s=1.0)


def put_records(
    client: Any,
    stream: str,
    records: Sequence[Record],
    *,
    max_attempts: int = PUT_BACKOFF.max_attempts,
) -> SendResult:
    """Send ``records`` with the simulator's producer (calls of 500, re-sending the
    entries Kinesis refused, in order); raises when some are still refused after
    ``max_attempts``. A refused entry is not stored, so re-sending it is not a
    duplicate; a network error after Kinesis stored the call would be (as with real
    producers), which the processor absorbs."""
    started = time.monotonic()
    backoff = dataclasses.replace(PUT_BACKOFF, max_attempts=max_attempts)
    outcome = KinesisProducer(stream, client, backoff=backoff).put(records)
    if outcome.failed:
        codes = sorted({code for _, code in outcome.failed})
        raise RuntimeError(f"PutRecords kept refusing {len(outcome.failed)} records ({codes})")
    result = SendResult()
    for record, shard in outcome.accepted:
        result.shards[shard] = result.shards.get(shard, 0) + 1
        result.records += 1
        if record.key is not None:
            result.keys.add(record.key)
        if record.expected_reason is not None:
            result.poison_reasons.append(record.expected_reason)
    result.seconds = time.monotonic() - started
    return result


def send_paced(
    client: Any,
    stream: str,
    records: Sequence[Record],
    *,
    seconds: float,
    chunk: int = 100,
) -> SendResult:
    """Send ``records`` spread over about ``seconds`` (so a scenario can act mid-stream)."""
    result = SendResult()
    chunks = max(1, (len(records) + chunk - 1) // chunk)
    pause = seconds / chunks
    for offset in range(0, len(records), chunk):
        result.merge(put_records(client, stream, records[offset : offset + chunk]))
        time.sleep(pause)
    return result


# --- reading back ---------------------------------------------------------------------


_LEASES: Final = table_identifier(SHARD_LEASES_TABLE)


class StoreView:
    """Read-only views of one processor database (over any connection that can read
    schema ``tap``; tests use the superuser connection of their database)."""

    def __init__(self, conn_factory: Callable[[], Any]) -> None:
        self._factory = conn_factory
        self._conn: Any = None

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._factory()
        return self._conn

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        try:
            return fn(self._connection())
        except Exception:
            # One reconnect (the server may have been restarted by the scenario).
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
            return fn(self._connection())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def schema_ready(self) -> bool:
        return bool(
            self._run(
                lambda c: c.execute("SELECT to_regclass(%s)", (READINGS_TABLE,)).fetchone()[0]
            )
        )

    def stored_keys(self) -> set[Key]:
        if not self.schema_ready():
            return set()
        return set(self._run(reads.stored_keys))

    def duplicate_keys(self) -> list[tuple[str, int, int]]:
        return list(self._run(reads.duplicate_keys))

    def count_readings(self) -> int:
        return int(self._run(reads.count_readings)) if self.schema_ready() else 0

    def dead_letters_by_reason(self) -> dict[str, int]:
        if not self.schema_ready():
            return {}
        return dict(self._run(reads.dead_letters_by_reason))

    def latest_per_device(self) -> dict[str, AcceptedReading]:
        return dict(self._run(reads.latest_per_device))

    def leases(self) -> list[tuple[str, str | None, int, bool, str | None]]:
        """(shard_id, owner, fencing, finished, checkpoint) of every lease row."""
        return list(
            self._run(
                lambda c: c.execute(
                    sql.SQL(
                        "SELECT shard_id, owner, fencing, finished, checkpoint"
                        " FROM {} ORDER BY shard_id"
                    ).format(_LEASES)
                ).fetchall()
            )
        )

    def owners(self) -> dict[str, str | None]:
        """shard -> owner of the leases currently held (by the database clock)."""
        return dict(
            self._run(
                lambda c: c.execute(
                    sql.SQL(
                        "SELECT shard_id, owner FROM {}"
                        " WHERE owner IS NOT NULL AND expires_at > now() ORDER BY shard_id"
                    ).format(_LEASES)
                ).fetchall()
            )
        )

    def shard_processing_windows(self) -> dict[str, tuple[datetime, datetime]]:
        """shard -> (first, last) processed_at of its readings (children-after-parents)."""
        rows = self._run(
            lambda c: c.execute(
                sql.SQL(
                    "SELECT shard_id, min(processed_at), max(processed_at)"
                    " FROM {} GROUP BY shard_id"
                ).format(table_identifier(READINGS_TABLE))
            ).fetchall()
        )
        return {shard: (first, last) for shard, first, last in rows}


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed (then one last try)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(interval)
    try:
        return bool(predicate())
    except Exception:
        return False


def wait_until_stored(view: StoreView, keys: set[Key], *, timeout: float) -> set[Key]:
    """Wait until every key is stored (or the timeout); returns the keys stored."""
    stored: set[Key] = set()

    def done() -> bool:
        nonlocal stored
        stored = view.stored_keys()
        return keys <= stored

    wait_until(done, timeout=timeout, interval=0.3)
    return stored


@dataclass(frozen=True, slots=True)
class Comparison:
    """Sent versus stored."""

    sent: int
    stored: int
    lost: frozenset[Key]
    unexpected: frozenset[Key]
    duplicated: tuple[tuple[str, int, int], ...]

    @property
    def ok(self) -> bool:
        return not self.lost and not self.unexpected and not self.duplicated

    def summary(self) -> str:
        def few(items: Iterable[Any]) -> str:
            listed = sorted(items)[:5]
            return ", ".join(map(str, listed)) + (" ..." if len(listed) == 5 else "")

        return (
            f"sent {self.sent}, stored {self.stored}, lost {len(self.lost)} [{few(self.lost)}], "
            f"unexpected {len(self.unexpected)} [{few(self.unexpected)}], "
            f"duplicated {len(self.duplicated)} [{few(self.duplicated)}]"
        )


def compare(sent: set[Key], view: StoreView) -> Comparison:
    stored = view.stored_keys()
    return Comparison(
        sent=len(sent),
        stored=len(stored),
        lost=frozenset(sent - stored),
        unexpected=frozenset(stored - sent),
        duplicated=tuple(view.duplicate_keys()),
    )


def redis_latest_mismatches(redis_client: Any, latest: Mapping[str, AcceptedReading]) -> list[str]:
    """Devices whose Redis latest hash differs from PostgreSQL's latest (seq and ts)."""
    problems = []
    for device_id, accepted in sorted(latest.items()):
        cached = redis_client.hgetall(redis_latest_key(device_id))
        seq = cached.get(LatestField.SEQ.encode()) if cached else None
        if seq is None:
            problems.append(
                f"{device_id}: missing in Redis (PostgreSQL seq {accepted.reading.seq})"
            )
            continue
        if int(seq) != accepted.reading.seq:
            problems.append(
                f"{device_id}: Redis seq {int(seq)} != PostgreSQL {accepted.reading.seq}"
            )
    return problems


# --- processor processes (the class lives in local_pipeline.processes) -------------


def event_time(entry: Mapping[str, Any]) -> float:
    """Epoch seconds of a JSON log line's ``ts``."""
    return datetime.fromisoformat(str(entry["ts"])).timestamp()


def _moved_read_at(
    survivor: ProcessorProcess, moved: Sequence[str], since: float, timeout: float
) -> float | None:
    """Epoch time at which ``survivor`` had read every shard of ``moved`` (its first
    fetch of each after ``since``), or None if it did not within ``timeout``."""
    reads = survivor.wait_for_event(
        "shard_first_fetch",
        timeout=timeout,
        where=lambda e: e.get("shard_id") in moved and event_time(e) >= since,
        count=len(moved),
    )
    first: dict[str, float] = {}
    for entry in reads:
        shard = entry["shard_id"]
        first[shard] = min(first.get(shard, float("inf")), event_time(entry))
    if set(first) < set(moved):
        return None
    return max(first.values())


def measure_sigterm_handoff(
    leaving: ProcessorProcess, survivor: ProcessorProcess, moved: Sequence[str], *, timeout: float
) -> float | None:
    """SIGTERM ``leaving``; seconds until ``survivor`` read every shard of ``moved``."""
    sent_at = leaving.terminate()
    read_at = _moved_read_at(survivor, moved, sent_at, timeout)
    leaving.wait(timeout=timeout)
    return None if read_at is None else read_at - sent_at


def measure_kill_takeover(
    victim: ProcessorProcess, survivor: ProcessorProcess, moved: Sequence[str], *, timeout: float
) -> float | None:
    """``kill -9`` ``victim``; seconds until ``survivor`` read every shard of ``moved``."""
    killed_at = time.time()
    victim.kill()
    read_at = _moved_read_at(survivor, moved, killed_at, timeout)
    return None if read_at is None else read_at - killed_at


@dataclass
class ProcessorCluster:
    """The local pipeline's processor processes: the one class that starts, stops,
    kills and restarts them, always with the synthesized task environment made local
    (:func:`local_pipeline.stack_resources.processor_environment`).

    On one stream and one database of a ``LocalServices``: the stack's own
    (:class:`local_pipeline.pipeline.LocalPipeline`, ``tap local``) or a test's
    (``make_cluster``, ``tap bench``, ``tap load --target fresh``). ``defaults`` and
    the ``overrides`` of :meth:`env`/:meth:`start` are a caller's explicit
    deviations from the task environment, named by :class:`ProcessorSettings`
    attribute (``lease_duration_s=3``) and validated; everything else is what the
    Fargate task gets. ``stack`` is the local stack from the one synth per source
    tree (read once per process). ``view`` reads the database back.
    """

    services: Any  # local_pipeline.services.local_stack.LocalServices
    stream: str
    database: str
    #: The owner's secret (migrates); the processors get the application role's.
    db_secret_arn: str
    redis_secret_arn: str
    log_dir: Path
    defaults: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, ProcessorProcess] = field(default_factory=dict)
    stack: Any = None  # local_pipeline.stack_resources.StackResources
    #: Spawned servers instead of the shared ones (None: the services' own).
    postgres: Any = None
    redis: Any = None

    def __post_init__(self) -> None:
        if self.stack is None:
            from local_pipeline.stack_resources import local_stack

            self.stack = local_stack()
        server = self.postgres
        self.view = StoreView(
            lambda: (server or self.services.postgres).admin_connection(self.database)
        )
        #: The environment each processor was last started with (by name).
        self.environments: dict[str, dict[str, str]] = {}

    @functools.cached_property
    def kinesis(self) -> Any:
        return self.services.kinesis_client()

    @property
    def app_secret_arn(self) -> str:
        """The application role's secret the processors use (``db_secret_arn`` is the
        owner's, used only to migrate; see local_pipeline/services/app_role.py)."""
        return str(
            self.services.app_logins.prepare(
                self.db_secret_arn, self.postgres or self.services.postgres, self.database
            )
        )

    def env(self, name: str, *, health_port: int | None = None, **overrides: Any) -> dict[str, str]:
        """The environment of a processor called ``name``: the synthesized task
        environment made local, then ``defaults`` and ``overrides``."""
        from local_pipeline.stack_resources import processor_environment

        return processor_environment(
            self.services,
            self.stack,
            name,
            db_secret_arn=self.db_secret_arn,
            redis_secret_arn=self.redis_secret_arn,
            stream_name=self.stream,
            db_name=self.database,
            postgres=self.postgres,
            redis=self.redis,
            health_port=health_port,
            overrides={**self.defaults, **overrides},
        )

    def start(self, name: str, **overrides: Any) -> ProcessorProcess:
        """Start ``name`` (a running process of that name is stopped first)."""
        old = self.processes.get(name)
        if old is not None:
            old.ensure_stopped()
        environment = self.env(name, **overrides)
        process = ProcessorProcess.start(environment, self.log_dir / f"{name}.log", name=name)
        self.processes[name] = process
        self.environments[name] = environment
        return process

    def restart(self, name: str, **overrides: Any) -> ProcessorProcess:
        """Stop ``name`` (SIGTERM, then kill) and start it again, fresh environment."""
        return self.start(name, **overrides)

    def kill(self, name: str) -> None:
        """``kill -9`` ``name`` (a crash: no drain, no lease release)."""
        self.processes[name].kill()

    def alive(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.alive()]

    def send(self, records: Sequence[Record]) -> SendResult:
        return put_records(self.kinesis, self.stream, records)

    def wait_balanced(
        self, names: Sequence[str], expected: Sequence[int], *, timeout: float
    ) -> dict[str, list[str]]:
        """Wait until the held-shard counts of ``names`` (sorted) equal ``expected``."""
        held: dict[str, list[str]] = {}

        def balanced() -> bool:
            nonlocal held
            owners = self.view.owners()
            held = {n: sorted(s for s, o in owners.items() if o == n) for n in names}
            return sorted(len(v) for v in held.values()) == sorted(expected)

        wait_until(balanced, timeout=timeout, interval=0.2)
        return held

    def stop_processes(self, timeout: float = 10) -> None:
        """End every processor (SIGTERM, then kill); the view stays open."""
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.ensure_stopped(timeout=timeout)

    def stop_all(self) -> None:
        self.stop_processes()
        self.view.close()

    def logs(self, lines: int = 25) -> str:
        """The last lines of every worker's log (for assertion messages)."""
        return "\n".join(f"--- {n}\n{p.tail(lines)}" for n, p in self.processes.items())
