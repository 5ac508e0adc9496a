"""The API's response documents (pydantic: they are the OpenAPI schema at ``/docs``)."""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Source(enum.StrEnum):
    """Where an answer's data came from."""

    REDIS = "redis"
    POSTGRES = "postgres"


class CacheState(enum.StrEnum):
    """What the cache said, and so why the answer came from where it did."""

    HIT = "hit"  # Redis had it, recent enough
    VERIFIED = "verified"  # Redis's was old; PostgreSQL had nothing newer
    STALE = "stale"  # Redis's was older than PostgreSQL's (written while Redis was out)
    MISS = "miss"  # Redis did not have it
    UNAVAILABLE = "unavailable"  # Redis did not answer (or its circuit is open)
    BYPASSED = "bypassed"  # the client asked for ?source=postgres


class DeviceLatest(BaseModel):
    device_id: str
    facility: str
    line: str
    sensor_type: str
    value: float | None
    status: str | None = Field(description="Equipment status sent with the reading, if any.")
    unit: str
    ts: datetime = Field(description="Event time of the latest reading (last seen).")
    seq: int
    arrival: datetime | None = Field(description="Kinesis arrival time of that reading.")


class LatestAnswer(BaseModel):
    device_id: str
    source: Source
    cache: CacheState
    reading: DeviceLatest


class DevicesAnswer(BaseModel):
    source: Source
    cache: CacheState
    devices: list[DeviceLatest]
    next_after: str | None = Field(
        description="Pass as ?after= for the next page; null on the last page."
    )


class RawReading(BaseModel):
    ts: datetime
    seq: int
    boot: int
    value: float | None
    status: str | None


class BucketStats(BaseModel):
    start: datetime
    min: float | None
    avg: float | None
    max: float | None
    count: int


class ReadingsAnswer(BaseModel):
    # "from" and "to" on the wire (the query's names), start/end in Python.
    model_config = ConfigDict(populate_by_name=True)

    device_id: str
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    bucket: str | None
    source: Source = Source.POSTGRES
    readings: list[RawReading] | None = None
    buckets: list[BucketStats] | None = None
    next_cursor: str | None = Field(
        default=None, description="Raw readings only: pass as ?cursor= for the next page."
    )


class AnomalyOut(BaseModel):
    anomaly_id: str
    device_id: str
    facility: str | None
    line: str | None
    seq: int
    boot: int
    type: str
    severity: str
    score: float
    explanation: str
    ts: datetime
    detected_at: datetime | None
    sensor_type: str
    value: float | None


class AnomaliesAnswer(BaseModel):
    source: Source = Source.POSTGRES
    anomalies: list[AnomalyOut]
    truncated: bool


class DeadLetterCount(BaseModel):
    reason: str
    hour: datetime
    count: int


class DeadLetterSummary(BaseModel):
    since: datetime
    total: int
    counts: list[DeadLetterCount]


class Liveness(BaseModel):
    ok: bool


class Health(BaseModel):
    ok: bool
    postgres: bool
    redis: bool
