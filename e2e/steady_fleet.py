"""A fleet that keeps reporting in real time, for the silence tests: every device
sends one reading per ``interval`` (event time = now) until it is stopped, in the
background, while a scenario breaks something; :meth:`SteadyFleet.silence` makes one
device stop for good.

The silence detector judges a device against the stream's own progress, so these
tests need readings that really arrive over minutes, not a pre-built burst.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from local_pipeline.verify import Record, SendResult, put_records
from processor.contract.record import Reading, SensorType, encode_reading


class SteadyFleet(threading.Thread):
    """``devices`` temperature sensors named ``f"{prefix}-{i:04d}"``, one reading
    each per ``interval`` seconds, sent with one PutRecords per round."""

    def __init__(
        self,
        kinesis: Any,
        stream: str,
        devices: int,
        *,
        interval: float = 1.0,
        prefix: str = "live",
    ) -> None:
        super().__init__(name="steady-fleet", daemon=True)
        self.kinesis, self.stream, self.interval = kinesis, stream, interval
        self.devices = [f"{prefix}-{i:04d}" for i in range(devices)]
        self.sent = SendResult()
        #: device -> last seq sent
        self.last_seq: dict[str, int] = {}
        self.error: BaseException | None = None
        self._silenced: set[str] = set()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._round = threading.Condition()
        self.rounds = 0

    def silence(self, device_id: str) -> int:
        """Stop ``device_id`` for good; returns the last seq it sent."""
        with self._lock:
            self._silenced.add(device_id)
        # The round in flight may still carry it: wait for the next one to finish.
        self.wait_rounds(2)
        return self.last_seq[device_id]

    def revive(self, device_id: str) -> None:
        """``device_id`` reports again from the next round (a unit back from repair)."""
        with self._lock:
            self._silenced.discard(device_id)
        self.wait_rounds(2)

    def wait_rounds(self, n: int, timeout: float = 30.0) -> None:
        with self._round:
            target = self.rounds + n
            if not self._round.wait_for(lambda: self.rounds >= target, timeout=timeout):
                raise TimeoutError(f"the fleet did not send {n} rounds in {timeout} s")

    def run(self) -> None:
        seq = 0
        try:
            while not self._halt.is_set():
                started = time.monotonic()
                now = datetime.now(UTC)
                with self._lock:
                    alive = [d for d in self.devices if d not in self._silenced]
                records = []
                for i, device_id in enumerate(alive):
                    reading = Reading(
                        device_id=device_id,
                        facility="fac1",
                        line=f"l{i % 4:02d}",
                        sensor_type=SensorType.TEMPERATURE,
                        unit="C",
                        ts=now,
                        seq=seq,
                        schema_version=1,
                        value=round(65.0 + (seq + i) % 7 * 0.1, 2),
                    )
                    records.append(Record(encode_reading(reading), device_id, (device_id, seq)))
                self.sent.merge(put_records(self.kinesis, self.stream, records))
                for device_id in alive:
                    self.last_seq[device_id] = seq
                seq += 1
                with self._round:
                    self.rounds += 1
                    self._round.notify_all()
                self._halt.wait(max(0.0, self.interval - (time.monotonic() - started)))
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self) -> SendResult:
        self._halt.set()
        self.join(timeout=30)
        assert self.error is None, self.error
        return self.sent
