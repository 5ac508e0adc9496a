"""TapStack: sensors -> Kinesis -> Fargate processors -> Redis + PostgreSQL.

This module only wires components (see docs/STACK.md for the diagram): each
construct is created once and its typed outputs become the next one's inputs.
"""

from __future__ import annotations

from cdktf import LocalBackend, S3Backend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags
from constructs import Construct

from lib.components.account import AccountContext
from lib.components.api_container import ApiTaskValues
from lib.components.api_credentials import ApiDatabaseCredentials
from lib.components.api_load_balancer import ApiLoadBalancer, ApiLoadBalancerInputs
from lib.components.cache import Cache, CacheConfig
from lib.components.data_store_placement import DataStorePlacement
from lib.components.database import Database, DatabaseConfig
from lib.components.ingestion import Ingestion, IngestionConfig
from lib.components.keys import EncryptionKeys, KeysConfig
from lib.components.log_group import LogSettings
from lib.components.monitoring import Monitoring, MonitoringConfig
from lib.components.network import Network, NetworkConfig
from lib.components.processing import Processing, ProcessingConfig
from lib.components.processor_container import ProcessorTaskValues
from lib.components.producer_access import ProducerAccess, ProducerAccessConfig
from lib.components.read_api import ReadApi, ReadApiInputs
from lib.config import ConfigError, StackConfig, contract_default
from processor.contract import stack_outputs as out
from processor.contract.api_environment import API_VARIABLES_BY_NAME


def default_tags(config: StackConfig) -> dict[str, str]:
    return {
        "Project": "tap-iot-pipeline",
        "Environment": config.environment,
        "Suffix": config.suffix,
        "ManagedBy": "cdktf",
        "DataClassification": "confidential",
    }


class TapStack(TerraformStack):
    def __init__(self, scope: Construct, config: StackConfig, stack_id: str | None = None) -> None:
        super().__init__(scope, stack_id or config.stack_name)
        self.config = config
        if config.read_api is None:
            raise ConfigError(
                [
                    "the read API's settings are missing (TAP_API_CERTIFICATE_ARN and the "
                    "other TAP_API_* variables, lib.read_api_config): main.py reads them"
                ]
            )
        read_api = config.read_api
        naming = config.naming
        AwsProvider(
            self,
            "aws",
            region=config.region,
            default_tags=[AwsProviderDefaultTags(tags=default_tags(config))],
        )
        self._backend(config)
        # The Redis AUTH token needs Terraform >= 1.11 (ephemeral resource, write-only
        # argument: lib.components.cache). No `required_version` here: Checkov's
        # terraform_json parser fails on it (0 checks run), and older versions fail
        # safely anyway (< 1.10 rejects the ephemeral block, 1.10 rejects an ephemeral
        # value outside a write-only argument), never storing the token.

        account = AccountContext(self, "account", region=config.region)
        keys = EncryptionKeys(
            self,
            "keys",
            config=KeysConfig(naming=naming, fargate_cluster_name=naming.name("ecs")),
            account=account,
        )
        logs = LogSettings(
            kms_key_arn=keys.outputs.logs_key_arn, retention_days=config.log_retention_days
        )

        network = Network(
            self,
            "network",
            config=NetworkConfig(
                naming=naming,
                availability_zones=config.availability_zones,
                cidr=config.vpc_cidr,
                single_nat_gateway=config.single_nat_gateway,
            ),
            account=account,
            logs=logs,
        )
        net = network.outputs
        ingestion = Ingestion(
            self,
            "ingestion",
            config=IngestionConfig(
                naming=naming,
                kms_key_arn=keys.outputs.stream_key_arn,
                shard_count=config.shard_count,
                on_demand=config.kinesis_on_demand,
                retention_hours=config.stream_retention_hours,
            ),
        )
        stream = ingestion.outputs
        # Redis and PostgreSQL: private subnets, reachable from the processor tasks only.
        data_stores = DataStorePlacement(
            naming=naming,
            vpc_id=net.vpc_id,
            subnet_ids=net.private_subnet_ids,
            client_security_group_id=net.processor_security_group_id,
            kms_key_arn=keys.outputs.data_key_arn,
            secrets_kms_key_arn=keys.outputs.secrets_key_arn,
        )
        cache = Cache(
            self,
            "cache",
            config=CacheConfig(
                placement=data_stores,
                node_type=config.redis_node_type,
                engine_version=config.redis_engine_version,
                nodes=config.redis_nodes,
                port=config.redis_port,
                snapshot_retention_days=config.redis_snapshot_retention_days,
                token_version=config.redis_auth_token_version,
            ),
            logs=logs,
        )
        redis = cache.outputs
        database = Database(
            self,
            "database",
            config=DatabaseConfig(
                placement=data_stores,
                instance_class=config.db_instance_class,
                engine_version=config.db_engine_version,
                allocated_storage_gb=config.db_allocated_storage_gb,
                max_allocated_storage_gb=config.db_max_allocated_storage_gb,
                db_name=config.db_name,
                port=config.db_port,
                backup_retention_days=config.db_backup_retention_days,
                secret_rotation_days=config.secret_rotation_days,
                production=config.production,
                rds_os_metrics_log_group=config.rds_os_metrics_log_group,
                app_secret_rotation=config.db_app_secret_rotation,
            ),
            account=account,
            logs=logs,
        )
        db = database.outputs
        api_db_credentials = ApiDatabaseCredentials(
            self,
            "api-credentials",
            naming=naming,
            secrets_kms_key_arn=keys.outputs.secrets_key_arn,
            db_host=db.address,
            db_port=db.port,
            db_name=db.db_name,
        )
        processing = Processing(
            self,
            "processing",
            config=ProcessingConfig(
                naming=naming,
                private_subnet_ids=net.private_subnet_ids,
                security_group_id=net.processor_security_group_id,
                stream_arn=stream.stream_arn,
                stream_name=stream.stream_name,
                stream_kms_key_arn=keys.outputs.stream_key_arn,
                ecr_kms_key_arn=keys.outputs.data_key_arn,
                secrets_kms_key_arn=keys.outputs.secrets_key_arn,
                ephemeral_storage_kms_key_arn=keys.outputs.data_key_arn,
                # The application role's secret; the master secret only in the migrate task.
                readable_secret_arns=(db.app_secret_arn, redis.auth_secret_arn),
                migration_secret_arn=db.master_secret_arn,
                app_secret_arn=db.app_secret_arn,
                api_secret_arn=api_db_credentials.outputs.secret_arn,
                task_values=ProcessorTaskValues(
                    stream_name=stream.stream_name,
                    aws_region=config.region,
                    environment=config.environment,
                    db_host=db.address,
                    db_port=db.port,
                    db_name=db.db_name,
                    db_secret_arn=db.app_secret_arn,
                    db_sslmode="verify-full",
                    # The RDS CA bundle the processor image ships (contract default).
                    db_ca_bundle=contract_default("TAP_DB_CA_BUNDLE"),
                    redis_host=redis.primary_endpoint,
                    redis_port=redis.port,
                    redis_auth_secret_arn=redis.auth_secret_arn,
                    redis_tls=True,
                    health_port=config.health_port,
                    metrics_namespace=config.metrics_namespace,
                ),
                image_tag=config.image_tag,
                cpu=config.task_cpu,
                memory=config.task_memory,
                stop_timeout_s=config.stop_timeout_s,
                min_tasks=config.min_tasks,
                max_tasks=config.max_task_count,
            ),
            account=account,
            logs=logs,
        )
        service = processing.outputs
        monitoring = Monitoring(
            self,
            "monitoring",
            config=MonitoringConfig(
                naming=naming,
                region=config.region,
                kms_key_arn=keys.outputs.notifications_key_arn,
                stream_name=stream.stream_name,
                cluster_name=service.cluster_name,
                service_name=service.service_name,
                processor_log_group_name=service.log_group_name,
                db_identifier=db.identifier,
                redis_member_ids=redis.member_cluster_ids,
                lag_scaling_policy_arn=service.lag_scaling_policy_arn,
                idle_scaling_policy_arn=service.idle_scaling_policy_arn,
                metrics_namespace=config.metrics_namespace,
                iterator_age_threshold_ms=config.iterator_age_alarm_ms,
                iterator_age_scale_in_ms=config.iterator_age_scale_in_ms,
                alarm_emails=config.alarm_emails,
                alarm_https_endpoints=config.alarm_https_endpoints,
                db_free_storage_bytes=config.db_allocated_storage_gb * 1024**3 // 10,
            ),
        )

        api_port = int(API_VARIABLES_BY_NAME["TAP_API_PORT"].default or "8000")
        api_alb = ApiLoadBalancer(
            self,
            "api-alb",
            config=read_api,
            inputs=ApiLoadBalancerInputs(
                naming=naming,
                vpc_id=net.vpc_id,
                private_subnet_ids=net.private_subnet_ids,
                target_port=api_port,
            ),
            account=account,
        )
        api = ReadApi(
            self,
            "api",
            config=read_api,
            inputs=ReadApiInputs(
                naming=naming,
                cluster_arn=service.cluster_arn,
                cluster_name=service.cluster_name,
                private_subnet_ids=net.private_subnet_ids,
                vpc_id=net.vpc_id,
                endpoint_security_group_id=net.endpoint_security_group_id,
                s3_prefix_list_id=net.s3_prefix_list_id,
                redis_security_group_id=redis.security_group_id,
                redis_port=redis.port,
                postgres_security_group_id=db.security_group_id,
                postgres_port=db.port,
                ecr_kms_key_arn=keys.outputs.data_key_arn,
                secrets_kms_key_arn=keys.outputs.secrets_key_arn,
                readable_secret_arns=(
                    api_db_credentials.outputs.secret_arn,
                    redis.api_reader_secret_arn,
                ),
                task_values=ApiTaskValues(
                    aws_region=config.region,
                    environment=config.environment,
                    db_host=db.address,
                    db_port=db.port,
                    db_name=db.db_name,
                    db_sslmode="verify-full",
                    # The RDS CA bundle the API image ships (contract default).
                    db_ca_bundle=contract_default("TAP_DB_CA_BUNDLE"),
                    redis_host=redis.primary_endpoint,
                    redis_port=redis.port,
                    redis_tls=True,
                    db_secret_arn=api_db_credentials.outputs.secret_arn,
                    redis_secret_arn=redis.api_reader_secret_arn,
                    api_port=api_port,
                ),
                container_port=api_port,
                load_balancer=api_alb.outputs,
                alarm_topic_arn=monitoring.outputs.topic_arn,
            ),
            account=account,
            logs=logs,
        )

        producers = ProducerAccess(
            self,
            "producers",
            config=ProducerAccessConfig(
                naming=naming,
                stream_arn=stream.stream_arn,
                stream_kms_key_arn=keys.outputs.stream_key_arn,
                trusted_principal=config.producer_principal,
            ),
            account=account,
        )

        alarms = monitoring.outputs
        gateways = producers.outputs
        outputs: dict[str, tuple[object, str]] = {
            out.STREAM_NAME: (stream.stream_name, "Kinesis stream sensors write to"),
            out.STREAM_ARN: (stream.stream_arn, "Kinesis stream ARN"),
            out.ECS_CLUSTER_NAME: (service.cluster_name, "ECS cluster"),
            out.ECS_SERVICE_NAME: (service.service_name, "Processor service"),
            out.ECR_REPOSITORY_URL: (service.repository_url, "Push the processor image here"),
            out.DB_ENDPOINT: (db.address, "PostgreSQL host name"),
            out.DB_PORT: (db.port, "PostgreSQL port"),
            out.DB_SECRET_ARN: (db.master_secret_arn, "RDS-managed master secret"),
            out.DB_APP_SECRET_ARN: (
                db.app_secret_arn,
                "The processor's database login (application role), rotated by alternating users",
            ),
            out.MIGRATE_TASK_DEFINITION: (
                service.migrate_task_definition_family,
                "Run this task (python -m processor migrate) before rolling the service",
            ),
            out.REDIS_PRIMARY_ENDPOINT: (redis.primary_endpoint, "Redis primary endpoint"),
            out.REDIS_PORT: (redis.port, "Redis port"),
            out.REDIS_AUTH_SECRET_ARN: (redis.auth_secret_arn, "Secret holding the AUTH token"),
            out.PROCESSOR_LOG_GROUP_NAME: (service.log_group_name, "Processor logs"),
            out.LOG_GROUP_NAMES: (
                {
                    "processor": service.log_group_name,
                    "container_insights": service.insights_log_group_name,
                    "vpc_flow_logs": net.flow_log_group_name,
                    "redis_slow_log": redis.slow_log_group_name,
                    "redis_engine_log": redis.engine_log_group_name,
                    "postgres_postgresql": db.postgresql_log_group_name,
                    "postgres_upgrade": db.upgrade_log_group_name,
                    "api": api.outputs.log_group_name,
                },
                "Every log group of the stack",
            ),
            out.PROCESSOR_TASK_ENVIRONMENT: (
                service.environment,
                "The processor task's environment (name -> value), as in the task definition",
            ),
            out.ALARM_TOPIC_ARN: (alarms.topic_arn, "SNS topic of every alarm"),
            out.ALARM_SUBSCRIPTIONS: (
                list(alarms.subscription_endpoints),
                "protocol:endpoint of every alarm subscription (e-mail ones await confirmation)",
            ),
            out.PRODUCER_ROLE_ARN: (
                gateways.role_arn,
                "Gateways assume this role to put readings (TAP_PRODUCER_PRINCIPAL may)",
            ),
            out.PRODUCER_POLICY_ARN: (
                gateways.policy_arn,
                "Managed policy: PutRecord(s) on the stream, GenerateDataKey on its key",
            ),
            out.DASHBOARD_NAME: (alarms.dashboard_name, "CloudWatch dashboard"),
            out.API_ALB_DNS_NAME: (
                api_alb.outputs.dns_name,
                "The read API's internal load balancer (HTTPS + OIDC; plant networks only)",
            ),
            out.API_LISTENER_ARN: (api_alb.outputs.listener_arn, "The read API's listener"),
            out.API_SERVICE_NAME: (api.outputs.service_name, "The read API's ECS service"),
            out.API_SECURITY_GROUP_ID: (
                api_alb.outputs.security_group_id,
                "Security group of the API load balancer (admits TAP_API_PLANT_CIDRS)",
            ),
            out.API_ECR_REPOSITORY_URL: (
                api.outputs.repository_url,
                "Push the API image (the Dockerfile's api target) here",
            ),
            out.API_DB_SECRET_ARN: (
                api_db_credentials.outputs.secret_arn,
                "The read API's PostgreSQL login (tap_api_reader), set by the migrate task",
            ),
            out.API_REDIS_SECRET_ARN: (
                redis.api_reader_secret_arn,
                "The read API's read-only ElastiCache user",
            ),
        }
        for name, (value, description) in outputs.items():
            TerraformOutput(self, name, value=value, description=description)

    def _backend(self, config: StackConfig) -> None:
        if config.state_bucket:
            S3Backend(
                self,
                bucket=config.state_bucket,
                key=config.effective_state_key,
                region=config.region,
                encrypt=True,
                # The state holds the Redis AUTH token (sensitive): our key, not SSE-S3.
                kms_key_id=config.state_kms_key_arn,
            )
            # S3-native locking (Terraform >= 1.10); not in cdktf 0.21's S3BackendConfig.
            self.add_override("terraform.backend.s3.use_lockfile", True)
        else:
            # An absolute path outside cdktf.out (which `make clean` deletes): a path
            # relative to the stack folder put the state inside it (issue #11, item 1).
            LocalBackend(self, path=str(config.local_state_path))
