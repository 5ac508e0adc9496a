"""The Kinesis stream that sensors write to (partition key = device id)."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.kinesis_stream import KinesisStream, KinesisStreamStreamModeDetails
from constructs import Construct

from lib.config import Naming

#: Shard-level metrics: enough to see hot shards and a lagging consumer.
SHARD_LEVEL_METRICS: tuple[str, ...] = (
    "IncomingBytes", "IncomingRecords", "OutgoingBytes", "OutgoingRecords",
    "WriteProvisionedThroughputExceeded", "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class IngestionConfig:
    naming: Naming
    kms_key_arn: str
    #: From :func:`lib.config.shard_count_for` (the capacity formula); ignored on demand.
    shard_count: int = 1
    on_demand: bool = False
    retention_hours: int = 24


class Ingestion(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: IngestionConfig) -> None:
        super().__init__(scope, id_)
        stream = KinesisStream(
            self,
            "stream",
            name=config.naming.name("kinesis-readings"),
            shard_count=None if config.on_demand else config.shard_count,
            stream_mode_details=KinesisStreamStreamModeDetails(
                stream_mode="ON_DEMAND" if config.on_demand else "PROVISIONED"
            ),
            retention_period=config.retention_hours,
            shard_level_metrics=list(SHARD_LEVEL_METRICS),
            encryption_type="KMS",
            kms_key_id=config.kms_key_arn,
            # Deregister enhanced fan-out consumers on destroy so nothing blocks it.
            enforce_consumer_deletion=True,
        )
        self.stream_name: str = stream.name
        self.stream_arn: str = stream.arn
