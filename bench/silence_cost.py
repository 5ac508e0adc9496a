"""CPU cost of the silence tracker per reading, apart from the pipeline.

``python -m bench.silence_cost``: 500 devices x 200 batches of one reading per
device (the worst case for the registry: every reading's device gets its entry
encoded for Redis), timing ``SilenceTracker.observe_batch``, ``dirty_entries`` (the
JSON the commit path writes) and ``check`` (run after every batch here; the worker
runs it every 5 s) with ``time.process_time``. Prints microseconds per reading.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from processor.contract.record import Reading, SensorType
from processor.core.model import AcceptedReading
from processor.core.silence import SilenceTracker

DEVICES = 500
BATCHES = 200
T0 = datetime(2026, 11, 30, tzinfo=UTC)


def _batches() -> list[list[AcceptedReading]]:
    out = []
    for k in range(BATCHES):
        batch = []
        for i in range(DEVICES):
            ts = T0 + timedelta(seconds=k, milliseconds=i)
            reading = Reading(
                device_id=f"dev-{i:04d}",
                facility="f",
                line="l",
                sensor_type=SensorType.TEMPERATURE,
                unit="C",
                ts=ts,
                seq=k,
                schema_version=1,
                value=70.0,
            )
            batch.append(AcceptedReading(reading, "s", str(k * DEVICES + i), ts))
        out.append(batch)
    return out


def measure() -> dict[str, float]:
    batches = _batches()
    tracker = SilenceTracker()
    spent = {"observe_us": 0.0, "encode_us": 0.0, "check_us": 0.0}
    for batch in batches:
        started = time.process_time()
        tracker.observe_batch(batch)
        encoded = time.process_time()
        entries = tracker.dirty_entries()
        tracker.clear_dirty(entries)
        checked = time.process_time()
        tracker.check()
        done = time.process_time()
        spent["observe_us"] += encoded - started
        spent["encode_us"] += checked - encoded
        spent["check_us"] += done - checked
    readings = DEVICES * BATCHES
    return {k: round(v / readings * 1e6, 2) for k, v in spent.items()}


if __name__ == "__main__":
    print(json.dumps({"readings": DEVICES * BATCHES, "per_reading": measure()}))
