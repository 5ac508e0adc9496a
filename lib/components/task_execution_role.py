"""The ECS task execution role of one service: the agent pulls the service's image
from its repository and writes to its log group, nothing else.

The processor and the read API each have one (:mod:`lib.components.processing`,
:mod:`lib.components.read_api`). :class:`TaskExecutionRole` creates its resources in
the caller's scope, under the ids the components always gave them, instead of being
a construct node of its own: a node would add a segment to their construct paths,
so their Terraform addresses (``aws_iam_role.processing_execution-role_...``) would
change and a deploy would replace the live roles.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from lib import iam_policy
from lib.components.account import AccountContext


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskExecutionRoleConfig:
    """One service's execution role."""

    #: The role's name (``role-<service>-execution-<environment>-<suffix>``).
    name: str
    #: The service as the role's description names it ("processor", "API").
    service_label: str
    #: The service in the policy's statement ids ("Processor": ``PullProcessorImage``,
    #: ``WriteProcessorLogs``).
    statement_label: str
    #: The one repository the agent may pull from.
    repository_arn: str
    #: The one log group the agent may write to.
    log_group_arn: str


class TaskExecutionRole:
    """``execution-role`` and ``execution-policy`` in ``scope`` (see the module
    docstring for why not a construct of its own)."""

    def __init__(
        self, scope: Construct, *, config: TaskExecutionRoleConfig, account: AccountContext
    ) -> None:
        role = IamRole(
            scope,
            "execution-role",
            name=config.name,
            description=f"ECS agent: pull the {config.service_label} image, write its logs",
            assume_role_policy=iam_policy.service_trust(
                "ecs-tasks.amazonaws.com", account.account_id
            ),
        )
        label = config.statement_label
        IamRolePolicy(
            scope,
            "execution-policy",
            name="pull-image-write-logs",
            role=role.id,
            policy=iam_policy.document(
                # GetAuthorizationToken has no resource-level permission (AWS IAM reference).
                iam_policy.statement("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]),
                iam_policy.statement(
                    f"Pull{label}Image",
                    [
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchGetImage",
                    ],
                    [config.repository_arn],
                ),
                iam_policy.statement(
                    f"Write{label}Logs",
                    ["logs:CreateLogStream", "logs:PutLogEvents"],
                    [f"{config.log_group_arn}:*"],
                ),
            ),
        )
        self.resource: IamRole = role
        #: The task definitions' ``execution_role_arn``.
        self.arn: str = role.arn
