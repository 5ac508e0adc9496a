"""The read API (``tap api``) as a second Fargate service in the processor's cluster.

Its own image repository: the processor image deliberately does not install the API
(FastAPI and uvicorn are the ``api`` extra, docs/API.md), so the API is built from
the root ``Dockerfile``'s ``api`` target into ``ecr-api``; a processor image that
also carried a web stack would widen what every processor task runs. Its own roles,
log group (our logs key), security group, alarms and request-count autoscaling. The
task's environment is built from
:data:`processor.contract.api_environment.API_VARIABLES` (the API reads the same
table) through the typed :class:`lib.components.api_container.ApiTaskValues`;
credentials are fetched from Secrets Manager by ARN at run time, never injected, so
a rotation needs no restart.

Least privilege: the task role may read exactly the API's two secrets (its
PostgreSQL login, its Redis user) and decrypt them only through Secrets Manager;
nothing else (no Kinesis, no ``PutSecretValue``, no CloudWatch API: the ALB's
metrics are AWS's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.appautoscaling_policy import (
    AppautoscalingPolicy,
    AppautoscalingPolicyTargetTrackingScalingPolicyConfiguration,
    AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecification,
)
from cdktf_cdktf_provider_aws.appautoscaling_target import AppautoscalingTarget
from cdktf_cdktf_provider_aws.cloudwatch_metric_alarm import (
    CloudwatchMetricAlarm,
    CloudwatchMetricAlarmMetricQuery,
    CloudwatchMetricAlarmMetricQueryMetric,
)
from cdktf_cdktf_provider_aws.ecs_service import (
    EcsService,
    EcsServiceDeploymentCircuitBreaker,
    EcsServiceLoadBalancer,
    EcsServiceNetworkConfiguration,
)
from cdktf_cdktf_provider_aws.ecs_task_definition import (
    EcsTaskDefinition,
    EcsTaskDefinitionRuntimePlatform,
    EcsTaskDefinitionVolume,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from lib import iam_policy
from lib.components.account import AccountContext
from lib.components.api_container import API_CONTAINER_NAME, ApiTaskValues, api_task_environment
from lib.components.api_load_balancer import ApiLoadBalancerOutputs
from lib.components.image_repository import ImageRepository, ImageRepositoryConfig
from lib.components.log_group import EncryptedLogGroup, LogSettings
from lib.components.processor_container import CONTAINER_USER, health_check_command
from lib.components.task_execution_role import TaskExecutionRole, TaskExecutionRoleConfig
from lib.config import Naming
from lib.read_api_config import ReadApiConfig

#: What the task role may do, and nothing more (a stack test compares the policy).
API_SECRET_ACTIONS: tuple[str, ...] = ("secretsmanager:GetSecretValue",)


@dataclass(frozen=True, slots=True)
class ReadApiInputs:
    """What the service needs from the other components."""

    #: Names every resource ``<type>-<environment>-<suffix>``.
    naming: Naming
    #: The processor's cluster, which the service joins.
    cluster_arn: str
    #: The cluster's name (CloudWatch dimension of the service's metrics).
    cluster_name: str
    #: Private subnets the tasks run in (no public IP).
    private_subnet_ids: tuple[str, ...]
    #: The VPC of the tasks' security group.
    vpc_id: str
    #: The VPC interface endpoints' security group (the tasks reach AWS through it).
    endpoint_security_group_id: str
    #: S3's prefix list (ECR image layers come from S3 through the gateway endpoint).
    s3_prefix_list_id: str
    #: Redis's security group, which admits the tasks on ``redis_port``.
    redis_security_group_id: str
    #: Redis's port.
    redis_port: int
    #: PostgreSQL's security group, which admits the tasks on ``postgres_port``.
    postgres_security_group_id: str
    #: PostgreSQL's port.
    postgres_port: int
    #: KMS key of the API's ECR repository.
    ecr_kms_key_arn: str
    #: KMS key of the secrets the tasks read.
    secrets_kms_key_arn: str
    #: Exactly the secrets the task role may read: its PostgreSQL and Redis logins.
    readable_secret_arns: tuple[str, ...]
    #: The task environment's stack-provided values (typed: see
    #: :class:`lib.components.api_container.ApiTaskValues`).
    task_values: ApiTaskValues
    #: The port the API's container listens on (the target group's).
    container_port: int
    #: The load balancer in front of the service (target group, listener, dimensions).
    load_balancer: ApiLoadBalancerOutputs
    #: The SNS topic the API's alarms notify.
    alarm_topic_arn: str


@dataclass(frozen=True, slots=True)
class ReadApiOutputs:
    #: The read API's ECS service.
    service_name: str
    #: The API tasks' security group (admitted by Redis and PostgreSQL).
    security_group_id: str
    #: Push the API image (the root Dockerfile's ``api`` target) here.
    repository_url: str
    #: The API's log group.
    log_group_name: str
    #: The API tasks' role (its two secrets, decrypt through Secrets Manager only).
    task_role_arn: str
    #: Target tracking on ALBRequestCountPerTarget.
    scaling_policy_arn: str
    #: The API's alarms (5xx rate, response time, unhealthy hosts).
    alarm_names: tuple[str, ...]
    #: name -> value of the container environment (values may be Terraform tokens).
    environment: Mapping[str, str]


class ReadApi(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: ReadApiConfig,
        inputs: ReadApiInputs,
        account: AccountContext,
        logs: LogSettings,
    ) -> None:
        super().__init__(scope, id_)
        naming = inputs.naming
        sg = self._security_group(inputs)

        repository = ImageRepository(
            self,
            config=ImageRepositoryConfig(
                name=naming.name("ecr-api"), kms_key_arn=inputs.ecr_kms_key_arn
            ),
        )
        app_log = EncryptedLogGroup(
            self, "app-log", name=f"/tap/{naming.name('api')}", settings=logs
        )

        execution_role = TaskExecutionRole(
            self,
            config=TaskExecutionRoleConfig(
                name=naming.name("role-api-execution"),
                service_label="API",
                statement_label="Api",
                repository_arn=repository.arn,
                log_group_arn=app_log.arn,
            ),
            account=account,
        )
        task_role = IamRole(
            self,
            "task-role",
            name=naming.name("role-api-task"),
            description="Read API: read its two read-only logins, nothing else",
            assume_role_policy=iam_policy.service_trust(
                "ecs-tasks.amazonaws.com", account.account_id
            ),
        )
        IamRolePolicy(
            self,
            "task-policy",
            name="api-least-privilege",
            role=task_role.id,
            policy=iam_policy.document(
                iam_policy.statement(
                    "ReadApiCredentials",
                    list(API_SECRET_ACTIONS),
                    list(inputs.readable_secret_arns),
                ),
                iam_policy.statement(
                    "DecryptCredentialsThroughSecretsManager",
                    ["kms:Decrypt"],
                    [inputs.secrets_kms_key_arn],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"secretsmanager.{account.region}.amazonaws.com"
                        }
                    },
                ),
            ),
        )

        environment = api_task_environment(inputs.task_values.variables())
        container: dict[str, Any] = {
            "name": API_CONTAINER_NAME,
            "image": f"{repository.repository_url}:{config.image_tag}",
            "essential": True,
            "user": CONTAINER_USER,
            "readonlyRootFilesystem": True,
            "privileged": False,
            "environment": environment,
            "portMappings": [{"containerPort": inputs.container_port, "protocol": "tcp"}],
            "healthCheck": {
                "command": health_check_command(inputs.container_port),
                "interval": 15,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 20,
            },
            # Open event streams end at once (uvicorn's graceful timeout is 2 s).
            "stopTimeout": 10,
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
                    "awslogs-stream-prefix": API_CONTAINER_NAME,
                    "mode": "non-blocking",
                    "max-buffer-size": "4m",
                },
            },
        }
        task = EcsTaskDefinition(
            self,
            "task",
            family=naming.name("task-api"),
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
            name=naming.name("svc-api"),
            cluster=inputs.cluster_arn,
            task_definition=task.arn,
            launch_type="FARGATE",
            platform_version="LATEST",
            desired_count=config.min_tasks,
            network_configuration=EcsServiceNetworkConfiguration(
                subnets=list(inputs.private_subnet_ids),
                security_groups=[sg.id],
                assign_public_ip=False,
            ),
            load_balancer=[
                EcsServiceLoadBalancer(
                    target_group_arn=inputs.load_balancer.target_group_arn,
                    container_name=API_CONTAINER_NAME,
                    container_port=inputs.container_port,
                )
            ],
            health_check_grace_period_seconds=30,
            deployment_circuit_breaker=EcsServiceDeploymentCircuitBreaker(
                enable=True, rollback=True
            ),
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            force_delete=True,
            wait_for_steady_state=False,
            lifecycle=TerraformResourceLifecycle(ignore_changes=["desired_count"]),
            # ECS refuses a service whose target group no listener uses yet.
            depends_on=[inputs.load_balancer.listener],
        )

        scaling_target = AppautoscalingTarget(
            self,
            "scaling-target",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=f"service/{inputs.cluster_name}/{service.name}",
            min_capacity=config.min_tasks,
            max_capacity=config.max_tasks,
        )
        # Requests per task, the API's work unit: its CPU follows requests, and a
        # request count still rises when a slow PostgreSQL keeps CPU low.
        policy = AppautoscalingPolicy(
            self,
            "requests",
            name=naming.name("scale-api-requests"),
            policy_type="TargetTrackingScaling",
            service_namespace=scaling_target.service_namespace,
            scalable_dimension=scaling_target.scalable_dimension,
            resource_id=scaling_target.resource_id,
            target_tracking_scaling_policy_configuration=AppautoscalingPolicyTargetTrackingScalingPolicyConfiguration(
                target_value=config.requests_per_target,
                predefined_metric_specification=AppautoscalingPolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecification(
                    predefined_metric_type="ALBRequestCountPerTarget",
                    resource_label=(
                        f"{inputs.load_balancer.arn_suffix}/"
                        f"{inputs.load_balancer.target_group_arn_suffix}"
                    ),
                ),
                scale_out_cooldown=60,
                scale_in_cooldown=300,
            ),
        )

        alarm_names = self._alarms(config, inputs)

        self.outputs = ReadApiOutputs(
            service_name=service.name,
            security_group_id=sg.id,
            repository_url=repository.repository_url,
            log_group_name=app_log.name,
            task_role_arn=task_role.arn,
            scaling_policy_arn=policy.arn,
            alarm_names=tuple(alarm_names),
            environment={e["name"]: e["value"] for e in environment},
        )

    def _security_group(self, inputs: ReadApiInputs) -> SecurityGroup:
        """Ingress from the load balancer only; egress to the endpoints, S3 (image
        layers), Redis and PostgreSQL only. The data stores admit this group too."""
        name = inputs.naming.name("securitygroup-api")
        sg = SecurityGroup(
            self,
            "sg",
            name=name,
            description="Read API tasks: from the API load balancer; to endpoints, S3, Redis, RDS",
            vpc_id=inputs.vpc_id,
            tags={"Name": name},
        )
        port = inputs.container_port
        VpcSecurityGroupIngressRule(
            self,
            "from-alb",
            security_group_id=sg.id,
            description="The API from its load balancer",
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            referenced_security_group_id=inputs.load_balancer.security_group_id,
        )
        VpcSecurityGroupEgressRule(
            self,
            "alb-to-api",
            security_group_id=inputs.load_balancer.security_group_id,
            description="Load balancer to the API tasks",
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            referenced_security_group_id=sg.id,
        )
        VpcSecurityGroupEgressRule(
            self,
            "https-endpoints",
            security_group_id=sg.id,
            description="HTTPS to the interface endpoints",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            referenced_security_group_id=inputs.endpoint_security_group_id,
        )
        VpcSecurityGroupEgressRule(
            self,
            "https-s3",
            security_group_id=sg.id,
            description="HTTPS to S3 through the gateway endpoint (ECR image layers)",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            prefix_list_id=inputs.s3_prefix_list_id,
        )
        for label, store_sg, store_port in (
            ("redis", inputs.redis_security_group_id, inputs.redis_port),
            ("postgres", inputs.postgres_security_group_id, inputs.postgres_port),
        ):
            VpcSecurityGroupEgressRule(
                self,
                f"to-{label}",
                security_group_id=sg.id,
                description=f"API to {label}",
                ip_protocol="tcp",
                from_port=store_port,
                to_port=store_port,
                referenced_security_group_id=store_sg,
            )
            VpcSecurityGroupIngressRule(
                self,
                f"{label}-from-api",
                security_group_id=store_sg,
                description=f"{label} TLS from the read API tasks",
                ip_protocol="tcp",
                from_port=store_port,
                to_port=store_port,
                referenced_security_group_id=sg.id,
            )
        return sg

    def _alarms(self, config: ReadApiConfig, inputs: ReadApiInputs) -> list[str]:
        naming = inputs.naming
        actions = [inputs.alarm_topic_arn]
        dimensions = {
            "LoadBalancer": inputs.load_balancer.arn_suffix,
            "TargetGroup": inputs.load_balancer.target_group_arn_suffix,
        }

        def metric(query_id: str, name: str, stat: str) -> CloudwatchMetricAlarmMetricQuery:
            return CloudwatchMetricAlarmMetricQuery(
                id=query_id,
                metric=CloudwatchMetricAlarmMetricQueryMetric(
                    namespace="AWS/ApplicationELB",
                    metric_name=name,
                    dimensions=dimensions,
                    stat=stat,
                    period=60,
                ),
            )

        five_xx = CloudwatchMetricAlarm(
            self,
            "alarm-5xx-rate",
            alarm_name=naming.name("alarm-api-5xx-rate"),
            alarm_description=f"Read API: more than {config.alarm_5xx_percent:g}% of requests "
            "answered 5xx by the tasks",
            comparison_operator="GreaterThanThreshold",
            threshold=config.alarm_5xx_percent,
            evaluation_periods=5,
            treat_missing_data="notBreaching",
            actions_enabled=True,
            alarm_actions=actions,
            ok_actions=actions,
            metric_query=[
                metric("errors", "HTTPCode_Target_5XX_Count", "Sum"),
                metric("requests", "RequestCount", "Sum"),
                CloudwatchMetricAlarmMetricQuery(
                    id="rate",
                    expression="IF(requests > 0, 100 * errors / requests, 0)",
                    label="5xx % of requests",
                    return_data=True,
                ),
            ],
        )
        slow = CloudwatchMetricAlarm(
            self,
            "alarm-response-time",
            alarm_name=naming.name("alarm-api-response-time"),
            alarm_description=f"Read API: p99 target response time above "
            f"{config.alarm_response_time_p99_s:g} s",
            namespace="AWS/ApplicationELB",
            metric_name="TargetResponseTime",
            dimensions=dimensions,
            extended_statistic="p99",
            period=60,
            evaluation_periods=5,
            threshold=config.alarm_response_time_p99_s,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            actions_enabled=True,
            alarm_actions=actions,
            ok_actions=actions,
        )
        unhealthy = CloudwatchMetricAlarm(
            self,
            "alarm-unhealthy-hosts",
            alarm_name=naming.name("alarm-api-unhealthy-hosts"),
            alarm_description="Read API: a task fails the load balancer's health check",
            namespace="AWS/ApplicationELB",
            metric_name="UnHealthyHostCount",
            dimensions=dimensions,
            statistic="Maximum",
            period=60,
            evaluation_periods=3,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            actions_enabled=True,
            alarm_actions=actions,
            ok_actions=actions,
        )
        return [five_xx.alarm_name, slow.alarm_name, unhealthy.alarm_name]
