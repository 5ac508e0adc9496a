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


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestionConfig:
    """What the stream is made of. Deployment settings have no default here: the one
    default is :class:`lib.config.StackConfig`'s (named in brackets)."""

    #: Names every resource ``<type>-<environment>-<suffix>``.
    naming: Naming
    #: ARN of the KMS key that encrypts the stream at rest (the ``stream`` key).
    kms_key_arn: str
    #: Provisioned shards (count, >= 1), from the capacity formula
    #: :func:`lib.config.shard_count_for` [StackConfig.shard_count]; ignored on demand.
    shard_count: int
    #: On-demand capacity mode instead of provisioned shards [StackConfig.kinesis_on_demand].
    on_demand: bool
    #: How long records stay readable (hours, 24..8760) [StackConfig.stream_retention_hours].
    retention_hours: int


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestionOutputs:
    #: The stream's name (producers; the processor's ``TAP_STREAM_NAME``).
    stream_name: str
    #: The stream's ARN (IAM policies of the processor and the producers).
    stream_arn: str


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
        self.outputs = IngestionOutputs(stream_name=stream.name, stream_arn=stream.arn)
