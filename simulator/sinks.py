"""Where simulated records go: Kinesis, a JSONL file or stdout, or memory.

Every sink keeps honest counts in :class:`SinkStats`:

``sent``     records the destination acknowledged (Kinesis: entries without an
             ``ErrorCode`` in a PutRecords response; files: lines written).
``failed``   records given up on after the last attempt. A record that exhausts
             its retries is counted here and never in ``sent``.
``retried``  re-sends: one record sent three times adds 2 to ``retried``.

The Kinesis sink is :class:`simulator.kinesis_producer.KinesisProducer` (batches of
at most 500 records and 5 MiB, re-sends of *only* the entries that came back with
an ``ErrorCode``, after :mod:`simulator.backoff`'s jittered back-off) with a buffer,
the counts and a token bucket when a target rate is set.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from simulator.aws_client import kinesis_client
from simulator.backoff import Backoff
from simulator.fleet import SimRecord
from simulator.kinesis_producer import (
    MAX_BYTES_PER_CALL,
    MAX_RECORD_BYTES,
    MAX_RECORDS_PER_CALL,
    RECORD_TOO_LARGE,
    KinesisProducer,
    PutOutcome,
    StreamRefused,
    entry_size,
)


@dataclass(slots=True)
class SinkStats:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    calls: int = 0
    bytes_sent: int = 0
    failed_by_code: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
            "calls": self.calls,
            "bytes_sent": self.bytes_sent,
            "failed_by_code": dict(self.failed_by_code),
        }


class Sink(Protocol):
    stats: SinkStats

    def send(self, records: Sequence[SimRecord]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


#: The destination refused the run as a whole (missing stream, no access).
SinkError = StreamRefused


class TokenBucket:
    """Paces to ``rate`` tokens per second with bursts of up to ``burst`` tokens.

    ``acquire(n)`` may take more than ``burst`` at once (a 500-record call against
    a 100 records/s budget): the bucket goes into debt and the caller sleeps it off,
    so the long-run rate holds whatever the batch size.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()

    def acquire(self, count: int) -> float:
        """Take ``count`` tokens, sleeping if needed; returns the seconds slept."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= count
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.rate
        self._sleep(wait)
        return wait


class KinesisSink:
    """The :class:`KinesisProducer` behind the :class:`Sink` interface: buffers
    records until a full call's worth (500 records or 5 MiB) is there, or
    :meth:`flush`, paces with a token bucket when a target rate is set, and keeps
    the counts. ``max_attempts`` counts the first try: with 5, an entry is sent at
    most five times before it counts as failed.
    """

    def __init__(
        self,
        stream: str,
        *,
        client: Any | None = None,
        max_attempts: int = 5,
        target_rate: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        bucket = TokenBucket(target_rate, clock=clock, sleep=sleep) if target_rate else None
        self.producer = KinesisProducer(
            stream,
            client if client is not None else kinesis_client(),
            backoff=Backoff(max_attempts=max_attempts),
            sleep=sleep,
            pace=bucket.acquire if bucket is not None else None,
        )
        self._buffer: list[SimRecord] = []
        self._buffer_bytes = 0
        self.stats = SinkStats()

    def send(self, records: Sequence[SimRecord]) -> None:
        for record in records:
            size = entry_size(record)
            if size > MAX_RECORD_BYTES:
                # Kinesis would reject the whole call; count the record, keep the rest.
                self.stats.failed += 1
                self.stats.failed_by_code[RECORD_TOO_LARGE] += 1
                continue
            if self._buffer and (
                len(self._buffer) >= MAX_RECORDS_PER_CALL
                or self._buffer_bytes + size > MAX_BYTES_PER_CALL
            ):
                self._put(self._buffer)
            self._buffer.append(record)
            self._buffer_bytes += size
        if len(self._buffer) >= MAX_RECORDS_PER_CALL:
            self._put(self._buffer)

    def flush(self) -> None:
        if self._buffer:
            self._put(self._buffer)

    def close(self) -> None:
        self.flush()

    def _put(self, batch: list[SimRecord]) -> None:
        self._buffer, self._buffer_bytes = [], 0
        try:
            outcome = self.producer.put(batch)
        except StreamRefused as exc:
            self._count(exc.outcome)
            self.stats.failed += exc.refused
            self.stats.failed_by_code[exc.code] += exc.refused
            raise
        self._count(outcome)

    def _count(self, outcome: PutOutcome[SimRecord]) -> None:
        stats = self.stats
        stats.calls += outcome.calls
        stats.retried += outcome.retried
        stats.sent += len(outcome.accepted)
        stats.bytes_sent += sum(len(record.data) for record, _ in outcome.accepted)
        stats.failed += len(outcome.failed)
        stats.failed_by_code.update(code for _, code in outcome.failed)


class JsonlSink:
    """One record per line to a file or stdout (``path == "-"``).

    The line is the record's bytes as they would go to Kinesis: the reading itself
    carries ``device_id``, ``sensor_type`` and ``seq``. Poison records are written
    as they are too (a ``not_utf8`` line is not UTF-8, on purpose).
    """

    def __init__(self, path: str | Path, *, target_rate: float | None = None) -> None:
        self.path = str(path)
        self._stream: IO[bytes]
        if self.path == "-":
            self._stream = sys.stdout.buffer
            self._owns = False
        else:
            self._stream = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self._owns = True
        self._bucket = TokenBucket(target_rate) if target_rate else None
        self.stats = SinkStats()

    def send(self, records: Sequence[SimRecord]) -> None:
        if not records:
            return
        if self._bucket is not None:
            self._bucket.acquire(len(records))
        chunk = b"\n".join(r.data for r in records) + b"\n"
        self._stream.write(chunk)
        self.stats.calls += 1
        self.stats.sent += len(records)
        self.stats.bytes_sent += len(chunk) - len(records)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self.flush()
        if self._owns:
            self._stream.close()


class MemorySink:
    """Keeps records in memory (``keep=True``) or only counts them: the benchmark's
    sink, so the measured speed is the generator's, not a destination's."""

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.records: list[SimRecord] = []
        self.stats = SinkStats()

    def send(self, records: Sequence[SimRecord]) -> None:
        if self.keep:
            self.records.extend(records)
        self.stats.calls += 1
        self.stats.sent += len(records)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def __iter__(self) -> Iterator[SimRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)
