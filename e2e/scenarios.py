"""Traffic for the e2e scenarios: readings stamped with the current time, sent in
real time in the background. The pipeline they run against is
:class:`local_pipeline.pipeline.LocalPipeline` (moved there from this module,
issue 12).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from local_pipeline.verify import Record, SendResult, put_records

# --- traffic for scenarios -------------------------------------------------------------


def readings_now(
    prefix: str, devices: int, seq: int, *, ts: datetime | None = None
) -> list[Record]:
    """One reading per device ``f"{prefix}-{i:04d}"`` with sequence ``seq``, stamped
    with the current time (so event -> store latency is meaningful)."""
    from processor.contract.record import Reading, SensorType, encode_reading

    moment = ts or datetime.now(UTC)
    out = []
    for i in range(devices):
        device_id = f"{prefix}-{i:04d}"
        reading = Reading(
            device_id=device_id,
            facility="e2e",
            line=f"l{i % 4:02d}",
            sensor_type=SensorType.TEMPERATURE,
            unit="C",
            ts=moment,
            seq=seq,
            schema_version=1,
            # A smooth, bounded wave: no detector fires on it.
            value=round(65.0 + 3.0 * ((seq + i) % 20) / 20.0, 3),
        )
        out.append(Record(encode_reading(reading), device_id, (device_id, seq)))
    return out


class RealTimeSender(threading.Thread):
    """Sends one reading per device every ``period_s`` for ``seconds`` (event time =
    send time), in the background; ``add(records)`` queues more (a burst, poison)
    to go out with the next tick. ``finish()`` joins and returns the :class:`SendResult`."""

    def __init__(
        self,
        client: Any,
        stream: str,
        prefix: str,
        *,
        devices: int,
        period_s: float,
        seconds: float,
    ) -> None:
        super().__init__(name=f"sender-{prefix}", daemon=True)
        self.client, self.stream, self.prefix = client, stream, prefix
        self.devices, self.period_s, self.seconds = devices, period_s, seconds
        self.result = SendResult()
        self.error: BaseException | None = None
        self.device_ids = [f"{prefix}-{i:04d}" for i in range(devices)]
        self._extra: list[Record] = []
        self._lock = threading.Lock()
        self.ticks = 0

    def add(self, records: Sequence[Record]) -> None:
        with self._lock:
            self._extra.extend(records)

    def run(self) -> None:
        try:
            began = time.monotonic()
            seq = 0
            while time.monotonic() - began < self.seconds:
                tick = time.monotonic()
                batch = readings_now(self.prefix, self.devices, seq)
                with self._lock:
                    batch += self._extra
                    self._extra = []
                self.result.merge(put_records(self.client, self.stream, batch))
                seq += 1
                self.ticks += 1
                time.sleep(max(0.0, self.period_s - (time.monotonic() - tick)))
            with self._lock:
                leftover, self._extra = self._extra, []
            if leftover:
                self.result.merge(put_records(self.client, self.stream, leftover))
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self, timeout: float = 120) -> SendResult:
        self.join(timeout=timeout)
        if self.error is not None:
            raise self.error
        if self.is_alive():
            raise TimeoutError(f"sender {self.prefix} still running after {timeout} s")
        return self.result
