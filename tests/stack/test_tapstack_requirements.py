"""Table-driven assertions on the synthesized JSON, one row per requirement of issue #2."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from stack_support import DEFAULT_CONFIG, PRODUCTION_CONFIG

from lib.config import NAME_LIMITS
from lib.synthesized import SynthesizedStack
from processor.contract.environment import VARIABLES_BY_NAME

REF = re.compile(r"^\$\{([a-z0-9_]+)\.([^.}]+)\.")


def ref_type(value: str) -> str:
    """Resource type a ``${type.id.attr}`` reference points to ('' if not a reference)."""
    match = REF.match(value or "")
    return match.group(1) if match else ""


def proc(stack: SynthesizedStack, resource_type: str) -> dict[str, Any]:
    """The processor's one resource of a type (the read API has its own, issue 13)."""
    return stack.component(resource_type, "processing")


def redis_secret_version(stack: SynthesizedStack) -> dict[str, Any]:
    """The Redis AUTH token's secret version (the application role's is another)."""
    return stack.cache_secret_version()


def master_secret_rotation(stack: SynthesizedStack) -> dict[str, Any]:
    (rotation,) = [
        r
        for r in stack.resources("aws_secretsmanager_secret_rotation").values()
        if r["secret_id"].endswith(".master_user_secret[0].secret_arn}")
    ]
    return rotation


def container(stack: SynthesizedStack) -> dict[str, Any]:
    (only,) = stack.container_definitions()
    return only


Check = Callable[[SynthesizedStack], object]

# (requirement, check returning a value, expected value)
SINGLE_RESOURCE_CHECKS: list[tuple[str, Check, object]] = [
    ("provider region", lambda s: s.document["provider"]["aws"][0]["region"], "eu-west-2"),
    (
        "default tags",
        lambda s: sorted(s.document["provider"]["aws"][0]["default_tags"][0]["tags"]),
        ["DataClassification", "Environment", "ManagedBy", "Project", "Suffix"],
    ),
    (
        "only the aws provider",
        lambda s: sorted(s.document["terraform"]["required_providers"]),
        ["aws"],
    ),
    (
        "provider pinned",
        lambda s: s.document["terraform"]["required_providers"]["aws"]["version"],
        "5.100.0",
    ),
    ("local backend by default", lambda s: sorted(s.document["terraform"]["backend"]), ["local"]),
    # Kinesis
    ("stream KMS", lambda s: s.single("aws_kinesis_stream")["encryption_type"], "KMS"),
    ("stream CMK", lambda s: ref_type(s.single("aws_kinesis_stream")["kms_key_id"]), "aws_kms_key"),
    ("stream retention 24 h", lambda s: s.single("aws_kinesis_stream")["retention_period"], 24),
    ("shards from the formula", lambda s: s.single("aws_kinesis_stream")["shard_count"], 4),
    (
        "provisioned mode",
        lambda s: s.single("aws_kinesis_stream")["stream_mode_details"]["stream_mode"],
        "PROVISIONED",
    ),
    (
        "shard-level metrics",
        lambda s: (
            "IteratorAgeMilliseconds" in s.single("aws_kinesis_stream")["shard_level_metrics"]
        ),
        True,
    ),
    (
        "consumer deletion",
        lambda s: s.single("aws_kinesis_stream")["enforce_consumer_deletion"],
        True,
    ),
    # ECR and ECS
    (
        "ECR immutable",
        lambda s: proc(s, "aws_ecr_repository")["image_tag_mutability"],
        "IMMUTABLE",
    ),
    (
        "ECR scan on push",
        lambda s: proc(s, "aws_ecr_repository")["image_scanning_configuration"]["scan_on_push"],
        True,
    ),
    (
        "ECR KMS",
        lambda s: proc(s, "aws_ecr_repository")["encryption_configuration"][0]["encryption_type"],
        "KMS",
    ),
    ("ECR force delete", lambda s: proc(s, "aws_ecr_repository")["force_delete"], True),
    (
        "Container Insights",
        lambda s: s.single("aws_ecs_cluster")["setting"],
        [{"name": "containerInsights", "value": "enabled"}],
    ),
    ("task awsvpc", lambda s: s.service_task_definition()["network_mode"], "awsvpc"),
    (
        "task Fargate",
        lambda s: s.service_task_definition()["requires_compatibilities"],
        ["FARGATE"],
    ),
    ("task cpu", lambda s: s.service_task_definition()["cpu"], "512"),
    ("task memory", lambda s: s.service_task_definition()["memory"], "1024"),
    (
        "separate execution and task roles",
        lambda s: (
            s.service_task_definition()["execution_role_arn"]
            != s.service_task_definition()["task_role_arn"]
        ),
        True,
    ),
    ("non-root user", lambda s: container(s)["user"].split(":")[0] not in {"0", "root"}, True),
    ("read-only root", lambda s: container(s)["readonlyRootFilesystem"], True),
    ("no ECS secrets injection", lambda s: "secrets" in container(s), False),
    (
        "health check on the processor's port and path",
        lambda s: container(s)["healthCheck"]["command"][-1].split("'")[1],
        f"http://127.0.0.1:{VARIABLES_BY_NAME['TAP_HEALTH_PORT'].default}/health/live",
    ),
    (
        "health check uses python",
        lambda s: container(s)["healthCheck"]["command"][:3],
        ["CMD", "python", "-c"],
    ),
    ("graceful drain", lambda s: container(s)["stopTimeout"], 120),
    ("awslogs", lambda s: container(s)["logConfiguration"]["logDriver"], "awslogs"),
    (
        "awslogs to our group",
        lambda s: container(s)["logConfiguration"]["options"]["awslogs-group"].startswith(
            "${aws_cloudwatch_log_group."
        ),
        True,
    ),
    ("service Fargate", lambda s: proc(s, "aws_ecs_service")["launch_type"], "FARGATE"),
    ("platform LATEST", lambda s: proc(s, "aws_ecs_service")["platform_version"], "LATEST"),
    (
        "no public IP",
        lambda s: proc(s, "aws_ecs_service")["network_configuration"]["assign_public_ip"],
        False,
    ),
    (
        "circuit breaker with rollback",
        lambda s: proc(s, "aws_ecs_service")["deployment_circuit_breaker"],
        {"enable": True, "rollback": True},
    ),
    (
        "service in private subnets",
        lambda s: all(
            "private" in sid
            for sid in proc(s, "aws_ecs_service")["network_configuration"]["subnets"]
        ),
        True,
    ),
    ("autoscaling min", lambda s: proc(s, "aws_appautoscaling_target")["min_capacity"], 1),
    (
        "autoscaling max = shards",
        lambda s: proc(s, "aws_appautoscaling_target")["max_capacity"],
        4,
    ),
    (
        "scaling policies: iterator-age steps out and in (no CPU tracking to fight them)",
        lambda s: sorted(
            p["policy_type"]
            for k, p in s.resources("aws_appautoscaling_policy").items()
            if k.startswith("processing_")  # the read API's is its own (issue 13)
        ),
        ["StepScaling", "StepScaling"],
    ),
    # Redis
    ("redis engine", lambda s: s.single("aws_elasticache_replication_group")["engine"], "redis"),
    (
        "redis 7.x",
        lambda s: s.single("aws_elasticache_replication_group")["engine_version"].startswith("7."),
        True,
    ),
    (
        "redis nodes",
        lambda s: s.single("aws_elasticache_replication_group")["num_cache_clusters"],
        2,
    ),
    (
        "redis Multi-AZ",
        lambda s: s.single("aws_elasticache_replication_group")["multi_az_enabled"],
        True,
    ),
    (
        "redis failover",
        lambda s: s.single("aws_elasticache_replication_group")["automatic_failover_enabled"],
        True,
    ),
    (
        "redis TLS",
        lambda s: s.single("aws_elasticache_replication_group")["transit_encryption_enabled"],
        True,
    ),
    (
        "redis TLS required",
        lambda s: s.single("aws_elasticache_replication_group")["transit_encryption_mode"],
        "required",
    ),
    (
        "redis at rest",
        lambda s: s.single("aws_elasticache_replication_group")["at_rest_encryption_enabled"],
        "true",
    ),
    (
        "redis CMK",
        lambda s: ref_type(s.single("aws_elasticache_replication_group")["kms_key_id"]),
        "aws_kms_key",
    ),
    (
        "redis logs",
        lambda s: sorted(
            c["log_type"]
            for c in s.single("aws_elasticache_replication_group")["log_delivery_configuration"]
        ),
        ["engine-log", "slow-log"],
    ),
    (
        "redis snapshots",
        lambda s: s.single("aws_elasticache_replication_group")["snapshot_retention_limit"] >= 1,
        True,
    ),
    (
        "redis token read from the secret version (no perpetual diff)",
        lambda s: next(
            u["passwords"][0]
            for u in s.resources("aws_elasticache_user").values()
            if u["user_name"] == "default"  # the processor's token under RBAC (issue 13)
        ).startswith("${jsondecode(data.aws_secretsmanager_secret_version."),
        True,
    ),
    (
        "secret version written once per token version (no perpetual diff)",
        lambda s: redis_secret_version(s)["secret_string_wo_version"],
        1,
    ),
    (
        "token generated by Secrets Manager, ephemerally",
        lambda s: sorted(s.document["ephemeral"]["aws_secretsmanager_random_password"]),
        # The processor's token and the read API's Redis password (issue 13).
        ["cache_api_reader_password", "cache_auth_token"],
    ),
    # RDS
    ("postgres", lambda s: s.single("aws_db_instance")["engine"], "postgres"),
    ("postgres 16", lambda s: s.single("aws_db_instance")["engine_version"].split(".")[0], "16"),
    ("RDS Multi-AZ", lambda s: s.single("aws_db_instance")["multi_az"], True),
    ("RDS encrypted", lambda s: s.single("aws_db_instance")["storage_encrypted"], True),
    ("RDS CMK", lambda s: ref_type(s.single("aws_db_instance")["kms_key_id"]), "aws_kms_key"),
    ("RDS private", lambda s: s.single("aws_db_instance")["publicly_accessible"], False),
    (
        "RDS IAM auth",
        lambda s: s.single("aws_db_instance")["iam_database_authentication_enabled"],
        True,
    ),
    (
        "RDS log exports",
        lambda s: sorted(s.single("aws_db_instance")["enabled_cloudwatch_logs_exports"]),
        ["postgresql", "upgrade"],
    ),
    (
        "Performance Insights",
        lambda s: s.single("aws_db_instance")["performance_insights_enabled"],
        True,
    ),
    (
        "Performance Insights CMK",
        lambda s: ref_type(s.single("aws_db_instance")["performance_insights_kms_key_id"]),
        "aws_kms_key",
    ),
    ("enhanced monitoring", lambda s: s.single("aws_db_instance")["monitoring_interval"] > 0, True),
    (
        "backups >= 7 days",
        lambda s: s.single("aws_db_instance")["backup_retention_period"] >= 7,
        True,
    ),
    (
        "destroyable: no deletion protection",
        lambda s: s.single("aws_db_instance")["deletion_protection"],
        False,
    ),
    (
        "destroyable: no final snapshot",
        lambda s: s.single("aws_db_instance")["skip_final_snapshot"],
        True,
    ),
    (
        "destroyable: backups deleted",
        lambda s: s.single("aws_db_instance")["delete_automated_backups"],
        True,
    ),
    (
        "RDS-managed password",
        lambda s: s.single("aws_db_instance")["manage_master_user_password"],
        True,
    ),
    (
        "master secret CMK",
        lambda s: ref_type(s.single("aws_db_instance")["master_user_secret_kms_key_id"]),
        "aws_kms_key",
    ),
    ("no password in config", lambda s: "password" in s.single("aws_db_instance"), False),
    (
        "TLS enforced",
        lambda s: {p["name"]: p["value"] for p in s.single("aws_db_parameter_group")["parameter"]}[
            "rds.force_ssl"
        ],
        "1",
    ),
    (
        "statement and duration logging",
        lambda s: (
            {p["name"] for p in s.single("aws_db_parameter_group")["parameter"]}
            >= {"log_statement", "log_min_duration_statement"}
        ),
        True,
    ),
    (
        "rotation every 30 days",
        lambda s: master_secret_rotation(s)["rotation_rules"],
        {"automatically_after_days": 30},
    ),
    (
        "rotation of the RDS-managed secret",
        lambda s: len(
            [
                r
                for r in s.resources("aws_secretsmanager_secret_rotation").values()
                if r["secret_id"].endswith(".master_user_secret[0].secret_arn}")
            ]
        ),
        1,
    ),
    # Network
    ("VPC DNS", lambda s: s.single("aws_vpc")["enable_dns_hostnames"], True),
    ("public + private subnet per AZ", lambda s: len(s.resources("aws_subnet")), 4),
    (
        "subnets in 2 AZs",
        lambda s: sorted({b["availability_zone"] for b in s.resources("aws_subnet").values()}),
        ["eu-west-2a", "eu-west-2b"],
    ),
    (
        "no public IP on launch",
        lambda s: {b["map_public_ip_on_launch"] for b in s.resources("aws_subnet").values()},
        {False},
    ),
    ("internet gateway", lambda s: len(s.resources("aws_internet_gateway")), 1),
    ("NAT per AZ", lambda s: len(s.resources("aws_nat_gateway")), 2),
    (
        "default security group without rules",
        lambda s: {k for k in s.single("aws_default_security_group") if k in {"ingress", "egress"}},
        set(),
    ),
    (
        "endpoints",
        lambda s: sorted(
            (b["vpc_endpoint_type"], b["service_name"].removeprefix("com.amazonaws.eu-west-2."))
            for b in s.resources("aws_vpc_endpoint").values()
        ),
        sorted(
            [("Gateway", "s3")]
            + [
                ("Interface", name)
                for name in (
                    "kinesis-streams",
                    "secretsmanager",
                    "logs",
                    "ecr.api",
                    "ecr.dkr",
                    "sts",
                    "kms",
                    "monitoring",
                )
            ]
        ),
    ),
    (
        "interface endpoints with private DNS",
        lambda s: {
            b.get("private_dns_enabled")
            for b in s.resources("aws_vpc_endpoint").values()
            if b["vpc_endpoint_type"] == "Interface"
        },
        {True},
    ),
    ("flow logs ALL", lambda s: s.single("aws_flow_log")["traffic_type"], "ALL"),
    (
        "flow logs to a log group",
        lambda s: ref_type(s.single("aws_flow_log")["log_destination"]),
        "aws_cloudwatch_log_group",
    ),
    # Monitoring
    (
        "SNS encrypted",
        lambda s: ref_type(s.single("aws_sns_topic")["kms_master_key_id"]),
        "aws_kms_key",
    ),
    (
        "dashboard body is JSON with widgets",
        lambda s: (
            len(json.loads(s.single("aws_cloudwatch_dashboard")["dashboard_body"])["widgets"]) > 0
        ),
        True,
    ),
    (
        "error metric filter on the processor log group",
        lambda s: s.single("aws_cloudwatch_log_metric_filter")["metric_transformation"]["name"],
        "ProcessorErrors",
    ),
]


@pytest.mark.parametrize(
    ("requirement", "check", "expected"),
    SINGLE_RESOURCE_CHECKS,
    ids=[row[0] for row in SINGLE_RESOURCE_CHECKS],
)
def test_default_stack(
    stack: SynthesizedStack, requirement: str, check: Check, expected: object
) -> None:
    assert check(stack) == expected, requirement


PRODUCTION_CHECKS: list[tuple[str, Check, object]] = [
    ("deletion protection", lambda s: s.single("aws_db_instance")["deletion_protection"], True),
    ("final snapshot", lambda s: s.single("aws_db_instance")["skip_final_snapshot"], False),
    (
        "final snapshot name",
        lambda s: s.single("aws_db_instance")["final_snapshot_identifier"],
        "postgres-final-prod-ci02",
    ),
    ("backups kept", lambda s: s.single("aws_db_instance")["delete_automated_backups"], False),
    (
        "on-demand stream",
        lambda s: s.single("aws_kinesis_stream")["stream_mode_details"]["stream_mode"],
        "ON_DEMAND",
    ),
    ("no shard count on demand", lambda s: "shard_count" in s.single("aws_kinesis_stream"), False),
    ("single NAT", lambda s: len(s.resources("aws_nat_gateway")), 1),
    ("three AZs", lambda s: len(s.resources("aws_subnet")), 6),
    ("autoscaling min", lambda s: proc(s, "aws_appautoscaling_target")["min_capacity"], 2),
    ("S3 backend", lambda s: sorted(s.document["terraform"]["backend"]), ["s3"]),
    (
        "S3 backend encrypted in eu-west-2 with a lock file",
        lambda s: {
            k: s.document["terraform"]["backend"]["s3"][k]
            for k in ("encrypt", "region", "use_lockfile")
        },
        {"encrypt": True, "region": "eu-west-2", "use_lockfile": True},
    ),
    (
        "state key per environment",
        lambda s: s.document["terraform"]["backend"]["s3"]["key"],
        "tap/prod-ci02/terraform.tfstate",
    ),
]


@pytest.mark.parametrize(
    ("requirement", "check", "expected"),
    PRODUCTION_CHECKS,
    ids=[row[0] for row in PRODUCTION_CHECKS],
)
def test_production_flags(
    prod_stack: SynthesizedStack, requirement: str, check: Check, expected: object
) -> None:
    assert check(prod_stack) == expected, requirement


def test_every_kms_key_rotates_with_policy_and_seven_day_window(stack: SynthesizedStack) -> None:
    keys = stack.resources("aws_kms_key")
    assert len(keys) == 5
    for logical_id, key in keys.items():
        assert key["enable_key_rotation"] is True, logical_id
        assert key["deletion_window_in_days"] == 7, logical_id
        assert json.loads(key["policy"])["Statement"], logical_id


def test_every_log_group_is_encrypted_with_retention(stack: SynthesizedStack) -> None:
    groups = stack.resources("aws_cloudwatch_log_group")
    assert len(groups) >= 7  # processor, insights, flow, 2 redis, 2 postgres
    for logical_id, group in groups.items():
        assert ref_type(group["kms_key_id"]) == "aws_kms_key", logical_id
        assert group["retention_in_days"] == DEFAULT_CONFIG.log_retention_days, logical_id
        assert group.get("skip_destroy") is False, logical_id


def test_rds_log_groups_are_precreated_under_the_names_rds_uses(stack: SynthesizedStack) -> None:
    names = {g["name"] for g in stack.resources("aws_cloudwatch_log_group").values()}
    identifier = stack.single("aws_db_instance")["identifier"]
    for kind in ("postgresql", "upgrade"):
        assert f"/aws/rds/instance/{identifier}/{kind}" in names


def test_every_secret_we_create_is_encrypted_and_destroys_at_once(stack: SynthesizedStack) -> None:
    secrets = stack.resources("aws_secretsmanager_secret")
    assert secrets
    for logical_id, secret in secrets.items():
        assert secret["recovery_window_in_days"] == 0, logical_id
        assert ref_type(secret["kms_key_id"]) == "aws_kms_key", logical_id


ALARM_KINDS = (
    "iterator-age", "processor-errors", "dead-letters", "tasks-below-desired", "db-cpu",
    "db-free-storage", "redis-memory", "redis-evictions",
)  # fmt: skip


@pytest.mark.parametrize("kind", ALARM_KINDS)
def test_alarm_exists_and_notifies_the_topic(stack: SynthesizedStack, kind: str) -> None:
    alarms = [
        a for a in stack.resources("aws_cloudwatch_metric_alarm").values()
        if a["alarm_name"].startswith(f"alarm-{kind}")
    ]  # fmt: skip
    assert alarms, kind
    for alarm in alarms:
        assert any(ref_type(action) == "aws_sns_topic" for action in alarm["alarm_actions"])


def test_dead_letter_alarm_reads_the_contract_namespace(stack: SynthesizedStack) -> None:
    (alarm,) = [
        a for a in stack.resources("aws_cloudwatch_metric_alarm").values()
        if a["alarm_name"].startswith("alarm-dead-letters")
    ]  # fmt: skip
    assert alarm["namespace"] == VARIABLES_BY_NAME["TAP_METRICS_NAMESPACE"].default
    assert alarm["metric_name"] == "DeadLetters"
    # processor/observability.py puts the stream name in the ``Stream`` dimension.
    assert alarm["dimensions"] == {"Stream": stack.task_environment()["TAP_STREAM_NAME"]}


def test_iterator_age_alarm_drives_step_scaling(stack: SynthesizedStack) -> None:
    (alarm,) = [
        a for a in stack.resources("aws_cloudwatch_metric_alarm").values()
        if a["alarm_name"].startswith("alarm-iterator-age")
    ]  # fmt: skip
    assert alarm["metric_name"] == "GetRecords.IteratorAgeMilliseconds"
    assert any(ref_type(a) == "aws_appautoscaling_policy" for a in alarm["alarm_actions"])


def test_autoscaling_bounds_never_exceed_the_shard_count(
    stack: SynthesizedStack, prod_stack: SynthesizedStack
) -> None:
    for synthesized, config in ((stack, DEFAULT_CONFIG), (prod_stack, PRODUCTION_CONFIG)):
        target = synthesized.component("aws_appautoscaling_target", "processing")
        assert 1 <= target["min_capacity"] <= target["max_capacity"] <= config.shard_count


OUTPUTS = (
    "stream_name", "stream_arn", "ecs_cluster_name", "ecs_service_name", "ecr_repository_url",
    "db_endpoint", "db_port", "db_secret_arn", "redis_primary_endpoint", "redis_port",
    "redis_auth_secret_arn", "log_group_names", "alarm_topic_arn", "processor_task_environment",
    "producer_role_arn", "producer_policy_arn",
)  # fmt: skip


@pytest.mark.parametrize("name", OUTPUTS)
def test_output_present(stack: SynthesizedStack, name: str) -> None:
    assert name in stack.outputs
    assert stack.outputs[name]["value"] not in ("", None)


# (resource type, name attribute, resource-type prefix of the name or None)
NAMED = [
    ("aws_kinesis_stream", "name", "kinesis"),
    ("aws_db_instance", "identifier", "postgres"),
    ("aws_elasticache_replication_group", "replication_group_id", "redis"),
    ("aws_ecs_cluster", "name", "ecs"),
    ("aws_ecs_service", "name", "svc"),
    ("aws_ecs_task_definition", "family", "task"),
    ("aws_ecr_repository", "name", "ecr"),
    ("aws_iam_role", "name", "role"),
    ("aws_iam_policy", "name", "policy"),
    ("aws_security_group", "name", "securitygroup"),
    ("aws_sns_topic", "name", "sns"),
    ("aws_cloudwatch_metric_alarm", "alarm_name", "alarm"),
    ("aws_cloudwatch_dashboard", "dashboard_name", "dashboard"),
    ("aws_secretsmanager_secret", "name", "secret"),
    ("aws_db_subnet_group", "name", "postgres"),
    ("aws_db_parameter_group", "name", "postgres"),
    ("aws_elasticache_subnet_group", "name", "redis"),
    ("aws_appautoscaling_policy", "name", "scale"),
]


@pytest.mark.parametrize(("resource_type", "attribute", "prefix"), NAMED)
def test_naming_convention_and_length_limits(
    stack: SynthesizedStack, resource_type: str, attribute: str, prefix: str
) -> None:
    bodies = stack.resources(resource_type)
    assert bodies, resource_type
    limit = NAME_LIMITS[f"{resource_type}.{attribute}"]
    for body in bodies.values():
        name = body[attribute]
        assert name.startswith(f"{prefix}-"), name
        assert name.endswith(f"-{DEFAULT_CONFIG.environment}-{DEFAULT_CONFIG.suffix}"), name
        assert len(name) <= limit, name


def test_nothing_is_retained_on_destroy(stack: SynthesizedStack) -> None:
    text = stack.text
    assert "prevent_destroy" not in text
    assert '"skip_destroy": true' not in text
    assert "Retain" not in text
