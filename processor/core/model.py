"""Values that flow between the processor's core and its edges.

The Kinesis source produces :class:`KinesisRecord`; the core turns a list of them
into a :class:`ProcessedBatch`; the PostgreSQL store commits it under a
:class:`LeaseToken`; the Redis cache applies it after the commit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

# Re-exported (``as``): the contract defines it so the simulator can import it too.
from processor.contract.anomaly import AnomalyType as AnomalyType
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


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Anomaly(msgspec.Struct, frozen=True):
    """One detected anomaly. ``(device_id, seq, anomaly_type)`` identifies it, so
    replaying the same reading yields the same anomaly (idempotent storage)."""

    device_id: str
    seq: int  # the reading's seq; for SILENT the last seq seen
    ts: datetime  # event time of the reading; for SILENT the detection time
    anomaly_type: AnomalyType
    severity: Severity
    score: float
    explanation: str
    sensor_type: str = ""
    value: float | None = None


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
