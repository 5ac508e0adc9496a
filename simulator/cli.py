"""``tap simulate``: run a simulated sensor fleet into Kinesis, a JSONL file or stdout.

Examples::

    tap simulate --devices 500 --rate 1 --duration 5m --sink kinesis --stream sensors
    tap simulate --devices 50 --records 10000 --anomaly-rate 0.01 --labels labels.jsonl \\
        --output readings.jsonl
    tap simulate --devices 10000 --records 1000000 --sink memory --json
    tap simulate --devices 150 --rate 0.00333 --duration 30d --scenarios plant \
        --anomaly-rate 0.0002 --start 2026-10-05T00:00:00Z --labels labels.jsonl \
        --output month.jsonl      # a month at 5-minute cadence, in seconds

Real time. With ``--realtime`` (the default for ``--sink kinesis``) readings are
generated when their event time comes, ``--rate`` readings per second per device.
With ``--no-realtime`` (the default for files and memory) they are generated as
fast as the sink takes them, and the event times are *backfilled*: by default the
run's time window ends now, so no reading is in the future when it reaches the
processor (which dead-letters readings more than 5 minutes ahead of their arrival).

Exit status: 0 when every record was sent, 1 when some failed, 2 for bad options,
3 when the destination refused the run (missing stream, no access).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Final

import msgspec

from simulator.anomalies import SCENARIO_SETS, AnomalyLabel
from simulator.fleet import NEVER
from simulator.fleet_options import add_fleet_arguments, fleet_options, positive_int
from simulator.sinks import JsonlSink, KinesisSink, MemorySink, Sink, SinkError

#: Records generated per call into the fleet: large enough to amortise the call,
#: small enough that progress and labels stay live.
CHUNK: Final = 5000
#: How often the realtime loop wakes up to emit what has come due.
REALTIME_TICK_S: Final = 0.1
STREAM_ENV: Final = "TAP_STREAM_NAME"

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``60``, ``90s``, ``5m``, ``1h``, ``1h30m``, ``2.5m`` -> seconds (> 0)."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        position, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            position = match.end()
        if position != len(raw) or not raw:
            raise ValueError(
                f"invalid duration {text!r} (use seconds or e.g. 30s, 5m, 1h, 1h30m)"
            ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return seconds


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int_arg(text: str) -> int:
    try:
        return positive_int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _start_arg(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-11-26T08:00:00Z, got {text!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tap simulate",
        description="Simulate a fleet of plant sensors into Kinesis, a JSONL file or stdout.",
    )
    fleet = parser.add_argument_group("fleet")
    add_fleet_arguments(fleet)
    fleet.add_argument(
        "--scenarios",
        choices=sorted(SCENARIO_SETS),
        default="classic",
        help="which anomaly scenarios --anomaly-rate draws from: classic (default), "
        "plant (slow degradation, sensor replacement, gain loss, dropouts, ...) or all",
    )
    fleet.add_argument(
        "--temperature-resolution",
        type=float,
        choices=(1.0, 0.1, 0.01, 0.001),
        default=0.01,
        help="resolution temperatures are reported to, in C (default 0.01)",
    )
    fleet.add_argument(
        "--start",
        type=_start_arg,
        help="event time of the first reading (default: now, or now - duration with --no-realtime)",
    )
    amount = parser.add_argument_group("how much (one of)").add_mutually_exclusive_group(
        required=True
    )
    amount.add_argument(
        "--duration", type=_duration_arg, help="event-time span: seconds or 30s, 5m, 1h, 1h30m"
    )
    amount.add_argument("--records", type=_positive_int_arg, help="stop after N records")
    out = parser.add_argument_group("output")
    out.add_argument("--sink", choices=("kinesis", "jsonl", "memory"), default="jsonl")
    out.add_argument(
        "--stream", default=os.environ.get(STREAM_ENV), help=f"Kinesis stream (or ${STREAM_ENV})"
    )
    out.add_argument("--output", default="-", help="JSONL file, or - for stdout (default)")
    out.add_argument("--labels", help="write anomaly and poison labels (JSONL) to this file")
    out.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pace by event time (default: on for kinesis, off otherwise)",
    )
    out.add_argument(
        "--max-send-rate",
        type=_positive_float_arg,
        help="cap on records per second sent (token bucket)",
    )
    out.add_argument(
        "--max-attempts",
        type=_positive_int_arg,
        default=5,
        help="Kinesis: sends per record before it counts as failed (default 5)",
    )
    out.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live progress on stderr (default: when stderr is a terminal)",
    )
    out.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sink == "kinesis" and not args.stream:
        parser.error(f"--stream is required with --sink kinesis (or set ${STREAM_ENV})")
    if args.sink != "jsonl" and args.output != "-":
        parser.error(f"--output is for --sink jsonl, not --sink {args.sink}")
    if args.realtime is None:
        args.realtime = args.sink == "kinesis"
    if args.labels is not None and args.labels == args.output:
        parser.error("--labels and --output must be different files")
    return args


class _Progress:
    """A live table on stderr (rich), refreshed at most four times a second."""

    def __init__(self, enabled: bool) -> None:
        self._live: Any = None
        self._last = 0.0
        if enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), auto_refresh=False, transient=False)
            self._live.start()

    def update(self, snapshot: dict[str, Any], *, force: bool = False) -> None:
        if self._live is None:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        from rich.table import Table

        table = Table(title="tap simulate", show_header=True)
        for column in ("elapsed", "generated", "records/s", "sent", "failed", "retried"):
            table.add_column(column, justify="right")
        table.add_row(
            f"{snapshot['elapsed_s']:.1f} s",
            f"{snapshot['records_generated']:,}",
            f"{snapshot['records_per_s']:,.0f}",
            f"{snapshot['sent']:,}",
            f"{snapshot['failed']:,}",
            f"{snapshot['retried']:,}",
        )
        self._live.update(table, refresh=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live.console.line()


def _make_sink(args: argparse.Namespace) -> Sink:
    if args.sink == "kinesis":
        return KinesisSink(
            args.stream, max_attempts=args.max_attempts, target_rate=args.max_send_rate
        )
    if args.sink == "jsonl":
        return JsonlSink(args.output, target_rate=args.max_send_rate)
    return MemorySink(keep=False)


def run(args: argparse.Namespace, *, sink: Sink | None = None) -> dict[str, Any]:
    """Run the simulation described by parsed ``args``; returns the summary."""
    duration_s: float | None = args.duration
    if args.start is not None:
        start = args.start
    elif args.realtime:
        start = datetime.now(UTC)
    else:
        # Backfill: the window ends now. With --records the span is how long the
        # fleet takes to produce that many readings.
        span = duration_s or args.records / (args.devices * args.rate)
        start = datetime.now(UTC) - timedelta(seconds=span)
    if datetime.now(UTC) - start > timedelta(days=7):
        # The processor dead-letters readings older than 7 days (ts_too_old).
        print(
            "tap simulate: warning: readings older than 7 days will be dead-lettered "
            "by the processor (ts_too_old); use a shorter --duration or a later --start",
            file=sys.stderr,
        )
    fleet = fleet_options(args).fleet(
        start,
        scenarios=SCENARIO_SETS[args.scenarios],
        temperature_resolution=args.temperature_resolution,
    )
    sink = sink if sink is not None else _make_sink(args)
    labels_file: IO[bytes] | None = open(args.labels, "wb") if args.labels else None  # noqa: SIM115
    label_counts = {"anomaly": 0, "poison": 0}

    def write_labels(labels: list[Any]) -> None:
        for label in labels:
            label_counts["anomaly" if isinstance(label, AnomalyLabel) else "poison"] += 1
            if labels_file is not None:
                labels_file.write(msgspec.json.encode(label) + b"\n")

    end_ms = fleet.start_ms + int(duration_s * 1000) if duration_s is not None else NEVER
    remaining = args.records if args.records is not None else NEVER
    progress = _Progress(args.progress if args.progress is not None else sys.stderr.isatty())
    t0 = time.monotonic()
    generated = 0

    def snapshot() -> dict[str, Any]:
        elapsed = time.monotonic() - t0
        return {
            "elapsed_s": elapsed,
            "records_generated": generated,
            "records_per_s": generated / elapsed if elapsed > 0 else 0.0,
            **sink.stats.as_dict(),
        }

    clock_now: Callable[[], int]
    if args.realtime:

        def clock_now() -> int:
            return fleet.start_ms + int((time.monotonic() - t0) * 1000)
    else:

        def clock_now() -> int:
            return NEVER

    try:
        while remaining > 0:
            horizon = min(clock_now(), end_ms - 1)
            batch = fleet.tick(horizon, limit=min(CHUNK, remaining))
            if batch:
                generated += len(batch)
                remaining -= len(batch)
                sink.send(batch)
                if args.realtime:
                    # Do not hold readings back waiting for a full 500-record call:
                    # in real time their age is the end-to-end latency we measure.
                    sink.flush()
                write_labels(fleet.drain_labels())
                progress.update(snapshot())
                continue
            if fleet.next_due_ms >= end_ms and not fleet.has_pending:
                break  # the time window is done
            if args.realtime:
                wait_ms = fleet.next_due_ms - clock_now()
                time.sleep(min(REALTIME_TICK_S, max(wait_ms, 1) / 1000))
        sink.flush()
    finally:
        write_labels(fleet.finish())
        if labels_file is not None:
            labels_file.close()
        progress.update(snapshot(), force=True)
        progress.stop()
        sink.close()

    stats = sink.stats
    poison = sum(fleet.poison_sent.values())
    summary = {
        "sink": args.sink,
        "stream": args.stream if args.sink == "kinesis" else None,
        "output": args.output if args.sink == "jsonl" else None,
        "devices": args.devices,
        "seed": args.seed,
        "rate_per_device": args.rate,
        "realtime": args.realtime,
        "event_time_start": fleet.start.isoformat().replace("+00:00", "Z"),
        **snapshot(),
        "readings": generated - poison,
        "poison_records": poison,
        "poison_by_kind": fleet.poison_sent,
        "anomalies_started": fleet.anomalies_started,
        "readings_suppressed_silent": fleet.readings_suppressed,
        "labels": args.labels,
        "anomaly_labels": label_counts["anomaly"],
        "poison_labels": label_counts["poison"],
    }
    summary["failed_by_code"] = dict(stats.failed_by_code)
    return summary


def _print_summary(summary: dict[str, Any], *, as_json: bool, records_on_stdout: bool) -> None:
    if as_json:
        stream = sys.stderr if records_on_stdout else sys.stdout
        stream.write(msgspec.json.encode(summary).decode() + "\n")
        return
    from rich.console import Console

    console = Console(stderr=True)
    console.print(
        f"[bold]tap simulate[/]: {summary['records_generated']:,} records "
        f"({summary['readings']:,} readings, {summary['poison_records']:,} poison) from "
        f"{summary['devices']:,} devices in {summary['elapsed_s']:.1f} s "
        f"({summary['records_per_s']:,.0f} records/s) -> {summary['sink']}"
    )
    console.print(
        f"sent {summary['sent']:,}  failed {summary['failed']:,}  "
        f"retried {summary['retried']:,}  calls {summary['calls']:,}"
        + (f"  failed by code {summary['failed_by_code']}" if summary["failed"] else "")
    )
    if summary["anomalies_started"]:
        console.print(f"anomalies started: {summary['anomalies_started']}")
    if summary["labels"]:
        console.print(
            f"labels: {summary['anomaly_labels']:,} anomaly, {summary['poison_labels']:,} "
            f"poison -> {summary['labels']}"
        )


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse: --help (0) or a bad option (2, message printed)
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        summary = run(args)
    except SinkError as exc:
        print(f"tap simulate: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"tap simulate: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("tap simulate: interrupted", file=sys.stderr)
        return 130
    records_on_stdout = args.sink == "jsonl" and args.output == "-"
    _print_summary(summary, as_json=args.json, records_on_stdout=records_on_stdout)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
