"""``python -m bench.spot_detection``: SPOT (extreme-value thresholds, the maintained
C library ``libspot``) against the bank's fixed robust-z thresholds, on the same
fleet, the same residuals and the same scorer (issue 9 item 3: "use a maintained
library where it beats hand-written code at the same cost per reading ... measure
both"). libspot is not a project dependency: ``pip install libspot`` into your venv.

What is compared: the bank's ``statistical`` detector judges the robust z of the
one-step residual against its Holt baseline with fixed thresholds (5 warning, 8
critical, re-armed under 3). SPOT learns the tail of the same |z| per device
(generalised Pareto over the excesses above its ``level`` quantile) and flags a value
whose probability is under ``q``. Both see the identical z: it is read from the
bank's saved state just before each reading (the level, trend and variance the
bank's own detector uses), for the sensors and cadences where the bank judges that
z (temperature at <= 60 s between readings; regime sensors and slow cadences judge
an envelope instead, so the day profile at 1 Hz is the one to run). SPOT is fitted
on each device's first ``--fit`` values (its calibration) and then stepped on every
value (the bank's detections count from the same reading on, where both judge);
it reports STATISTICAL on the first flagged value of an excursion and re-arms
under the bank's own ``z_reset``, so the two differ in their thresholds only.
``q`` defaults to 1e-5: the bank's z = 5 on Gaussian noise is about one false
warning per 100,000 readings, so the two aim at the same false-alarm rate.

Both are scored by :func:`simulator.scoring.score` with only their STATISTICAL
detections, against the labels of the same devices: recall per scenario *by that
detector alone* (the bank's other detectors are left out of both), and precision.
Cost: microseconds per ``Spot.step`` against the whole bank per reading, in the
same run. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from typing import Any

from bench.detection import _ARRIVAL, _LIMITS, PROFILES
from processor.contract.anomaly import AnomalyType
from processor.contract.record import Reading, SensorType, decode_reading
from processor.core.detection import DetectorBank, DetectorConfig
from processor.core.model import Anomaly, Severity
from simulator.scoring import score


def _summary(found: list[Anomaly], labels: list[Any], observed: dict[str, float]) -> Any:
    report = score(found, labels, observed_s=observed).as_dict()
    return {
        "recall_by_this_detector_alone": {
            name: {k: s[k] for k in ("labels", "detected", "recall")}
            for name, s in report["by_scenario"].items()
            if not s.get("quiet")
        },
        "statistical": report["by_detector"]["statistical"],
        "healthy": report["healthy"],
    }


def _flag(reading: Reading, z: float, source: str) -> Anomaly:
    return Anomaly(
        device_id=reading.device_id,
        seq=reading.seq,
        ts=reading.ts,
        anomaly_type=AnomalyType.STATISTICAL,
        severity=Severity.WARNING,
        score=abs(z),
        explanation=source,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spot_detection", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="day")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--devices", type=int, help="override the profile's fleet size")
    parser.add_argument("--hours", type=float, help="override the profile's span")
    parser.add_argument("--q", type=float, default=1e-5, help="SPOT's anomaly probability")
    parser.add_argument("--level", type=float, default=0.998, help="SPOT's tail quantile")
    parser.add_argument(
        "--fit", type=int, default=7200, help="values per device to fit SPOT on (2 h at 1 Hz)"
    )
    args = parser.parse_args(argv)
    # The first setting out of range is named (0 < q < 1 - level < 1; at least
    # 10 values of the fit above the level, the tail SPOT fits).
    if not 0.0 < args.level < 1.0:
        parser.error(f"--level {args.level} is out of range: 0 < level < 1")
    if not 0.0 < args.q < 1.0 - args.level:
        parser.error(f"--q {args.q} is out of range: 0 < q < 1 - level")
    if args.fit < math.ceil(10 / (1.0 - args.level)):
        parser.error(f"--fit {args.fit} is too few: at least 10 / (1 - level) values")
    import libspot  # not a dependency: see the module docstring

    profile = PROFILES[args.profile]
    if args.devices:
        profile = dataclasses.replace(profile, devices=args.devices)
    if args.hours:
        profile = dataclasses.replace(profile, hours=args.hours)
    fleet = profile.fleet(args.seed)
    config = DetectorConfig()
    lim = config.limits_for(SensorType.TEMPERATURE)
    end_ms = fleet.start_ms + int(profile.hours * 3_600_000)
    bank = DetectorBank(config)
    ours: list[Anomaly] = []
    theirs: list[Anomaly] = []
    fitting: dict[str, list[float]] = {}
    spots: dict[str, Any] = {}
    armed: dict[str, bool] = {}
    labels: list[Any] = []
    spans: dict[str, list[float]] = {}
    spot_s = bank_s = 0.0
    steps = readings = judged = 0
    while batch := fleet.tick(end_ms - 1, limit=50_000):
        for record in batch:
            reading = decode_reading(record.data, arrival=_ARRIVAL, limits=_LIMITS)
            if (
                not isinstance(reading, Reading)
                or reading.sensor_type is not SensorType.TEMPERATURE
            ):
                continue
            readings += 1
            t = reading.ts.timestamp()
            spans.setdefault(reading.device_id, [t, t])[1] = t
            before = bank.state_of(reading.device_id)
            z = None
            x = reading.value
            if (
                before is not None
                and x is not None
                and before.count >= config.warmup
                and 0.0 < t - before.last_ts <= config.fast_cadence_s
            ):
                # The bank's own z for this reading, from its state before it.
                scale = max(math.sqrt(before.var), lim.min_scale)
                z = (x - (before.mean + before.trend)) / scale
            out: list[Anomaly] = []
            began = time.perf_counter()
            bank.observe_into(reading, out)
            bank_s += time.perf_counter() - began
            device = reading.device_id
            spot = spots.get(device)
            if spot is not None:
                # Compared where both judge: after SPOT's calibration on the device.
                ours.extend(a for a in out if a.anomaly_type is AnomalyType.STATISTICAL)
            if z is None:
                continue
            judged += 1
            if spot is None:
                sample = fitting.setdefault(device, [])
                sample.append(abs(z))
                if len(sample) >= args.fit:
                    spot = spots[device] = libspot.Spot(
                        q=args.q,
                        low=False,
                        discard_anomalies=True,
                        level=args.level,
                        max_excess=200,
                    )
                    spot.fit(sample)
                    del fitting[device]
                    armed[device] = True
                continue
            began = time.perf_counter()
            verdict = spot.step(abs(z))
            spot_s += time.perf_counter() - began
            steps += 1
            if verdict == libspot.ANOMALY:
                if armed[device]:
                    theirs.append(_flag(reading, z, "libspot SPOT"))
                    armed[device] = False
            elif abs(z) < config.z_reset:
                armed[device] = True
        labels.extend(fleet.drain_labels())
    labels.extend(fleet.finish())
    labels = [lb for lb in labels if getattr(lb, "sensor_type", "") == "temperature"]
    observed = {d: b - a for d, (a, b) in spans.items()}
    result = {
        "profile": args.profile,
        "seed": args.seed,
        "devices": profile.devices,
        "hours": profile.hours,
        "spot": {"q": args.q, "level": args.level, "fit": args.fit, "version": libspot.__version__},
        "temperature_readings": readings,
        "readings_with_the_banks_z": judged,
        "bank_fixed_z": _summary(ours, labels, observed),
        "libspot_spot": _summary(theirs, labels, observed),
        "cost_us": {
            "spot_step": round(spot_s / max(steps, 1) * 1e6, 2),
            "bank_per_reading": round(bank_s / max(readings, 1) * 1e6, 2),
            "spot_steps": steps,
        },
        "state": {
            # What a new owner of the shard would have to restore (handoff, deploy).
            "spot_raw_bytes": len(next(iter(spots.values())).raw()) if spots else None,
            "spot_restorable_from_bytes": any(
                hasattr(libspot.Spot, name) for name in ("from_raw", "load", "from_bytes")
            ),
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
