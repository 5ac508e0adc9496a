"""``python -m bench.machine_context``: what a machine-level Kinesis partition key
would buy the 5-minute temperature step test, measured offline (issue 9, design
option; docs/DETECTION.md, "A machine-level partition key").

Today the partition key is the device id, so a machine's temperature and its
equipment status land on different shards and no worker sees both. At a 5-minute
cadence the shape test cannot tell a swapped sensor's offset (a step that stays)
from a machine landing on a new equilibrium within one interval, so it does not
judge steps there. With the machine's status (and the plant's shift calendar) next
to the temperature the rule would be: a step out of a flat level while the
machine's status has not changed for ``--quiet-intervals`` intervals and the
calendar's load has not changed either cannot come from the process (a body at its
equilibrium stays there while its heat input is constant), so it is the sensor.

This back-test generates the month profile (the same fleet as ``bench.detection``),
finds every *step shape* in each temperature series offline (the shape test's
conditions: the two changes before within 3 sigma of the one-step noise, a jump of
>= 4 sigma, the next three readings within min(3 sigma, half the jump) of it, their
mean >= 4 sigma off the level before; sigma from the series' lower quartile of
|change| / 0.3186, at least the 0.1 C resolution; every interval <= 416 s) and
classifies it: at a ``level_shift`` onset (its first two readings), inside another
label, or healthy (the process). It then applies the status-and-calendar gate and
prints, per class, how many step shapes there are and how many pass the gate: the
level shifts a machine-level key would let the step test find, and the false
DRIFTs it would still raise. It changes nothing in the processor.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import itertools
import json
from collections import defaultdict
from typing import Any, Final

from bench.detection import _ARRIVAL, _LIMITS, PROFILES
from processor.contract.record import Reading, decode_reading
from simulator.anomalies import AnomalyLabel, Scenario
from simulator.signals import shift_load

_QUARTILE: Final = 0.3186
_MAX_INTERVAL_S: Final = 416.0


def _sigma(values: list[float]) -> float:
    changes = sorted(abs(b - a) for a, b in itertools.pairwise(values))
    if not changes:
        return 0.1
    return max(0.1, changes[len(changes) // 4] / _QUARTILE)


def step_shapes(series: list[tuple[int, float, float]]) -> list[int]:
    """Indexes of the readings that start a step shape (see the module docstring)."""
    values = [v for _, _, v in series]
    times = [t for _, t, _ in series]
    sigma = _sigma(values)
    out = []
    for i in range(3, len(series) - 3):
        if any(times[j] - times[j - 1] > _MAX_INTERVAL_S for j in range(i - 2, i + 4)):
            continue
        a, b, c = values[i - 1], values[i - 2], values[i - 3]
        if abs(a - b) > 3 * sigma or abs(b - c) > 3 * sigma:
            continue
        jump = values[i] - a
        base = (a + b + c) / 3.0
        if abs(jump) < 4 * sigma or abs(values[i] - base) < 4 * sigma:
            continue
        calm = min(3 * sigma, 0.5 * abs(jump))
        after = values[i + 1 : i + 4]
        if any(abs(x - values[i]) > calm for x in after):
            continue
        level = (values[i] + sum(after)) / 4.0
        if abs(level - base) < 4 * sigma:
            continue
        out.append(i)
    return out


def _quiet(status: list[tuple[float, str]], times: list[float], start: float, end: float) -> bool:
    """No status change of the machine within (start, end]."""
    lo = bisect.bisect_right(times, start)
    hi = bisect.bisect_right(times, end)
    if lo == 0:
        return False
    before = status[lo - 1][1]
    return all(s == before for _, s in status[lo:hi])


def run(seed: int, devices: int, quiet_intervals: int) -> dict[str, Any]:
    profile = PROFILES["month"]
    fleet = dataclasses.replace(profile, devices=devices).fleet(seed)
    temperature: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    status: dict[str, list[tuple[float, str]]] = defaultdict(list)
    labels: list[AnomalyLabel] = []
    end_ms = fleet.start_ms + int(profile.hours * 3_600_000)
    while batch := fleet.tick(end_ms - 1, limit=50_000):
        for record in batch:
            reading = decode_reading(record.data, arrival=_ARRIVAL, limits=_LIMITS)
            if not isinstance(reading, Reading):
                continue
            machine = reading.device_id.rsplit("-", 2)[0]
            t = record.ts_ms / 1000.0
            if reading.value is not None and reading.sensor_type.value == "temperature":
                temperature[reading.device_id].append((reading.seq, t, reading.value))
            elif reading.status is not None:
                status[machine].append((t, reading.status.value))
        labels.extend(x for x in fleet.drain_labels() if isinstance(x, AnomalyLabel))
    labels.extend(x for x in fleet.finish() if isinstance(x, AnomalyLabel))
    by_device: dict[str, list[AnomalyLabel]] = defaultdict(list)
    for label in labels:
        by_device[label.device_id].append(label)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # class -> [shapes, gated]
    found_shifts: set[tuple[str, int]] = set()
    for device_id, series in temperature.items():
        machine = device_id.rsplit("-", 2)[0]
        machine_status = status.get(machine, [])
        status_times = [t for t, _ in machine_status]
        for i in step_shapes(series):
            seq, t, _ = series[i]
            t_before = series[i - 1][1]
            kind = "healthy"
            for label in by_device.get(device_id, []):
                if label.anomaly == Scenario.LEVEL_SHIFT and 0 <= seq - label.start_seq <= 1:
                    kind = "level_shift onset"
                    break
                if label.start_seq - 1 <= seq <= label.end_seq + 5:
                    kind = f"inside {label.anomaly}"
            window_start = t - quiet_intervals * (t - t_before)
            calendar_quiet = shift_load(int(window_start * 1000))[0] == shift_load(int(t * 1000))[0]
            gated = calendar_quiet and _quiet(machine_status, status_times, window_start, t)
            counts[kind][0] += 1
            counts[kind][1] += int(gated)
            if gated and kind == "level_shift onset":
                found_shifts.add((device_id, seq))
    temperature_shifts = sum(
        1 for x in labels if x.anomaly == Scenario.LEVEL_SHIFT and x.sensor_type == "temperature"
    )
    return {
        "seed": seed,
        "temperature_level_shifts": temperature_shifts,
        "level_shifts_found_with_status": len(found_shifts),
        "step_shapes": {k: {"shapes": v[0], "pass_status_gate": v[1]} for k, v in counts.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.machine_context", description=__doc__)
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--devices", type=int, default=PROFILES["month"].devices)
    parser.add_argument(
        "--quiet-intervals",
        type=int,
        default=6,
        help="intervals without a status or calendar change before the step "
        "(default 6 = 30 min at 5 minutes: three thermal time constants of the "
        "quickest machine body, 10 min)",
    )
    args = parser.parse_args(argv)
    results = [
        run(int(s), args.devices, args.quiet_intervals) for s in args.seeds.split(",") if s.strip()
    ]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
