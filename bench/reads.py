"""``tap bench --only reads``: the read side under write load (issue 13's goals).

One ``tap load`` campaign (:mod:`simulator.load.cli`) against a throwaway local
pipeline with the API (``--target fresh``: servers, kinesalite, processor processes,
``tap api``): Kinesis writers offering ``writes_per_s`` readings/s and, at the same
time, read users asking ``read_rate`` requests/s of the ``goals`` mix
(:mod:`simulator.load.read_mix`): ``/devices/{id}/latest`` and a line's board
``/devices?facility&line``, each in equal shares from the cache and with
``?source=postgres`` (cache bypassed), interleaved by the same users. So the cached
and the bypassed figures come from one run, under one load, and their ratio is what
the cache buys. Listeners of ``/anomalies/stream`` time each anomaly from its
reading's event time to its arrival.

Goals (issue 13): latest p99 <= 10 ms and line board p99 <= 25 ms from the cache,
event -> stream p99 <= 1 s, while ``writes_per_s`` readings/s are written and
``read_rate`` requests/s are read. A run that did not reach the offered load (within
:data:`REACHED`) misses a goal too: its latencies were measured under less load than
the goal names. Percentiles are Locust's (whole milliseconds below 100 ms).

The load average is sampled every 5 s during the campaign and reported: on a shared
machine it says how much else was running. Because latencies on a loaded machine
measure the queue for a CPU more than the API, the benchmark also measures, after the
campaign and before the pipeline stops (same data, no write load), the API process's
**CPU time per request** of each goal endpoint (``probe_requests`` sequential
requests each, ``psutil`` CPU times of the ``tap api`` process): a cost that does not
depend on what else runs, and from which the requests/s one core can serve follow.

The **CPU budget** (:mod:`bench.cpu_budget`): from the pipeline's start until the
campaign ends, the CPU seconds every process of the pipeline used, as cores per
component (Locust, kinesalite, each processor, PostgreSQL with all its backends,
redis-server, the API, ...), their total against the machine's cores, and the cores
the offered load would need (each component scaled by offered / reached of the load
that drives it): whether the goal's load fits on this machine at all.

**Reads alone** (``writes_per_s=0``, ``tap bench --only reads --reads-writes 0``): the
API's own capacity. Before the campaign the fleet (``devices``, 2,000 by default: the
goal's fleet) is written once, a few readings per device, through Kinesis and the
processors, and the run waits until PostgreSQL and Redis hold every device; then the
read users alone ask the goals mix (``tap load --read-only``, no stream listeners: no
anomaly is written, so the stream goal does not apply). No writer refreshes the cache
during the run, so the API is started with a cache max age of
:data:`READS_ALONE_CACHE_MAX_AGE_S` (``TAP_API_CACHE_MAX_AGE_S``): otherwise every
cached answer older than the default 30 s would be verified against PostgreSQL and
the run would not measure the cache path.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from bench.cpu_budget import CpuBudgetSampler
from simulator.load.read_mix import STREAM_NAME, ReadKind, ReadMix, ReadPlanner
from simulator.load.target import Target

#: Share of the offered load (writes and reads) a run must reach for its figures to
#: stand for the goal's load.
REACHED: Final = 0.95
#: The API's cache max age in a reads-alone run (see the module docstring).
READS_ALONE_CACHE_MAX_AGE_S: Final = 3_600
#: Sequential requests per endpoint of the smoke's CPU probe. The kernel charges CPU
#: time in clock ticks (10 ms): 20 requests of a lean endpoint (about 1.3 ms of API CPU
#: each) come to about 2.6 ticks, so a run can be charged none (a probe figure of 0.0,
#: seen once on a fresh clone 2026-12-01); 200 make that about 26 ticks.
PROBE_REQUESTS_SMOKE: Final = 200
#: Readings per device written before a reads-alone run (the boards' history).
FILL_READINGS_PER_DEVICE: Final = 3
#: Longest wait for the processors to store the fill.
FILL_TIMEOUT_S: Final = 180.0


@dataclass(frozen=True, slots=True)
class ReadsOptions:
    writes_per_s: int = 2_000
    read_rate: float = 500.0
    #: The fleet: ``writes_per_s`` devices at 1 reading/s (the simulator's default rate).
    rate_per_device: float = 1.0
    writers: int = 8
    readers: int = 40
    sse_listeners: int = 4
    duration_s: float = 90.0
    drain_s: float = 5.0
    #: Scenarios per reading: about 1 anomaly/s at 2,000 readings/s, for the stream.
    anomaly_rate: float = 0.0005
    e2e_sample: float = 0.005
    shards: int = 4
    processors: int = 2
    locust_processes: int = 1
    goal_latest_p99_ms: float = 10.0
    goal_board_p99_ms: float = 25.0
    goal_stream_p99_ms: float = 1_000.0
    probe_requests: int = 300
    #: Fleet size; None: ``writes_per_s / rate_per_device`` (with writes), else 2,000.
    devices: int | None = None

    @property
    def reads_alone(self) -> bool:
        return self.writes_per_s == 0

    @property
    def fleet_devices(self) -> int:
        if self.devices is not None:
            return self.devices
        if self.reads_alone:
            return 2_000
        return round(self.writes_per_s / self.rate_per_device)

    @classmethod
    def smoke(cls) -> ReadsOptions:
        return cls(
            writes_per_s=60, read_rate=20.0, writers=2, readers=2, sse_listeners=1,
            duration_s=12.0, drain_s=3.0, anomaly_rate=0.003, e2e_sample=0.05, shards=2,
            processors=1, probe_requests=PROBE_REQUESTS_SMOKE,
        )  # fmt: skip


class LoadSampler:
    """The 1-minute load average every ``interval_s`` seconds, in a thread."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.interval_s)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def as_json(self) -> dict[str, float | int]:
        s = self.samples or [0.0]
        return {
            "min": round(min(s), 2),
            "mean": round(sum(s) / len(s), 2),
            "max": round(max(s), 2),
            "samples": len(self.samples),
        }


def campaign_argv(options: ReadsOptions, report: Path) -> list[str]:
    """``tap load`` arguments of the campaign: the goals mix of reads, beside the
    writers or (``reads_alone``) as a read-only campaign without stream listeners."""
    pipeline_and_readers = [
        "--target", "fresh",
        "--shape", "soak",
        "--duration", f"{options.duration_s:g}s",
        "--drain", f"{options.drain_s:g}s",
        "--devices", str(options.fleet_devices),
        "--processes", str(options.locust_processes),
        "--shards", str(options.shards),
        "--processors", str(options.processors),
        "--readers", str(options.readers),
        "--read-rate", f"{options.read_rate:g}",
        "--read-mix", "goals",
        "--report", str(report),
    ]  # fmt: skip
    if options.reads_alone:
        return [*pipeline_and_readers, "--read-only", "--sse-listeners", "0"]
    return [
        *pipeline_and_readers,
        "--users", str(options.writers),
        "--rate", f"{options.rate_per_device:g}",
        "--anomaly-rate", f"{options.anomaly_rate:g}",
        "--e2e-sample", f"{options.e2e_sample:g}",
        "--sse-listeners", str(options.sse_listeners),
    ]  # fmt: skip


def _pct(endpoint: dict[str, Any] | None) -> dict[str, Any]:
    endpoint = endpoint or {}
    return {k: endpoint.get(k) for k in ("count", "failures", "p50", "p95", "p99", "max")}


def _ratio(bypassed: float | None, cached: float | None) -> float | None:
    if bypassed is None or not cached:
        return None
    return round(bypassed / cached, 2)


def figures(summary: dict[str, Any], options: ReadsOptions) -> dict[str, Any]:
    """The benchmark's figures and missed goals from a campaign's summary.json."""
    reads = summary["reads"]
    endpoints = reads["endpoints"]
    latest = _pct(endpoints.get(ReadKind.LATEST.value))
    latest_pg = _pct(endpoints.get(ReadKind.LATEST_POSTGRES.value))
    board = _pct(endpoints.get(ReadKind.BOARD.value))
    board_pg = _pct(endpoints.get(ReadKind.BOARD_POSTGRES.value))
    stream = _pct(reads["stream"].get(STREAM_NAME))
    writes_per_s = summary["records_per_s"]
    reads_per_s = reads["requests_per_s"]
    out: dict[str, Any] = {
        "offered_writes_per_s": options.writes_per_s,
        "writes_per_s": writes_per_s,
        "offered_reads_per_s": options.read_rate,
        "reads_per_s": reads_per_s,
        "read_failures": reads["failures"],
        "latest_p50_ms": latest["p50"],
        "latest_p99_ms": latest["p99"],
        "latest_postgres_p50_ms": latest_pg["p50"],
        "latest_postgres_p99_ms": latest_pg["p99"],
        "latest_ratio_p50": _ratio(latest_pg["p50"], latest["p50"]),
        "latest_ratio_p99": _ratio(latest_pg["p99"], latest["p99"]),
        "board_p50_ms": board["p50"],
        "board_p99_ms": board["p99"],
        "board_postgres_p50_ms": board_pg["p50"],
        "board_postgres_p99_ms": board_pg["p99"],
        "board_ratio_p50": _ratio(board_pg["p50"], board["p50"]),
        "board_ratio_p99": _ratio(board_pg["p99"], board["p99"]),
        "stream_events": stream["count"],
        "stream_p50_ms": stream["p50"],
        "stream_p99_ms": stream["p99"],
        "endpoints": {
            ReadKind.LATEST.value: latest,
            ReadKind.LATEST_POSTGRES.value: latest_pg,
            ReadKind.BOARD.value: board,
            ReadKind.BOARD_POSTGRES.value: board_pg,
            STREAM_NAME: stream,
        },
        "answered_from": reads.get("answered_from", {}),
        "e2e_ms": summary.get("e2e_ms"),
        "campaign_verdict": summary.get("verdict"),
        "campaign_reasons": summary.get("reasons"),
        "goals": {
            "latest_p99_ms": options.goal_latest_p99_ms,
            "board_p99_ms": options.goal_board_p99_ms,
            "stream_p99_ms": options.goal_stream_p99_ms,
        },
    }
    out["goals_missed"] = missed_goals(out, options)
    return out


def missed_goals(f: dict[str, Any], options: ReadsOptions) -> list[str]:
    missed: list[str] = []
    if f["writes_per_s"] < REACHED * options.writes_per_s:
        missed.append(
            f"write load not reached: {f['writes_per_s']:,.0f} of {options.writes_per_s:,}"
            " readings/s"
        )
    if f["reads_per_s"] < REACHED * options.read_rate:
        missed.append(
            f"read load not reached: {f['reads_per_s']:,.0f} of {options.read_rate:,.0f} requests/s"
        )
    if f["read_failures"]:
        missed.append(f"{f['read_failures']} read requests failed")
    judged = [
        ("GET /devices/{id}/latest p99", f["latest_p99_ms"], options.goal_latest_p99_ms),
        ("GET /devices?line= p99", f["board_p99_ms"], options.goal_board_p99_ms),
    ]
    if not options.reads_alone:  # reads alone write no anomaly: no stream to time
        judged.append(("anomaly -> stream p99", f["stream_p99_ms"], options.goal_stream_p99_ms))
    for label, value, goal in judged:
        if value is None:
            missed.append(f"{label}: not measured (no sample)")
        elif value > goal:
            missed.append(f"{label} {value:g} ms > {goal:g} ms")
    return missed


def _api_process(api_url: str) -> Any:
    """The process listening on the API's port (the ``tap api`` of the pipeline)."""
    import psutil

    port = urlsplit(api_url).port
    for conn in psutil.net_connections("tcp"):
        listening = conn.status == psutil.CONN_LISTEN and conn.laddr and conn.pid is not None
        if listening and conn.laddr.port == port:
            return psutil.Process(conn.pid)
    raise RuntimeError(f"no process listens on the API's port {port}")


def cpu_probe(api_url: str, options: ReadsOptions) -> dict[str, Any]:
    """API CPU ms and client wall ms per request of each goal endpoint, sequential."""
    import httpx

    process = _api_process(api_url)
    devices = options.fleet_devices
    planner = ReadPlanner(devices, 7, ReadMix.GOALS, random.Random(13))  # noqa: S311 - picks devices
    out: dict[str, Any] = {"requests_each": options.probe_requests}
    with httpx.Client(base_url=api_url, timeout=30) as client:
        for board in planner.boards:  # the devices the boards show, as the readers do
            answer = client.get(planner.request(ReadKind.BOARD, _now()).url).json()
            planner.saw(d["device_id"] for d in answer.get("devices", []))
            if len(planner.seen) >= 100 or board is planner.boards[-1]:
                break
        for kind in (ReadKind.LATEST, ReadKind.LATEST_POSTGRES, ReadKind.BOARD,
                     ReadKind.BOARD_POSTGRES):  # fmt: skip
            urls = [planner.request(kind, _now()).url for _ in range(options.probe_requests)]
            before = process.cpu_times()
            started = time.perf_counter()
            failed = sum(client.get(url).status_code != 200 for url in urls)
            wall = time.perf_counter() - started
            after = process.cpu_times()
            cpu = (after.user - before.user) + (after.system - before.system)
            out[kind.value] = {
                "api_cpu_ms": round(cpu * 1000 / len(urls), 2),
                "wall_ms": round(wall * 1000 / len(urls), 2),
                "failed": failed,
            }
    return out


def _now() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def _api_cache_max_age(seconds: int | None) -> Iterator[None]:
    """``TAP_API_CACHE_MAX_AGE_S`` for the API the fresh pipeline starts (it inherits
    this process's environment), restored afterwards."""
    if seconds is None:
        yield
        return
    name = "TAP_API_CACHE_MAX_AGE_S"
    before = os.environ.get(name)
    os.environ[name] = str(seconds)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def fill_fleet(target: Target, devices: int, seed: int = 7) -> dict[str, Any]:
    """Write :data:`FILL_READINGS_PER_DEVICE` readings of each of the fleet's devices
    (the campaign's fleet: same seed and size, so the boards show them) through
    Kinesis, then wait until PostgreSQL and Redis hold every device."""
    import psycopg
    import redis
    from psycopg.sql import SQL, Identifier

    from processor.contract.storage import READINGS_TABLE, REDIS_LAST_SEEN
    from simulator.aws_client import kinesis_client
    from simulator.fleet import Fleet
    from simulator.kinesis_producer import KinesisProducer

    started = time.monotonic()
    now = _now()
    fleet = Fleet(devices, seed, rate=1.0, start=now - timedelta(seconds=FILL_READINGS_PER_DEVICE))
    records = fleet.tick(now)
    client = kinesis_client(environ=target.aws_environment | {"AWS_REGION": target.region})
    outcome = KinesisProducer(target.stream_name, client).put(records)
    if outcome.failed:
        raise RuntimeError(f"fill: {len(outcome.failed)} of {len(records)} records refused")
    kwargs: dict[str, Any] = {"socket_timeout": 10}
    if target.redis_ca and (target.redis_url or "").startswith("rediss://"):
        kwargs["ssl_ca_certs"] = target.redis_ca
    cache = redis.Redis.from_url(target.redis_url or "", **kwargs)
    count_devices = SQL("SELECT count(DISTINCT device_id) FROM {}").format(
        Identifier(*READINGS_TABLE.split("."))
    )
    stored = cached = 0
    try:
        with psycopg.connect(target.pg_dsn or "", autocommit=True) as conn:
            while time.monotonic() - started < FILL_TIMEOUT_S:
                row = conn.execute(count_devices).fetchone()
                stored = int(row[0]) if row else 0
                cached = int(cache.zcard(REDIS_LAST_SEEN))
                if stored >= devices and cached >= devices:
                    break
                time.sleep(1)
            else:
                raise RuntimeError(
                    f"fill: after {FILL_TIMEOUT_S:g} s PostgreSQL holds {stored} and Redis"
                    f" {cached} of {devices} devices"
                )
    finally:
        cache.close()
    return {
        "devices": devices,
        "records": len(records),
        "devices_in_postgres": stored,
        "devices_in_redis": cached,
        "seconds": round(time.monotonic() - started, 1),
        "api_cache_max_age_s": READS_ALONE_CACHE_MAX_AGE_S,
    }


def _scale(offered: float, reached: float | None) -> float | None:
    """offered / reached: how much more load the goal asks than the run carried
    (None: nothing was reached, no projection). Nothing offered (reads alone: no
    writes): 1, the idle components stay at what they used."""
    if not offered:
        return 1.0
    return offered / reached if reached else None


def run(options: ReadsOptions, out_dir: Path) -> dict[str, Any]:
    """Run the campaign (its report folder is ``out_dir``) and return the figures."""
    from simulator.load import cli as load_cli
    from tap_cli.load import fresh_local_pipeline

    out_dir.mkdir(parents=True, exist_ok=True)
    argv = campaign_argv(options, out_dir)
    probe: dict[str, Any] = {}
    fill: dict[str, Any] = {}
    cpu = CpuBudgetSampler()

    @contextlib.contextmanager
    def pipeline_then_probe(**kwargs: Any) -> Iterator[Target]:
        with (
            _api_cache_max_age(READS_ALONE_CACHE_MAX_AGE_S if options.reads_alone else None),
            fresh_local_pipeline(**kwargs) as target,
        ):
            if options.reads_alone:
                fill.update(fill_fleet(target, options.fleet_devices))
            with cpu:
                yield target
            # The campaign is over; the pipeline (and its data) still runs.
            if target.api_url:
                probe.update(cpu_probe(target.api_url, options))

    # tap load's progress lines go to stderr: stdout is tap bench's JSON document.
    with LoadSampler() as sampler, contextlib.redirect_stdout(sys.stderr):
        code = load_cli.main(argv, fresh_pipeline=pipeline_then_probe)
    if code not in (load_cli.EXIT_PASS, load_cli.EXIT_FAIL):
        raise RuntimeError(f"tap load {' '.join(argv)} exited {code}; see {out_dir}")
    summary = json.loads((out_dir / "summary.json").read_text())
    result = figures(summary, options)
    result["load_average_during"] = sampler.as_json()
    result["api_cpu_per_request"] = probe
    if fill:
        result["fill"] = fill
    if cpu.last:
        result["cpu_budget"] = cpu.as_json(
            write_scale=_scale(options.writes_per_s, result["writes_per_s"]),
            read_scale=_scale(options.read_rate, result["reads_per_s"]),
        )
    latest, latest_pg = probe.get(ReadKind.LATEST.value), probe.get(ReadKind.LATEST_POSTGRES.value)
    board, board_pg = probe.get(ReadKind.BOARD.value), probe.get(ReadKind.BOARD_POSTGRES.value)
    if latest and latest_pg and board and board_pg:
        result["latest_api_cpu_ms"] = latest["api_cpu_ms"]
        result["latest_postgres_api_cpu_ms"] = latest_pg["api_cpu_ms"]
        result["board_api_cpu_ms"] = board["api_cpu_ms"]
        result["board_postgres_api_cpu_ms"] = board_pg["api_cpu_ms"]
    result["command"] = "tap load " + " ".join(argv)
    result["options"] = asdict(options)
    result["report"] = str(out_dir)
    return result
