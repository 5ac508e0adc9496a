"""Generation speed of the simulator into the in-memory sink.

``python -m simulator.bench [--devices 10000] [--records 1000000] [--repeat 3] [--json]``

Reports the best of ``--repeat`` runs as readings per second of wall time and
per second of this process's CPU time (the "one core" figure: on a shared
machine other processes steal wall time, not CPU time). Fleet construction is
timed separately. :func:`measure_generation` is what ``tap bench`` calls.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import msgspec

from simulator.fleet_options import FleetOptions, add_fleet_arguments, fleet_options
from simulator.sinks import MemorySink

#: Records per ``generate`` call, as the CLI asks for them.
CHUNK = 5000


@dataclass(frozen=True, slots=True)
class GenerationResult:
    devices: int
    records: int
    anomaly_rate: float
    poison_rate: float
    build_s: float
    wall_s: float
    cpu_s: float
    records_per_wall_s: float
    records_per_cpu_s: float


def measure_generation(
    devices: int = 10_000,
    records: int = 1_000_000,
    *,
    seed: int = 7,
    rate: float = 1.0,
    anomaly_rate: float = 0.0,
    poison_rate: float = 0.0,
) -> GenerationResult:
    """Generate ``records`` records from a fresh fleet into a counting MemorySink."""
    start = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # a Monday morning shift
    built = time.perf_counter()
    options = FleetOptions(devices, rate, seed, anomaly_rate, poison_rate)
    fleet = options.fleet(start)
    build_s = time.perf_counter() - built
    sink = MemorySink(keep=False)
    remaining = records
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while remaining > 0:
        batch = fleet.generate(min(CHUNK, remaining))
        sink.send(batch)
        remaining -= len(batch)
    wall_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
    return GenerationResult(
        devices=devices,
        records=sink.stats.sent,
        anomaly_rate=anomaly_rate,
        poison_rate=poison_rate,
        build_s=build_s,
        wall_s=wall_s,
        cpu_s=cpu_s,
        records_per_wall_s=sink.stats.sent / wall_s,
        records_per_cpu_s=sink.stats.sent / cpu_s if cpu_s > 0 else float("inf"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.bench", description=__doc__)
    add_fleet_arguments(parser, defaults=FleetOptions(devices=10_000))
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    fleet = fleet_options(args)
    runs = [
        measure_generation(
            fleet.devices,
            args.records,
            seed=fleet.seed,
            rate=fleet.rate,
            anomaly_rate=fleet.anomaly_rate,
            poison_rate=fleet.poison_rate,
        )
        for _ in range(max(1, args.repeat))
    ]
    best = max(runs, key=lambda r: r.records_per_cpu_s)
    if args.json:
        payload = {**asdict(best), "python": platform.python_version(), "runs": len(runs)}
        print(msgspec.json.encode(payload).decode())
    else:
        print(
            f"{best.records:,} records from {best.devices:,} devices "
            f"(anomaly rate {best.anomaly_rate}, poison rate {best.poison_rate}): "
            f"{best.records_per_cpu_s:,.0f} records/s per CPU second, "
            f"{best.records_per_wall_s:,.0f} records/s wall "
            f"(best of {len(runs)}; fleet built in {best.build_s:.2f} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
