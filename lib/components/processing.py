"""The processor on ECS Fargate: ECR repository, cluster, roles, task, service, scaling.

The task's environment is built from :data:`processor.contract.environment.TASK_VARIABLES`
(the processor reads the same table), holds only non-secret values, and uses no ECS
``secrets`` injection: the processor fetches credentials from Secrets Manager by ARN
at run time, so a rotation takes effect without a restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.appautoscaling_policy import (
    AppautoscalingPolicy,
    AppautoscalingPolicyStepScalingPolicyConfiguration,
    AppautoscalingPolicyStepScalingPolicyConfigurationStepAdjustment,
)
from cdktf_cdktf_provider_aws.appautoscaling_target import AppautoscalingTarget
from cdktf_cdktf_provider_aws.ecs_cluster import (
    EcsCluster,
    EcsClusterConfiguration,
    EcsClusterConfigurationManagedStorageConfiguration,
    EcsClusterSetting,
)
from cdktf_cdktf_provider_aws.ecs_service import (
    EcsService,
    EcsServiceDeploymentCircuitBreaker,
    EcsServiceNetworkConfiguration,
)
from cdktf_cdktf_provider_aws.ecs_task_definition import (
    EcsTaskDefinition,
    EcsTaskDefinitionRuntimePlatform,
    EcsTaskDefinitionVolume,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from lib import iam_policy
from lib.components.account import AccountContext
from lib.components.image_repository import ImageRepository, ImageRepositoryConfig
from lib.components.log_group import EncryptedLogGroup, LogSettings
from lib.components.processor_container import (
    CONTAINER_NAME,
    CONTAINER_USER,
    KINESIS_READ_ACTIONS,
    MIGRATE_CONTAINER_NAME,
    ProcessorTaskValues,
    health_check_command,
    task_environment,
)
from lib.components.task_execution_role import TaskExecutionRole, TaskExecutionRoleConfig
from lib.config import Naming


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessingConfig:
    """The processor service, its migrate task and their roles. Deployment settings
    have no default here: the one default is :class:`lib.config.StackConfig`'s
    (named in brackets)."""

    #: Names every resource ``<type>-<environment>-<suffix>``.
    naming: Naming
    #: Private subnets the tasks run in (no public IP).
    private_subnet_ids: tuple[str, ...]
    #: The tasks' security group (the only one the data stores admit).
    security_group_id: str
    #: The stream the task role may read.
    stream_arn: str
    #: The stream's name (the dimension of the scaling alarms' metric).
    stream_name: str
    #: The stream's KMS key (the task role decrypts records with it).
    stream_kms_key_arn: str
    #: KMS key of the ECR repository's images.
    ecr_kms_key_arn: str
    #: KMS key of the secrets the tasks read.
    secrets_kms_key_arn: str
    #: Encrypts the tasks' Fargate ephemeral storage (image layers, /tmp); its key
    #: policy must admit fargate.amazonaws.com for this cluster (lib.components.keys).
    ephemeral_storage_kms_key_arn: str
    #: Exactly the DB and Redis secrets the service's task role may read.
    readable_secret_arns: tuple[str, ...]
    #: The task environment's stack-provided values (typed: see
    #: :class:`lib.components.processor_container.ProcessorTaskValues`).
    task_values: ProcessorTaskValues
    #: The migrate task (issue 11, item 2): the owner's (RDS master) secret it migrates
    #: with. Only its task role reads it.
    migration_secret_arn: str
    #: The application role's secret the migrate task provisions.
    app_secret_arn: str
    #: The read API's PostgreSQL login secret (issue 13, item 3): the migrate task
    #: gives ``tap_api_reader`` its password; empty: not provisioned.
    api_secret_arn: str
    #: Image tag of the processor image in the repository [StackConfig.image_tag, TAP_IMAGE_TAG].
    image_tag: str
    #: Task CPU (Fargate CPU units: 256..4096) [StackConfig.task_cpu, TAP_TASK_CPU].
    cpu: int
    #: Task memory (MiB, a size Fargate pairs with ``cpu``)
    #: [StackConfig.task_memory, TAP_TASK_MEMORY].
    memory: int
    #: Seconds ECS waits after SIGTERM before SIGKILL, so leases are released
    #: (Fargate: 1..120) [StackConfig.stop_timeout_s].
    stop_timeout_s: int
    #: Tasks that always run (>= 1) [StackConfig.min_tasks, TAP_MIN_TASKS].
    min_tasks: int
    #: Most tasks autoscaling may run (<= shards: a shard has one reader)
    #: [StackConfig.max_task_count, TAP_MAX_TASKS].
    max_tasks: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessingOutputs:
    #: The ECS cluster (the read API's service joins it).
    cluster_name: str
    #: The cluster's ARN (the read API's service).
    cluster_arn: str
    #: The processor service.
    service_name: str
    #: Push the processor image here.
    repository_url: str
    #: Family of the service's task definition.
    task_definition_family: str
    #: The processor's log group.
    log_group_name: str
    #: Container Insights' performance log group (created first: our key, our retention).
    insights_log_group_name: str
    #: Step scaling policy the iterator-age alarm triggers (scale out).
    lag_scaling_policy_arn: str
    #: Step scaling policy the drained-stream alarm triggers (scale in by one).
    idle_scaling_policy_arn: str
    #: The service's task role.
    task_role_arn: str
    #: Contract variable name -> value of the container environment (values may be
    #: Terraform tokens).
    environment: Mapping[str, str]
    #: Family of the one-off migrate task definition.
    migrate_task_definition_family: str
    #: The migrate task's role (the only one that reads the master secret).
    migrate_task_role_arn: str


class Processing(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: ProcessingConfig,
        account: AccountContext,
        logs: LogSettings,
    ) -> None:
        super().__init__(scope, id_)
        naming = config.naming
        cluster_name = naming.name("ecs")

        repository = ImageRepository(
            self,
            config=ImageRepositoryConfig(
                name=naming.name("ecr-processor"), kms_key_arn=config.ecr_kms_key_arn
            ),
        )

        # Container Insights writes here; pre-created for our key and retention.
        insights_log = EncryptedLogGroup(
            self,
            "insights-log",
            name=f"/aws/ecs/containerinsights/{cluster_name}/performance",
            settings=logs,
        )
        cluster = EcsCluster(
            self,
            "cluster",
            name=cluster_name,
            setting=[EcsClusterSetting(name="containerInsights", value="enabled")],
            # ECS Exec stays off (the service does not enable it); were it enabled, its
            # sessions would need execute_command_configuration with our key here.
            configuration=EcsClusterConfiguration(
                managed_storage_configuration=EcsClusterConfigurationManagedStorageConfiguration(
                    fargate_ephemeral_storage_kms_key_id=config.ephemeral_storage_kms_key_arn
                )
            ),
            depends_on=[insights_log.resource],
        )
        app_log = EncryptedLogGroup(
            self, "app-log", name=f"/tap/{naming.name('processor')}", settings=logs
        )

        execution_role = TaskExecutionRole(
            self,
            config=TaskExecutionRoleConfig(
                name=naming.name("role-processor-execution"),
                service_label="processor",
                statement_label="Processor",
                repository_arn=repository.arn,
                log_group_arn=app_log.arn,
            ),
            account=account,
        )

        task_role = IamRole(
            self,
            "task-role",
            name=naming.name("role-processor-task"),
            description="Processor: read the stream, read its secrets",
            assume_role_policy=iam_policy.service_trust(
                "ecs-tasks.amazonaws.com", account.account_id
            ),
        )
        IamRolePolicy(
            self,
            "task-policy",
            name="processor-least-privilege",
            role=task_role.id,
            policy=iam_policy.document(
                iam_policy.statement("ReadStream", KINESIS_READ_ACTIONS, [config.stream_arn]),
                # Only through Kinesis, and only for this stream's records (Kinesis
                # passes the stream ARN as encryption context).
                iam_policy.statement(
                    "DecryptStream",
                    ["kms:Decrypt"],
                    [config.stream_kms_key_arn],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"kinesis.{account.region}.amazonaws.com",
                            "kms:EncryptionContext:aws:kinesis:arn": config.stream_arn,
                        }
                    },
                ),
                iam_policy.statement(
                    "ReadCredentials",
                    ["secretsmanager:GetSecretValue"],
                    list(config.readable_secret_arns),
                ),
                iam_policy.statement(
                    "DecryptCredentialsThroughSecretsManager",
                    ["kms:Decrypt"],
                    [config.secrets_kms_key_arn],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"secretsmanager.{account.region}.amazonaws.com"
                        }
                    },
                ),
                # No cloudwatch:PutMetricData: the processor's metrics are embedded
                # metric format lines in its log stream (processor/observability.py).
            ),
        )

        environment = task_environment(config.task_values.variables())
        container: dict[str, Any] = {
            "name": CONTAINER_NAME,
            "image": f"{repository.repository_url}:{config.image_tag}",
            "essential": True,
            "user": CONTAINER_USER,
            "readonlyRootFilesystem": True,
            "privileged": False,
            "environment": environment,
            "healthCheck": {
                "command": health_check_command(config.task_values.health_port),
                "interval": 15,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 30,
            },
            # SIGTERM, then this long to finish the batch, checkpoint and release leases.
            "stopTimeout": config.stop_timeout_s,
            # A writable /tmp on the read-only root (task ephemeral storage).
            "mountPoints": [
                {
                    "sourceVolume": "tmp",
                    "containerPath": "/tmp",  # noqa: S108 (the task's own volume)
                    "readOnly": False,
                }
            ],
            "linuxParameters": {"initProcessEnabled": True},
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": app_log.name,
                    "awslogs-region": account.region,
                    "awslogs-stream-prefix": CONTAINER_NAME,
                    "mode": "non-blocking",
                    "max-buffer-size": "4m",
                },
            },
        }
        task = EcsTaskDefinition(
            self,
            "task",
            family=naming.name("task-processor"),
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(config.cpu),
            memory=str(config.memory),
            execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            runtime_platform=EcsTaskDefinitionRuntimePlatform(
                operating_system_family="LINUX", cpu_architecture="X86_64"
            ),
            volume=[EcsTaskDefinitionVolume(name="tmp")],
            container_definitions=json.dumps([container]),
        )
        service = EcsService(
            self,
            "service",
            name=naming.name("svc-processor"),
            cluster=cluster.arn,
            task_definition=task.arn,
            launch_type="FARGATE",
            platform_version="LATEST",
            desired_count=config.min_tasks,
            network_configuration=EcsServiceNetworkConfiguration(
                subnets=list(config.private_subnet_ids),
                security_groups=[config.security_group_id],
                assign_public_ip=False,
            ),
            deployment_circuit_breaker=EcsServiceDeploymentCircuitBreaker(
                enable=True, rollback=True
            ),
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            force_delete=True,
            wait_for_steady_state=False,
            # Autoscaling owns the desired count after creation.
            lifecycle=TerraformResourceLifecycle(ignore_changes=["desired_count"]),
        )

        scaling_target = AppautoscalingTarget(
            self,
            "scaling-target",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=f"service/{cluster.name}/{service.name}",
            min_capacity=config.min_tasks,
            max_capacity=config.max_tasks,
        )
        # One signal for both directions: the stream's iterator age (work waiting).
        # CPU target tracking was dropped (issue #11, item 7): it scaled in on low CPU
        # while the lag alarm scaled out (a consumer blocked on a slow database idles
        # with records waiting), so the two fought. The scale-out alarm (iterator age
        # above TAP's alarm threshold) and the scale-in alarm (below a much lower
        # threshold for 15 minutes) read the same metric, so at most one is in ALARM
        # at a time (lib.components.monitoring).
        lag_policy = AppautoscalingPolicy(
            self,
            "lag-step",
            name=naming.name("scale-processor-lag"),
            policy_type="StepScaling",
            service_namespace=scaling_target.service_namespace,
            scalable_dimension=scaling_target.scalable_dimension,
            resource_id=scaling_target.resource_id,
            step_scaling_policy_configuration=AppautoscalingPolicyStepScalingPolicyConfiguration(
                adjustment_type="ChangeInCapacity",
                metric_aggregation_type="Maximum",
                cooldown=120,
                step_adjustment=[
                    AppautoscalingPolicyStepScalingPolicyConfigurationStepAdjustment(
                        metric_interval_lower_bound="0",
                        metric_interval_upper_bound="240000",
                        scaling_adjustment=1,
                    ),
                    AppautoscalingPolicyStepScalingPolicyConfigurationStepAdjustment(
                        metric_interval_lower_bound="240000", scaling_adjustment=2
                    ),
                ],
            ),
        )

        idle_policy = AppautoscalingPolicy(
            self,
            "idle-step",
            name=naming.name("scale-processor-idle"),
            policy_type="StepScaling",
            service_namespace=scaling_target.service_namespace,
            scalable_dimension=scaling_target.scalable_dimension,
            resource_id=scaling_target.resource_id,
            step_scaling_policy_configuration=AppautoscalingPolicyStepScalingPolicyConfiguration(
                adjustment_type="ChangeInCapacity",
                metric_aggregation_type="Maximum",
                # Slower than scale-out: a released shard's lease moves once per step.
                cooldown=300,
                step_adjustment=[
                    AppautoscalingPolicyStepScalingPolicyConfigurationStepAdjustment(
                        metric_interval_upper_bound="0", scaling_adjustment=-1
                    ),
                ],
            ),
        )

        migrate_task = self._migrate_task(config, account, execution_role.arn, container)

        self.outputs = ProcessingOutputs(
            cluster_name=cluster.name,
            cluster_arn=cluster.arn,
            service_name=service.name,
            repository_url=repository.repository_url,
            task_definition_family=task.family,
            log_group_name=app_log.name,
            insights_log_group_name=insights_log.name,
            lag_scaling_policy_arn=lag_policy.arn,
            idle_scaling_policy_arn=idle_policy.arn,
            task_role_arn=task_role.arn,
            environment={e["name"]: e["value"] for e in environment},
            migrate_task_definition_family=migrate_task.family,
            migrate_task_role_arn=migrate_task.task_role_arn,
        )

    def _migrate_task(
        self,
        config: ProcessingConfig,
        account: AccountContext,
        execution_role_arn: str,
        service_container: Mapping[str, Any],
    ) -> EcsTaskDefinition:
        """``python -m processor migrate`` from the same image: the only task whose
        role may read the owner's secret. Run it, then roll the service (docs/STACK.md
        "The application role")."""
        naming = config.naming
        # The read API's login secret, when the stack has one (issue 13, item 3).
        api_secret = [config.api_secret_arn] if config.api_secret_arn else []
        role = IamRole(
            self,
            "migrate-task-role",
            name=naming.name("role-processor-migrate"),
            description="Migrate task: read the owner's secret, provision the app login",
            assume_role_policy=iam_policy.service_trust(
                "ecs-tasks.amazonaws.com", account.account_id
            ),
        )
        IamRolePolicy(
            self,
            "migrate-task-policy",
            name="migrate-least-privilege",
            role=role.id,
            policy=iam_policy.document(
                iam_policy.statement(
                    "ReadOwnerAndAppCredentials",
                    ["secretsmanager:GetSecretValue"],
                    [config.migration_secret_arn, config.app_secret_arn, *api_secret],
                ),
                # The first password of the application login (the stack writes none).
                iam_policy.statement(
                    "WriteAppCredentials",
                    ["secretsmanager:PutSecretValue"],
                    [config.app_secret_arn, *api_secret],
                ),
                iam_policy.statement(
                    "UseCredentialsKeyThroughSecretsManager",
                    ["kms:Decrypt", "kms:GenerateDataKey"],
                    [config.secrets_kms_key_arn],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"secretsmanager.{account.region}.amazonaws.com"
                        }
                    },
                ),
            ),
        )
        # The service's container, minus what only a long-running consumer needs, plus
        # the command and the owner's secret ARN.
        container = {
            key: value
            for key, value in service_container.items()
            if key not in ("healthCheck", "stopTimeout")
        }
        container["name"] = MIGRATE_CONTAINER_NAME
        container["command"] = ["migrate"]
        container["environment"] = [
            *service_container["environment"],
            {"name": "TAP_DB_MIGRATION_SECRET_ARN", "value": config.migration_secret_arn},
            *[{"name": "TAP_DB_API_SECRET_ARN", "value": arn} for arn in api_secret],
        ]
        log_options = dict(service_container["logConfiguration"]["options"])
        log_options["awslogs-stream-prefix"] = MIGRATE_CONTAINER_NAME
        container["logConfiguration"] = {"logDriver": "awslogs", "options": log_options}
        return EcsTaskDefinition(
            self,
            "migrate-task",
            family=naming.name("task-migrate"),
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu="256",
            memory="512",
            execution_role_arn=execution_role_arn,
            task_role_arn=role.arn,
            runtime_platform=EcsTaskDefinitionRuntimePlatform(
                operating_system_family="LINUX", cpu_architecture="X86_64"
            ),
            volume=[EcsTaskDefinitionVolume(name="tmp")],
            container_definitions=json.dumps([container]),
        )
