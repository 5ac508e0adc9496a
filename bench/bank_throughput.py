"""What the detector bank of issue 9 costs the processor's throughput.

Issue 9's goal: the new bank must not lower one process's throughput by more than
10 % against the bank before issue 9 (``bench.reference_detection``, frozen at
4a578b2). ``python -m bench.detection --cost-only`` times the banks alone; this
times them **inside the pipeline**: the same pre-generated GetRecords batches go
through exactly what ``tap bench``'s throughput figure runs per batch
(``process_records`` with the bank, ``commit_batch`` on a durable PostgreSQL under
a real lease, ``RedisCache.apply``, the detector-state save), once with each bank,
each round on a fresh database, in alternating order (A B, B A, ...) so a load
change on the shared machine hits both alike.

Two figures per bank, each the median of its rounds: records per second (what the
goal names) and the process's CPU per record (what a CPU-bound process's rate is the
inverse of, and what other processes' load moves least). The drop is
``1 - new / reference``; the run fails (exit 1, ``MISSED:``) when the rate's drop
exceeds the goal, and says so when only the CPU figure does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

from bench import reference_detection
from bench.machine import LoadWindow, Machine
from bench.stack import BenchStack
from bench.throughput import DEFAULT_BATCH, DEVICES, make_batches, pipeline_round
from processor.core.detection import DetectorBank

#: Issue 9: "today's throughput must not drop by more than 10 %".
GOAL_MAX_DROP: Final = 0.10


def _reference_bank() -> DetectorBank:
    # The frozen bank has the surface process_records and the round use (missing,
    # load_state, observe_into, dirty_states, clear_dirty); it is a different class.
    return cast(
        DetectorBank, reference_detection.DetectorBank(reference_detection.DetectorConfig())
    )


BANKS: Final[dict[str, Callable[[], DetectorBank]]] = {
    "reference": _reference_bank,
    "current": DetectorBank,
}


def run(*, records: int, devices: int, rounds: int, batch: int = DEFAULT_BATCH) -> dict[str, Any]:
    """``rounds`` rounds of each bank, alternating which goes first."""
    if records < 2 * batch:
        raise ValueError(f"--records must be at least two batches ({2 * batch}), got {records}")
    if rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {rounds}")
    batches = make_batches(records, batch, devices=devices)
    per_bank: dict[str, list[dict[str, Any]]] = {name: [] for name in BANKS}
    with BenchStack() as stack, LoadWindow() as load:
        pg = stack.durable_postgres()
        for i in range(rounds):
            order = list(BANKS) if i % 2 == 0 else list(reversed(BANKS))
            for name in order:
                result, _ = pipeline_round(stack, pg, batches, None, bank=BANKS[name]())
                per_bank[name].append(result)
        durable = stack.is_durable(pg)
    figures: dict[str, Any] = {}
    for name, results in per_bank.items():
        figures[name] = {
            "records_per_s": statistics.median(r["records_per_s"] for r in results),
            "cpu_us_per_record": statistics.median(r["client_cpu_us_per_record"] for r in results),
            "anomalies_per_round": results[-1]["anomalies"],
            "rounds": [
                {
                    "records_per_s": round(r["records_per_s"], 1),
                    "cpu_us_per_record": round(r["client_cpu_us_per_record"], 2),
                }
                for r in results
            ],
        }
    ref, new = figures["reference"], figures["current"]
    rate_drop = 1 - new["records_per_s"] / ref["records_per_s"]
    # A process bound by its CPU runs at 1 / (CPU per record): the drop that implies.
    cpu_drop = 1 - ref["cpu_us_per_record"] / new["cpu_us_per_record"]
    return {
        "records_per_round": sum(len(b) for b in batches[1:]),
        "devices": devices,
        "batch_records": batch,
        "rounds_per_bank": rounds,
        "postgres_durable": durable,
        "banks": figures,
        "rate_drop": rate_drop,
        "cpu_drop": cpu_drop,
        "goal_max_drop": GOAL_MAX_DROP,
        "machine": Machine.describe().as_json(),
        **load.as_json(),
    }


def report(result: dict[str, Any]) -> tuple[str, list[str]]:
    """The printed table and the goals missed (empty when met)."""
    lines = [
        f"{result['records_per_round']} records per round, {result['devices']} devices, "
        f"batches of {result['batch_records']}, {result['rounds_per_bank']} rounds per bank, "
        f"durable PostgreSQL: {result['postgres_durable']}, "
        f"load {result['load_start']} -> {result['load_end']}",
        f"{'bank':<10} {'records/s':>10} {'CPU us/record':>14}  rounds (records/s, CPU us)",
    ]
    for name, fig in result["banks"].items():
        rounds = ", ".join(
            f"{r['records_per_s']:.0f}/{r['cpu_us_per_record']:.1f}" for r in fig["rounds"]
        )
        lines.append(
            f"{name:<10} {fig['records_per_s']:>10.0f} {fig['cpu_us_per_record']:>14.2f}  {rounds}"
        )
    lines.append(
        f"drop: records/s {result['rate_drop']:+.1%}, implied by CPU per record "
        f"{result['cpu_drop']:+.1%} (goal <= {result['goal_max_drop']:.0%})"
    )
    missed = []
    if result["rate_drop"] > result["goal_max_drop"]:
        missed.append(
            f"MISSED: throughput drop {result['rate_drop']:.1%} > {result['goal_max_drop']:.0%}"
        )
    if result["cpu_drop"] > result["goal_max_drop"]:
        missed.append(
            f"MISSED: drop implied by CPU per record {result['cpu_drop']:.1%} > "
            f"{result['goal_max_drop']:.0%}"
        )
    return "\n".join(lines), missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bank_throughput", description=__doc__)
    parser.add_argument(
        "--records", type=int, default=60_000, help="records per round (default 60000)"
    )
    parser.add_argument(
        "--devices", type=int, default=DEVICES, help=f"devices in the fleet (default {DEVICES})"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per bank (default 3)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    try:
        result = run(records=args.records, devices=args.devices, rounds=args.rounds)
    except ValueError as exc:
        parser.error(str(exc))
    table, missed = report(result)
    print(table)
    for line in missed:
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps({**result, "missed": missed}, indent=2) + "\n")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
