"""The account and partition the stack is deployed into (read at plan time)."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from constructs import Construct


class AccountContext(Construct):
    """Exposes ``account_id``, ``partition`` and ``region`` for ARNs and policies."""

    def __init__(self, scope: Construct, id_: str, *, region: str) -> None:
        super().__init__(scope, id_)
        identity = DataAwsCallerIdentity(self, "identity")
        partition = DataAwsPartition(self, "partition")
        self.account_id: str = identity.account_id
        self.partition: str = partition.partition
        self.region: str = region
        self.account_root_arn: str = f"arn:{self.partition}:iam::{self.account_id}:root"

    def arn(self, service: str, resource: str) -> str:
        """``arn:<partition>:<service>:<region>:<account>:<resource>``."""
        return f"arn:{self.partition}:{service}:{self.region}:{self.account_id}:{resource}"
