"""``python -m bench.river_detection``: a maintained library's online change detector
against the bank's hand-written regime levels, on the same fleet and scorer (issue 9
item 5). river is not a project dependency: ``pip install river`` into your venv.

Both judge pressure sensors only (the scenarios ``gain_loss`` and ``level_shift``
of a press line). river's ``drift.PageHinkley`` (its defaults: ``min_instances=30,
delta=0.005, threshold=50, alpha=0.9999``) gets each device's running readings in
percent of the device's learned plateau (the bank's envelope top), the same
standardisation the bank does; it reports DRIFT on the reading where it alarms.
The bank's figures are its own DRIFT detections on the same pressure devices.
Cost: microseconds per update of river's detector over the same values, against
the whole bank per reading. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.detection import _ARRIVAL, _LIMITS, PROFILES
from processor.contract.anomaly import AnomalyType
from processor.contract.record import Reading, SensorType, decode_reading
from processor.core.detection import DetectorBank
from processor.core.model import Anomaly, Severity
from simulator.scoring import score


def _summary(anomalies: list[Anomaly], labels: list[Any], observed: dict[str, float]) -> Any:
    report = score(anomalies, labels, observed_s=observed).as_dict()
    keep = ("gain_loss", "level_shift")
    return {
        "recall": {k: v for k, v in report["by_scenario"].items() if k in keep},
        "drift": report["by_detector"].get("drift"),
    }


def main(argv: list[str] | None = None) -> int:
    from river import drift  # not a dependency: see the module docstring

    parser = argparse.ArgumentParser(prog="python -m bench.river_detection", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="month")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    fleet = profile.fleet(args.seed)
    end_ms = fleet.start_ms + int(profile.hours * 3_600_000)
    bank = DetectorBank()
    ours: list[Anomaly] = []
    theirs: list[Anomaly] = []
    detectors: dict[str, Any] = {}
    labels: list[Any] = []
    spans: dict[str, list[float]] = {}
    river_s = bank_s = 0.0
    updates = readings = 0
    while batch := fleet.tick(end_ms - 1, limit=50_000):
        for record in batch:
            reading = decode_reading(record.data, arrival=_ARRIVAL, limits=_LIMITS)
            if not isinstance(reading, Reading) or reading.sensor_type is not SensorType.PRESSURE:
                continue
            readings += 1
            t = reading.ts.timestamp()
            spans.setdefault(reading.device_id, [t, t])[1] = t
            out: list[Anomaly] = []
            began = time.perf_counter()
            bank.observe_into(reading, out)
            bank_s += time.perf_counter() - began
            ours.extend(a for a in out if a.anomaly_type is AnomalyType.DRIFT)
            state = bank.state_of(reading.device_id)
            x = reading.value
            if state is None or x is None or state.env_high <= 0.0:
                continue
            if t - state.first_ts < 86_400.0 or x <= 0.5 * (state.env_low + state.env_high):
                continue  # learning, or stopped: the same regime split as the bank's
            detector = detectors.get(reading.device_id)
            if detector is None:
                detector = detectors[reading.device_id] = drift.PageHinkley()
            began = time.perf_counter()
            detector.update(100.0 * x / state.env_high)
            river_s += time.perf_counter() - began
            updates += 1
            if detector.drift_detected:
                theirs.append(
                    Anomaly(
                        device_id=reading.device_id,
                        seq=reading.seq,
                        ts=reading.ts,
                        anomaly_type=AnomalyType.DRIFT,
                        severity=Severity.WARNING,
                        score=0.0,
                        explanation="river PageHinkley",
                    )
                )
        labels.extend(fleet.drain_labels())
    labels.extend(fleet.finish())
    labels = [lb for lb in labels if getattr(lb, "sensor_type", "") == "pressure"]
    observed = {d: b - a for d, (a, b) in spans.items()}
    result = {
        "profile": args.profile,
        "seed": args.seed,
        "pressure_readings": readings,
        "bank_regime_levels": _summary(ours, labels, observed),
        "river_page_hinkley": _summary(theirs, labels, observed),
        "cost_us": {
            "river_update": round(river_s / max(updates, 1) * 1e6, 2),
            "bank_per_reading": round(bank_s / max(readings, 1) * 1e6, 2),
            "river_updates": updates,
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
