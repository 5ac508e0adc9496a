"""A CloudWatch Logs group that is always KMS-encrypted and always has a retention."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from constructs import Construct


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    """Shared by every log group of the stack."""

    #: The KMS key every log group is encrypted with (the ``logs`` key).
    kms_key_arn: str
    #: Days CloudWatch keeps each event (a CloudWatch retention value)
    #: [StackConfig.log_retention_days, TAP_LOG_RETENTION_DAYS].
    retention_days: int


class EncryptedLogGroup(Construct):
    """``name`` may be one AWS chooses by convention (RDS, Container Insights): creating
    it first is what gives it our key and retention instead of "never expire"."""

    def __init__(self, scope: Construct, id_: str, *, name: str, settings: LogSettings) -> None:
        super().__init__(scope, id_)
        group = CloudwatchLogGroup(
            self,
            "group",
            name=name,
            kms_key_id=settings.kms_key_arn,
            retention_in_days=settings.retention_days,
            skip_destroy=False,
        )
        self.resource: CloudwatchLogGroup = group
        self.name: str = group.name
        self.arn: str = group.arn
