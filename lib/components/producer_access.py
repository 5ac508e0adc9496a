"""What a plant gateway needs to write readings: a managed policy and a role to assume.

Least privilege as AWS documents it for Kinesis producers on a stream encrypted with a
customer-managed key (Kinesis Data Streams developer guide, "Permissions to use
user-generated KMS keys"): ``kinesis:PutRecord`` and ``kinesis:PutRecords`` on the
stream, and ``kms:GenerateDataKey`` on its key; producers need no ``kms:Decrypt``
(only consumers read records back). Both are narrowed further: the key only through
Kinesis (``kms:ViaService``) and only for this stream (Kinesis passes the stream ARN as
encryption context). Nothing to describe, list or read the stream.

The policy is a managed policy so an operator can also attach it to an existing
gateway role or user; the role is for gateways that assume it (``sts:AssumeRole``)
from the principal configured in ``TAP_PRODUCER_PRINCIPAL``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.iam_policy import IamPolicy
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from constructs import Construct

from lib import iam_policy
from lib.components.account import AccountContext
from lib.config import Naming

#: The only Kinesis actions a producer gets.
PRODUCER_KINESIS_ACTIONS: tuple[str, ...] = ("kinesis:PutRecord", "kinesis:PutRecords")
#: The only KMS action a producer gets (Kinesis encrypts each record with a data key).
PRODUCER_KMS_ACTIONS: tuple[str, ...] = ("kms:GenerateDataKey",)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerAccessConfig:
    """The gateways' role and policy. Deployment settings have no default here: the
    one default is :class:`lib.config.StackConfig`'s (named in brackets)."""

    #: Names every resource ``<type>-<environment>-<suffix>``.
    naming: Naming
    #: The stream producers may put records into (and nothing else).
    stream_arn: str
    #: The stream's KMS key (producers need ``kms:GenerateDataKey`` on it).
    stream_kms_key_arn: str
    #: Who may assume the role: an account id or an IAM ARN (validated in lib.config);
    #: None = the deploying account's root, i.e. any principal of this account whose
    #: own IAM policy allows ``sts:AssumeRole`` on the role
    #: [StackConfig.producer_principal, TAP_PRODUCER_PRINCIPAL].
    trusted_principal: str | None
    #: Lifetime of the role's session credentials (seconds; gateways refresh them;
    #: one hour is the IAM default).
    max_session_duration_s: int = 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerAccessOutputs:
    #: The role gateways assume to put readings.
    role_arn: str
    #: The managed policy (PutRecord(s) on the stream, GenerateDataKey on its key),
    #: for producers that attach it to a role of their own.
    policy_arn: str


def principal_arn(principal: str, account: AccountContext) -> str:
    """An account id becomes that account's root ARN; an ARN stays as it is."""
    if principal.isdigit():
        return f"arn:{account.partition}:iam::{principal}:root"
    return principal


class ProducerAccess(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: ProducerAccessConfig,
        account: AccountContext,
    ) -> None:
        super().__init__(scope, id_)
        naming = config.naming
        policy = IamPolicy(
            self,
            "policy",
            name=naming.name("policy-producer-put-records"),
            description="Put readings into the TAP Kinesis stream (nothing else)",
            policy=iam_policy.document(
                iam_policy.statement("PutReadings", PRODUCER_KINESIS_ACTIONS, [config.stream_arn]),
                iam_policy.statement(
                    "EncryptReadingsThroughKinesis",
                    PRODUCER_KMS_ACTIONS,
                    [config.stream_kms_key_arn],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"kinesis.{account.region}.amazonaws.com",
                            "kms:EncryptionContext:aws:kinesis:arn": config.stream_arn,
                        }
                    },
                ),
            ),
        )
        trusted = (
            principal_arn(config.trusted_principal, account)
            if config.trusted_principal
            else account.account_root_arn
        )
        role = IamRole(
            self,
            "role",
            name=naming.name("role-producer"),
            description="Plant gateways assume this role to put readings into the stream",
            max_session_duration=config.max_session_duration_s,
            assume_role_policy=iam_policy.document(
                iam_policy.statement(
                    "GatewaysAssumeRole", ["sts:AssumeRole"], None, principal={"AWS": trusted}
                )
            ),
        )
        IamRolePolicyAttachment(self, "attachment", role=role.name, policy_arn=policy.arn)

        self.outputs = ProducerAccessOutputs(role_arn=role.arn, policy_arn=policy.arn)
