"""Values that flow between the processor's core and its edges.

The Kinesis source produces :class:`KinesisRecord`; the core turns a list of them
into a :class:`ProcessedBatch`; the PostgreSQL store commits it under a
:class:`LeaseToken`; the Redis cache applies it after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import msgspec

# Re-exported (``as``): the contract defines it so the simulator can import it too.
from processor.contract.anomaly import AnomalyType as AnomalyType
from processor.contract.anomaly import Severity as Severity
from processor.contract.record import Reading, RejectReason


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    """One record as GetRecords returned it."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: datetime  # ApproximateArrivalTimestamp, tz-aware UTC


@dataclass(frozen=True, slots=True)
class AcceptedReading:
    """A valid reading with where and when it arrived."""

    reading: Reading
    shard_id: str
    sequence_number: str
    arrival: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that failed validation; stored with its full payload."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    reason: RejectReason
    detail: str
    arrival: datetime


class Anomaly(msgspec.Struct, frozen=True):
    """One detected anomaly. ``(device_id, boot, seq, anomaly_type, event_day)``
    identifies it, so replaying the same reading yields the same anomaly (idempotent
    storage), while a device that restarted its sequence (a new ``boot``, or a
    version 1 device whose seq starts again on a later day) raises anomalies of its
    own: the identity follows the reading's de-duplication key (issue 10 item 4)."""

    device_id: str
    seq: int  # the reading's seq; for SILENT the last seq seen
    ts: datetime  # event time of the reading; for SILENT the detection time
    anomaly_type: AnomalyType
    severity: Severity
    score: float
    explanation: str
    sensor_type: str = ""
    value: float | None = None
    #: The reading's boot counter (0 for schema version 1); for SILENT the boot of the
    #: last reading seen. Last, with a default: constructors that predate it still work.
    boot: int = 0

    @property
    def event_day(self) -> date:
        """The UTC day of ``ts``: for a reading's anomaly the reading's event day (the
        day in its de-duplication key); for SILENT the day the silence became definite."""
        return self.ts.astimezone(UTC).date()


@dataclass(slots=True)
class ProcessedBatch:
    """The outcome of one GetRecords batch of one shard, ready to commit."""

    shard_id: str
    readings: list[AcceptedReading] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    #: Sequence number of the last record of the batch: the checkpoint to commit.
    checkpoint: str | None = None
    #: True when the batch ends the shard (closed after a split or merge).
    shard_end: bool = False


@dataclass(frozen=True, slots=True)
class LeaseToken:
    """Proof of holding a shard lease. The store advances the checkpoint only if
    the row still has this owner and fencing counter."""

    shard_id: str
    owner: str
    fencing: int
