"""``tap bench [--only NAMES] [--smoke] [--json FILE] ...``: run the benchmarks.

Prints one JSON document (every figure, its reference, ratios, the machine and the
load average around each measurement) and a short table. ``--smoke`` runs a tiny
version of each benchmark in well under two minutes: it proves the benchmark still
runs (``tests/bench``), its numbers mean nothing.

Exit code 0 when every selected benchmark ran (goals missed are reported, not
failed: speed is a figure, not a test), 1 when one of them crashed.
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

BENCHMARKS: Final = ("throughput", "latency", "handoff", "scale", "tooling")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tap bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all)",
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
    return parser


def _selected(only: str) -> list[str]:
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"tap bench: unknown benchmark(s) {', '.join(unknown)}")
    return [n for n in BENCHMARKS if n in names]


def _runners(args: argparse.Namespace, log_dir: Path) -> dict[str, Callable[[Any], dict[str, Any]]]:
    """name -> function of the stack; smoke and full sizes decided here, in one place."""
    from bench import handoff, latency, scale, throughput, tooling

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
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
