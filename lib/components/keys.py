"""Customer-managed KMS keys, one per data domain, each with an explicit key policy.

Separate keys keep blast radius small and let the task role decrypt only what it
reads (the stream and its two secrets), not the database's storage key.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct

from lib import iam_policy
from lib.components.account import AccountContext
from lib.config import Naming

#: Administration actions for the account (enumerated: no ``kms:*``). Through this
#: statement IAM policies in the account can grant use of the key.
_ADMIN_ACTIONS = (
    "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
    "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
    "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
)  # fmt: skip
_USE_ACTIONS = (
    "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
    "kms:DescribeKey", "kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysConfig:
    #: Names every key alias ``alias/kms-<domain>-<environment>-<suffix>``.
    naming: Naming
    #: The ECS cluster whose Fargate ephemeral storage the ``data`` key encrypts (the
    #: key policy names it in its encryption-context condition).
    fargate_cluster_name: str
    #: Waiting period before a deleted key is gone (days, 7..30; 7 lets a test stack go
    #: quickly, and a key scheduled for deletion can still be recovered in it).
    deletion_window_days: int = 7
    #: Yearly automatic rotation of the key material (AWS's default period).
    rotation: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptionKeysOutputs:
    """The ARN of each key, by the data it protects."""

    #: CloudWatch Logs (every log group).
    logs_key_arn: str
    #: The Kinesis stream.
    stream_key_arn: str
    #: RDS, ElastiCache, ECR, Performance Insights and Fargate ephemeral storage.
    data_key_arn: str
    #: Secrets Manager secrets.
    secrets_key_arn: str
    #: The SNS alarm topic.
    notifications_key_arn: str


class EncryptionKeys(Construct):
    """Five CMKs: ``logs``, ``stream``, ``data`` (RDS, ElastiCache, ECR, Performance
    Insights), ``secrets`` (Secrets Manager) and ``notifications`` (SNS)."""

    def __init__(
        self, scope: Construct, id_: str, *, config: KeysConfig, account: AccountContext
    ) -> None:
        super().__init__(scope, id_)
        self._config = config
        self._account = account
        root = {"AWS": account.account_root_arn}
        # In a key policy, Resource "*" means "this key".
        account_statements = [
            iam_policy.statement("AccountAdministersKey", _ADMIN_ACTIONS, ["*"], principal=root),
            iam_policy.statement("AccountIamPoliciesUseKey", _USE_ACTIONS, ["*"], principal=root),
        ]
        logs_service = f"logs.{account.region}.amazonaws.com"
        logs_statement = iam_policy.statement(
            "CloudWatchLogsEncryptsThisAccountsLogGroups",
            ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
             "kms:Describe*"],
            ["*"],
            principal={"Service": logs_service},
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": account.arn("logs", "log-group:*")
                }
            },
        )  # fmt: skip
        alarms_statement = iam_policy.statement(
            "CloudWatchAlarmsPublishToEncryptedTopic",
            ["kms:Decrypt", "kms:GenerateDataKey*"],
            ["*"],
            principal={"Service": "cloudwatch.amazonaws.com"},
            conditions={"StringEquals": {"aws:SourceAccount": account.account_id}},
        )
        logs = self._key("logs", "CloudWatch Logs", [*account_statements, logs_statement])
        stream = self._key("stream", "Kinesis stream", account_statements)
        # AWS's documented key policy for Fargate ephemeral storage: the service may
        # generate data keys and create Decrypt-only grants for this account's cluster
        # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-create-storage-key.html;
        # the same two statements as the Terraform provider's aws_ecs_cluster example
        # and AWS CDK's Cluster). The page's kms:DescribeKey is called by ECS as the
        # principal that configures the cluster, which the account statements allow.
        fargate_context = {
            "kms:EncryptionContext:aws:ecs:clusterAccount": account.account_id,
            "kms:EncryptionContext:aws:ecs:clusterName": config.fargate_cluster_name,
        }
        fargate_statements = [
            iam_policy.statement(
                "FargateEncryptsThisClustersEphemeralStorage",
                ["kms:GenerateDataKeyWithoutPlaintext"],
                ["*"],
                principal={"Service": "fargate.amazonaws.com"},
                conditions={"StringEquals": fargate_context},
            ),
            iam_policy.statement(
                "FargateGrantsItselfDecryptForThisCluster",
                ["kms:CreateGrant"],
                ["*"],
                principal={"Service": "fargate.amazonaws.com"},
                conditions={
                    "StringEquals": fargate_context,
                    "ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]},
                },
            ),
        ]
        data = self._key(
            "data",
            "RDS, ElastiCache, ECR, Performance Insights and Fargate ephemeral storage",
            [*account_statements, *fargate_statements],
        )
        secrets = self._key("secrets", "Secrets Manager secrets", account_statements)
        notifications = self._key(
            "notifications", "SNS alarm topic", [*account_statements, alarms_statement]
        )
        self.outputs = EncryptionKeysOutputs(
            logs_key_arn=logs.arn,
            stream_key_arn=stream.arn,
            data_key_arn=data.arn,
            secrets_key_arn=secrets.arn,
            notifications_key_arn=notifications.arn,
        )

    def _key(self, domain: str, purpose: str, statements: list[dict[str, object]]) -> KmsKey:
        key = KmsKey(
            self,
            domain,
            description=f"TAP pipeline {purpose} ({self._config.naming.name(domain)})",
            enable_key_rotation=self._config.rotation,
            deletion_window_in_days=self._config.deletion_window_days,
            policy=iam_policy.document(*statements),
        )
        KmsAlias(
            self,
            f"{domain}-alias",
            name=f"alias/{self._config.naming.name('kms-' + domain)}",
            target_key_id=key.key_id,
        )
        return key
