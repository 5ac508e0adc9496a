"""Writes readings, anomalies and dead letters through the processor's own edges
(:class:`PostgresStore` commit, then :class:`RedisCache` apply), as a worker does
after a batch: what the read API's tests and the board's browser test feed it.

A test can write to PostgreSQL only (``redis=False``), which is what a worker does
while Redis is out, to make the cache stale on purpose.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime

from processor.contract.environment import ProcessorSettings
from processor.contract.record import Reading, RejectReason, SensorType
from processor.core.model import (
    AcceptedReading,
    Anomaly,
    AnomalyType,
    DeadLetter,
    ProcessedBatch,
    Severity,
)
from processor.postgres import PostgresStore
from processor.redis_cache import RedisCache
from processor.secrets import SecretsProvider

SHARD: str = "shardId-000000000000"


class PlantWriter:
    """The processor's writes, driven by hand. Use as a context manager."""

    def __init__(self, settings: ProcessorSettings) -> None:
        secrets = SecretsProvider.from_settings(settings, min_refresh_interval_s=0)
        self.store = PostgresStore.from_settings(settings, secrets)
        self.cache = RedisCache(settings, secrets)
        self.store.ensure_partitions()
        self.cache.recover(self.store)
        token = self.store.try_acquire(SHARD, "plant-writer", 3600)
        assert token is not None, "the writer's shard lease is held by someone else"
        self._token = token
        self._kinesis_seq = itertools.count(1)

    def __enter__(self) -> PlantWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cache.close()
        self.store.close()

    @staticmethod
    def reading(
        device: str,
        seq: int,
        ts: datetime,
        value: float | None,
        *,
        facility: str = "fac1",
        line: str = "l01",
        sensor_type: SensorType = SensorType.TEMPERATURE,
        unit: str = "C",
    ) -> Reading:
        return Reading(
            device_id=device, facility=facility, line=line, sensor_type=sensor_type,
            unit=unit, ts=ts, seq=seq, schema_version=1, value=value,
        )  # fmt: skip

    @staticmethod
    def anomaly(
        reading: Reading,
        anomaly_type: AnomalyType = AnomalyType.LIMIT,
        severity: Severity = Severity.WARNING,
    ) -> Anomaly:
        return Anomaly(
            reading.device_id, reading.seq, reading.ts, anomaly_type, severity, 3.5,
            f"{anomaly_type.value} on {reading.device_id}", reading.sensor_type.value,
            reading.value,
        )  # fmt: skip

    @staticmethod
    def dead_letter(reason: RejectReason, n: int, arrival: datetime) -> DeadLetter:
        return DeadLetter(SHARD, f"9{n:020d}", "bad", b"not json", reason, "test", arrival)

    def write(
        self,
        readings: Sequence[Reading] = (),
        anomalies: Sequence[Anomaly] = (),
        dead_letters: Sequence[DeadLetter] = (),
        *,
        arrival: datetime | None = None,
        redis: bool = True,
    ) -> None:
        """Commit one batch to PostgreSQL, then (unless ``redis=False``) to Redis."""
        arrived = arrival or datetime.now(UTC)
        accepted = [
            AcceptedReading(r, SHARD, str(next(self._kinesis_seq)), arrived) for r in readings
        ]
        batch = ProcessedBatch(
            shard_id=SHARD,
            readings=accepted,
            anomalies=list(anomalies),
            dead_letters=list(dead_letters),
            checkpoint=str(next(self._kinesis_seq)),
        )
        self.store.commit_batch(batch, self._token)
        if redis:
            assert self.cache.apply(batch), "Redis refused the batch"
