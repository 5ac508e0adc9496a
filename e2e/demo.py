"""``tap demo`` / ``make demo``: the whole pipeline on this machine, end to end, verified.

Brings the local stack up (real PostgreSQL and Redis with TLS, moto, kinesalite),
creates the synthesized stack's stream and secrets, starts processors with the
synthesized task environment, simulates a fleet in real time (anomalies and poison
included), waits for the processors to drain, verifies, tears down, and reports.

Exit status: 0 when every check passes, 1 when one fails (anything lost or
duplicated, dead letters != poison sent, Redis != PostgreSQL, p99 event ->
PostgreSQL over the target, a scenario's recall or a detector's precision below
``--score-floor``), 2 when the run could not be made (setup failed).
The report (JSON and PNG) is written to ``reports/demo-<UTC time>/`` or
``--report DIR``. Every JSON key is explained in docs/E2E.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from simulator.fleet_options import FleetOptions, add_fleet_arguments, fleet_options

#: The latency target of the issue: p99 event -> PostgreSQL commit.
P99_EVENT_TO_POSTGRES_TARGET_MS: Final = 1000.0
#: Devices whose Redis latest hash is polled for the event -> Redis latency.
REDIS_SAMPLE_DEVICES: Final = 100
REDIS_POLL_INTERVAL_S: Final = 0.05
#: How often the simulator hands due records to Kinesis (records wait at most this).
SEND_TICK_S: Final = 0.1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tap demo",
        description="Run the whole pipeline locally (local stack, processors with the "
        "synthesized task environment, a simulated fleet), verify it and report.",
    )
    # 0.0015: ~45 anomaly scenarios in the default run; 0.005: a few poison records
    # per device, so every dead-letter reason shows.
    add_fleet_arguments(parser, defaults=FleetOptions(anomaly_rate=0.0015, poison_rate=0.005))
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to simulate (60)")
    parser.add_argument("--processors", type=int, default=2, help="processor processes (2)")
    parser.add_argument(
        "--score-floor",
        type=float,
        default=0.8,
        help="fail when a scenario's recall or a detector's precision is below this (0.8); "
        "scenarios cut off by the run's end and not detected are left out (see "
        "simulator/scoring.py)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack up until Ctrl-C")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--report", type=Path, help="report folder (reports/demo-<time>/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    problems = [
        f"--{name} must be positive"
        for name in ("duration", "processors")
        if getattr(args, name) <= 0
    ]
    if not 0 <= args.score_floor <= 1:
        problems.append("--score-floor must be within [0, 1]")
    if problems:
        print("tap demo: " + "; ".join(problems), file=sys.stderr)
        return 2
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    report_dir = (
        args.report or Path("reports") / f"demo-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    ).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args, report_dir)
    except KeyboardInterrupt:
        print("tap demo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"tap demo: the run could not be made: {exc}", file=sys.stderr)
        return 2
    (report_dir / "demo.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from e2e.report import print_summary

        print_summary(report)
    return 0 if report["ok"] else 1


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} tap demo: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, report_dir: Path) -> dict[str, Any]:
    """One demo run; returns the report (see docs/E2E.md for its keys)."""
    from e2e.report import RedisArrivalSampler
    from local_pipeline.pipeline import LocalPipeline
    from local_pipeline.verify import fleet_records, put_records

    began = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="tap-demo-"))
    # When we are root PostgreSQL runs as ``postgres`` and must enter the folder.
    run_dir.chmod(0o755)
    pipeline = LocalPipeline(run_dir, processors=args.processors, log=_log)
    sampler: RedisArrivalSampler | None = None
    try:
        pipeline.start()
        setup_s = time.monotonic() - began
        _log(f"ready in {setup_s:.0f} s; simulating {args.devices} devices for {args.duration:g} s")

        fleet = fleet_options(args).fleet(datetime.now(UTC))
        step = max(1, len(fleet.device_ids) // REDIS_SAMPLE_DEVICES)
        sample = fleet.device_ids[::step][:REDIS_SAMPLE_DEVICES]
        sampler = RedisArrivalSampler(
            pipeline.redis_client, sample, interval_s=REDIS_POLL_INTERVAL_S
        )
        sampler.start()

        # --- simulate in real time ------------------------------------------------
        kinesis = pipeline.kinesis_client()
        labels: list[Any] = []
        send_times: list[tuple[float, int]] = []
        burst_keys: set[tuple[str, int]] = set()
        from local_pipeline.verify import SendResult

        sent = SendResult()
        sim_began = time.time()
        end_ms = fleet.start_ms + int(args.duration * 1000)
        while True:
            now_ms = int(time.time() * 1000)
            due = fleet.tick(min(now_ms, end_ms - 1))
            if due:
                # Burst extras carry event times up to one period ahead (the chattering
                # sensor stamps them so): excluded from latency, counted everywhere else.
                burst_keys.update(
                    (r.partition_key, r.seq)
                    for r in due
                    if r.anomaly == "burst" and r.poison is None
                )
                result = put_records(kinesis, pipeline.stream_name, fleet_records(due))
                sent.merge(result)
                send_times.append((time.time(), result.records))
            labels += fleet.drain_labels()
            if now_ms >= end_ms and not fleet.has_pending:
                break
            time.sleep(max(0.0, SEND_TICK_S - (time.time() * 1000 - now_ms) / 1000))
        labels += fleet.finish()
        simulate_s = time.time() - sim_began
        _log(
            f"sent {sent.records} records ({len(sent.keys)} readings, "
            f"{len(sent.poison_reasons)} poison) in {simulate_s:.0f} s; waiting for the drain"
        )

        # --- drain ------------------------------------------------------------------
        drain_began = time.monotonic()
        view = pipeline.view
        assert view is not None
        from local_pipeline.verify import wait_until, wait_until_stored

        wait_until_stored(view, sent.keys, timeout=max(60.0, args.duration))
        expected_dead = Counter(sent.poison_reasons)
        wait_until(
            lambda: sum(view.dead_letters_by_reason().values()) >= sum(expected_dead.values()),
            timeout=20,
        )
        drain_s = time.monotonic() - drain_began
        # Redis is written right after each commit: give the last ones a moment.
        time.sleep(REDIS_POLL_INTERVAL_S * 4)
        redis_samples = sampler.stop()

        # --- verify -----------------------------------------------------------------
        verify_began = time.monotonic()
        report = _verify(
            args,
            pipeline,
            sent,
            labels,
            fleet,
            burst_keys,
            redis_samples,
            sampler,
            send_times,
            sim_began,
            report_dir,
        )
        verify_s = time.monotonic() - verify_began
        if args.keep:
            _keep_running(pipeline)
    finally:
        teardown_began = time.monotonic()
        # Processors and servers first: nothing below may leave them running.
        pipeline.stop()
        if sampler is not None and sampler.is_alive():
            with contextlib.suppress(Exception):
                sampler.stop()
        _copy_logs(run_dir, report_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        teardown_s = time.monotonic() - teardown_began
    report["timings_s"] = {
        "setup": round(setup_s, 1),
        "synth": round(pipeline.timings.get("synth_s", 0.0), 1),
        "simulate": round(simulate_s, 1),
        "drain": round(drain_s, 2),
        "verify": round(verify_s, 2),
        "teardown": round(teardown_s, 1),
        "total": round(time.monotonic() - began, 1),
    }
    return report


def _verify(
    args: argparse.Namespace,
    pipeline: Any,
    sent: Any,
    labels: list[Any],
    fleet: Any,
    burst_keys: set[tuple[str, int]],
    redis_samples: list[float],
    sampler: Any,
    send_times: list[tuple[float, int]],
    sim_began: float,
    report_dir: Path,
) -> dict[str, Any]:
    from psycopg import sql

    from e2e.report import latency_summary, per_second, write_png
    from local_pipeline.verify import compare, redis_latest_mismatches, wait_until
    from processor.contract.storage import READINGS_TABLE
    from processor.postgres import reads
    from processor.postgres.identifiers import table_identifier
    from simulator.scoring import score

    view = pipeline.view
    comparison = compare(sent.keys, view)
    dead_letters = Counter(view.dead_letters_by_reason())
    poison = Counter(sent.poison_reasons)

    # Event -> PostgreSQL, per reading (burst extras excluded, see above).
    rows = view._run(
        lambda c: c.execute(
            sql.SQL(
                "SELECT device_id, seq, extract(epoch FROM processed_at)::float8,"
                " (extract(epoch FROM processed_at - event_ts) * 1000)::float8 FROM {}"
            ).format(table_identifier(READINGS_TABLE))
        ).fetchall()
    )
    pg_latencies = [ms for device, seq, _, ms in rows if (device, seq) not in burst_keys]
    committed_at = [at for _, _, at, _ in rows]

    # Redis latest == PostgreSQL latest, for every device.
    client = pipeline.redis_client()
    mismatches: list[str] = []
    try:
        latest = view.latest_per_device()

        def consistent() -> bool:
            nonlocal mismatches
            mismatches = redis_latest_mismatches(client, latest)
            return not mismatches

        wait_until(consistent, timeout=10)
    finally:
        client.close()

    # Anomalies: what the processors stored, scored against the fleet's labels.
    detections = [
        (a.device_id, a.seq, a.anomaly_type, a.event_ts) for a in view._run(reads.anomalies)
    ]
    score_report = score(detections, labels)
    scored = score_report.as_dict()
    score_misses = score_report.misses(args.score_floor)
    detected_by_type = Counter(kind for _, _, kind, _ in detections)

    pg = latency_summary(pg_latencies)
    redis = latency_summary(redis_samples) | {
        "method": "poll",
        "sample_devices": len(sampler.device_ids),
        "resolution_ms": round(sampler.interval_s * 1000),
        "poll_errors": sampler.errors,
    }
    p99 = pg["p99"]
    checks = {
        "no_loss": {"ok": not comparison.lost, "detail": f"{len(comparison.lost)} lost"},
        "no_duplicates": {
            "ok": not comparison.duplicated and not comparison.unexpected,
            "detail": f"{len(comparison.duplicated)} duplicated, "
            f"{len(comparison.unexpected)} stored but never sent",
        },
        "dead_letters_equal_poison": {
            "ok": dead_letters == poison,
            "detail": f"{sum(dead_letters.values())} dead-lettered, {sum(poison.values())} "
            "poison sent" + ("" if dead_letters == poison else " (by reason differs)"),
        },
        "redis_equals_postgres": {
            "ok": not mismatches,
            "detail": f"{len(latest) - len(mismatches)}/{len(latest)} devices match"
            + (f"; e.g. {mismatches[0]}" if mismatches else ""),
        },
        "anomaly_score_floor": {
            "ok": not score_misses,
            "detail": "; ".join(score_misses)
            or f"every recall and precision ≥ {args.score_floor:g}",
        },
        "p99_event_to_postgres": {
            "ok": p99 is not None and p99 <= P99_EVENT_TO_POSTGRES_TARGET_MS,
            "detail": f"p99 {p99} ms (target ≤ {P99_EVENT_TO_POSTGRES_TARGET_MS:.0f} ms)",
        },
    }
    sent_series = per_second([t for t, n in send_times for _ in range(n)], sim_began)
    stored_series = per_second(committed_at, sim_began)
    png = write_png(
        report_dir / "demo.png",
        pg_latencies_ms=pg_latencies,
        redis_latencies_ms=redis_samples,
        sent_per_second=sent_series,
        stored_per_second=stored_series,
        title=f"tap demo: {args.devices} devices x {args.rate:g} Hz x {args.duration:g} s, "
        f"{args.processors} processors",
    )
    stack = pipeline.stack
    return {
        "ok": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "config": {
            "devices": args.devices,
            "rate": args.rate,
            "duration_s": args.duration,
            "processors": args.processors,
            "poison_rate": args.poison_rate,
            "anomaly_rate": args.anomaly_rate,
            "seed": args.seed,
            "score_floor": args.score_floor,
            "stream": stack.stream_name,
            "shards": stack.shard_count,
        },
        "sent": len(sent.keys),
        "records_sent": sent.records,
        "stored": comparison.stored,
        "lost": len(comparison.lost),
        "duplicated": len(comparison.duplicated),
        "unexpected": len(comparison.unexpected),
        "poison_sent": sum(poison.values()),
        "dead_lettered": sum(dead_letters.values()),
        "dead_letters_equal_poison": dead_letters == poison,
        "poison_by_reason": dict(sorted(poison.items())),
        "dead_letters_by_reason": dict(sorted(dead_letters.items())),
        "latency_ms": {
            "event_to_postgres": pg | {"excluded_burst_extras": len(burst_keys)},
            "event_to_redis": redis,
        },
        "throughput": {
            "sent_per_second_mean": round(sent.records / max(1, len(sent_series)), 1),
            "stored_per_second_peak": max(stored_series, default=0),
            "sent_per_second": sent_series,
            "stored_per_second": stored_series,
        },
        "anomalies": {
            "injected": dict(sorted(fleet.anomalies_started.items())),
            "labels": sum(1 for label in labels if getattr(label, "anomaly", None)),
            "detections_by_type": dict(sorted(detected_by_type.items())),
            "score": scored,
        },
        "redis_matches_postgres": not mismatches,
        "redis_mismatches": len(mismatches),
        "devices_in_postgres": len(latest),
        "environment": {
            "stack_file": str(stack.stack_path),
            "locally_overridden": pipeline.changed_variables(),
        },
        "report_dir": str(report_dir),
        "png": str(png),
    }


def _keep_running(pipeline: Any) -> None:
    """--keep: leave everything up until Ctrl-C (the servers die with this process),
    with the read API serving the plant board over the demo's data (issue 13)."""
    from local_pipeline.api_component import ApiComponent
    from local_pipeline.state import write_state

    api = ApiComponent(pipeline.services, pipeline.logs_dir)
    try:
        api.start()
    except Exception as exc:
        _log(f"--keep: the read API did not start ({exc}); the stack stays up without it")
    state = pipeline.services.describe() | {
        "status": "ready",
        "supervisor_pid": os.getpid(),
        "client_environment": pipeline.services.client_environment(),
        "logs_dir": str(pipeline.logs_dir),
        "components": {api.name: api.describe()} if api.healthy() else {},
    }
    write_state(pipeline.run_dir, state)
    if api.healthy():
        _log(f"--keep: the plant board: {api.url}/board/ (API: {api.url}/docs)")
    _log(
        f"--keep: stack up in {pipeline.run_dir} (state.json; `tap local status --run-dir "
        f"{pipeline.run_dir}`); Ctrl-C to stop"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        api.stop()


def _copy_logs(run_dir: Path, report_dir: Path) -> None:
    logs = run_dir / "logs"
    if logs.is_dir():
        shutil.copytree(logs, report_dir / "logs", dirs_exist_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
