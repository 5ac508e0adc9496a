"""``tap bench [--only NAMES] [--smoke] [--json FILE] ...``: run the benchmarks.

Prints one JSON document (every figure, its reference, ratios, the machine and the
load average around each measurement) and a short table. ``--smoke`` runs a tiny
version of each benchmark in well under two minutes: it proves the benchmark still
runs (``tests/bench``), its numbers mean nothing.

Exit code 0 when every selected benchmark ran (goals missed are reported, not
failed: speed is a figure, not a test), 1 when one of them crashed. Except
``reads`` (issue 13), whose goals are the issue's pass/fail criteria: a full (not
``--smoke``) run that misses one exits 2 and prints which. ``reads`` starts a whole
pipeline and runs minutes: it runs only when named (``--only reads``).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from bench.machine import Machine, load_average

BENCHMARKS: Final = ("throughput", "latency", "handoff", "scale", "tooling", "reads")
#: Run only when named in --only (minutes of a whole pipeline under load).
OPT_IN: Final = ("reads",)
EXIT_GOALS_MISSED: Final = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tap bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--only",
        default=",".join(b for b in BENCHMARKS if b not in OPT_IN),
        help=f"comma-separated subset of {','.join(BENCHMARKS)}"
        f" (default: all but {','.join(OPT_IN)})",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run of each (CI)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the JSON here")
    parser.add_argument(
        "--markdown", type=Path, metavar="FILE", help="also write the figures as Markdown tables"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="pyinstrument text profile of the first throughput round",
    )
    parser.add_argument("--make-test", action="store_true", help="also time `make test` (minutes)")
    parser.add_argument(
        "--fixture-pg",
        action="store_true",
        help="throughput on the fixture PostgreSQL (fsync=off) instead of a durable one",
    )
    parser.add_argument(
        "--keep-run-dir", action="store_true", help="keep the servers' run folder (logs)"
    )
    reads = parser.add_argument_group("reads (issue 13 goals; defaults are the goal's load)")
    reads.add_argument(
        "--reads-writes",
        type=int,
        help="readings/s written (default 2000); 0: reads alone, the API's own capacity"
        " (the fleet is written once first, then only the readers run)",
    )
    reads.add_argument(
        "--reads-devices",
        type=int,
        help="fleet size (default: writes/s at 1 reading/s per device; 2000 with --reads-writes 0)",
    )
    reads.add_argument("--reads-rate", type=float, help="read requests/s (default 500)")
    reads.add_argument("--reads-duration", type=float, help="seconds of traffic (default 90)")
    reads.add_argument("--reads-readers", type=int, help="Locust read users (default 40)")
    reads.add_argument("--reads-writers", type=int, help="Locust write users (default 8)")
    reads.add_argument("--reads-processes", type=int, help="Locust processes (default 1)")
    reads.add_argument(
        "--reads-report", type=Path, metavar="DIR", help="the campaign's report folder"
    )
    return parser


def _reads_options(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from bench.reads import ReadsOptions

    options = ReadsOptions.smoke() if args.smoke else ReadsOptions()
    overrides = {
        "writes_per_s": args.reads_writes,
        "read_rate": args.reads_rate,
        "duration_s": args.reads_duration,
        "readers": args.reads_readers,
        "writers": args.reads_writers,
        "locust_processes": args.reads_processes,
        "devices": args.reads_devices,
    }
    chosen = replace(options, **{k: v for k, v in overrides.items() if v is not None})
    if chosen.writes_per_s < 0:
        raise SystemExit(f"tap bench: --reads-writes must be 0 or more, got {chosen.writes_per_s}")
    if chosen.devices is not None and chosen.devices < 1:
        raise SystemExit(f"tap bench: --reads-devices must be at least 1, got {chosen.devices}")
    return chosen


def _selected(only: str) -> list[str]:
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"tap bench: unknown benchmark(s) {', '.join(unknown)}")
    return [n for n in BENCHMARKS if n in names]


def _runners(args: argparse.Namespace, log_dir: Path) -> dict[str, Callable[[Any], dict[str, Any]]]:
    """name -> function of the stack; smoke and full sizes decided here, in one place."""
    from bench import handoff, latency, reads, scale, throughput, tooling

    smoke = args.smoke
    throughput_options = throughput.ThroughputOptions(
        records=3_000 if smoke else 60_000,
        naive_records=200 if smoke else 3_000,
        repeat=1 if smoke else 3,
        profile_path=args.profile,
        durable=not args.fixture_pg,
    )
    latency_options = (
        latency.LatencyOptions(
            steps=(latency.Step(100),), steps_up=(), steps_between=(), seconds=4.0, warmup_s=1.0
        )
        if smoke
        else latency.LatencyOptions()
    )
    handoff_options = (
        handoff.HandoffOptions(sigterm_repeats=1, kill_repeats=1, lease_s=3.0)
        if smoke
        else handoff.HandoffOptions()
    )
    scale_options = scale.ScaleOptions(records=2_000 if smoke else 60_000)
    tooling_options = tooling.ToolingOptions(
        synth=not smoke,
        unit_target=tooling.SMOKE_UNIT_TARGET if smoke else "tests/unit",
        make_test=args.make_test and not smoke,
    )
    return {
        "throughput": lambda stack: throughput.run(stack, throughput_options),
        "latency": lambda stack: latency.run(stack, latency_options, log_dir / "latency"),
        "handoff": lambda stack: handoff.run(stack, handoff_options, log_dir / "handoff"),
        "scale": lambda stack: scale.run(stack, scale_options, log_dir / "scale"),
        "tooling": lambda stack: tooling.run(tooling_options),
        # Its own throwaway pipeline (tap load --target fresh), not the bench stack's.
        "reads": lambda stack: reads.run(
            _reads_options(args), args.reads_report or (log_dir / "reads")
        ),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    names = _selected(args.only)
    from bench.report import markdown, print_table
    from bench.stack import BenchStack

    machine = Machine.describe()
    results: dict[str, Any] = {
        "machine": machine.as_json(),
        "smoke": args.smoke,
        "command": "tap bench " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    failed: list[str] = []
    with BenchStack(keep=args.keep_run_dir) as stack:
        runners = _runners(args, stack.run_dir / "logs" / "bench")
        for name in names:
            print(f"tap bench: {name} (load {load_average()})...", file=sys.stderr, flush=True)
            try:
                results[name] = runners[name](stack)
            except Exception as exc:
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                failed.append(name)
        if args.keep_run_dir:
            results["run_dir"] = str(stack.run_dir)
    results["load_at_end"] = load_average()
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown(results))
    print_table(results, file=sys.stderr)
    if failed:
        return 1
    missed = [
        (name, goal)
        for name in names
        for goal in results[name].get("goals_missed", [])
        if name in OPT_IN
    ]
    if missed and not args.smoke:
        for name, goal in missed:
            print(f"tap bench: {name}: GOAL MISSED: {goal}", file=sys.stderr)
        return EXIT_GOALS_MISSED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
