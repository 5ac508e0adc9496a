"""Configuration: validation, naming, the capacity formula; bad values stop synth."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.config import NAME_LIMITS, ConfigError, StackConfig, shard_count_for

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("overrides", "variable", "reason"),
    [
        ({"suffix": "PR12"}, "ENVIRONMENT_SUFFIX", "lowercase"),
        ({"suffix": "abcdefghi"}, "ENVIRONMENT_SUFFIX", "1-8"),
        ({"suffix": ""}, "ENVIRONMENT_SUFFIX", "1-8"),
        ({"suffix": "pr-1"}, "ENVIRONMENT_SUFFIX", "letters or digits"),
        ({"environment": "Prod"}, "TAP_ENV", "lowercase"),
        ({"az_count": 1}, "TAP_AZ_COUNT", "at least 2"),
        ({"az_count": 4}, "TAP_AZ_COUNT", "has 3"),
        ({"min_tasks": 3, "max_tasks": 2}, "TAP_MIN_TASKS", "min <= max"),
        ({"min_tasks": 0}, "TAP_MIN_TASKS", "at least 1"),
        ({"max_tasks": 5}, "TAP_MAX_TASKS", "exceeds the shard count 4"),
        ({"stream_retention_hours": 12}, "TAP_STREAM_RETENTION_HOURS", "24..8760"),
        ({"log_retention_days": 10}, "TAP_LOG_RETENTION_DAYS", "retention value"),
        ({"redis_engine_version": "6.2"}, "redis_engine_version", "7.x"),
        ({"db_engine_version": "15.4"}, "db_engine_version", "16.x"),
        ({"redis_nodes": 1}, "redis_nodes", "at least 2"),
        ({"state_bucket": "Bad_Bucket"}, "TAP_STATE_BUCKET", "bucket name"),
        ({"environment": "stage"}, "TAP_STATE_BUCKET", "shared deployment"),
        ({"alarm_emails": ("ops",)}, "TAP_ALARM_EMAILS", "e-mail"),
        ({"alarm_https_endpoints": ("ftp://x.example",)}, "TAP_ALARM_HTTPS_ENDPOINTS", "https"),
        ({"producer_principal": "*"}, "TAP_PRODUCER_PRINCIPAL", "no wildcards"),
        ({"redis_auth_token_version": 0}, "TAP_REDIS_AUTH_TOKEN_VERSION", ">= 1"),
        ({"task_cpu": 300}, "TAP_TASK_CPU", "Fargate CPU size"),
        ({"task_cpu": 256, "task_memory": 4096}, "TAP_TASK_MEMORY", "512..2048"),
    ],
)
def test_bad_configuration_is_rejected_naming_the_variable(
    overrides: dict[str, object], variable: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        StackConfig(**overrides)  # type: ignore[arg-type]
    message = str(caught.value)
    assert variable in message
    assert reason in message


def test_defaults_are_valid_and_safe() -> None:
    config = StackConfig()
    assert config.environment == "dev"
    assert config.region == "eu-west-2"
    assert config.az_count >= 2
    assert not config.production
    assert config.min_tasks <= config.max_task_count <= config.shard_count


@pytest.mark.parametrize(
    ("sensors", "rate", "size", "headroom", "shards"),
    [
        (1, 1.0, 300, 2.0, 1),  # tiny: at least one shard
        (2000, 1.0, 300, 2.0, 4),  # record limit binds: 4000 rec/s / 1000
        (500, 1.0, 300, 1.0, 1),
        (1000, 10.0, 300, 1.5, 15),  # 15000 rec/s -> 15 by records; 4.3 MB/s -> 5 by bytes
        (100, 1.0, 50_000, 1.0, 5),  # byte limit binds: 5 MB/s / 1 MiB
        (100, 1.0, 50_000, 2.0, 10),
    ],
)
def test_capacity_formula(
    sensors: int, rate: float, size: int, headroom: float, shards: int
) -> None:
    assert shard_count_for(sensors, rate, size, headroom) == shards


def test_max_tasks_defaults_to_the_shard_count() -> None:
    config = StackConfig(sensors=6000)
    assert config.shard_count == 12
    assert config.max_task_count == 12


def test_names_follow_the_convention() -> None:
    config = StackConfig(environment="prod", suffix="pr42", allow_local_state=True)
    assert config.name("redis") == "redis-prod-pr42"
    assert config.availability_zones == ("eu-west-2a", "eu-west-2b")


def test_longest_environment_and_suffix_fit_every_limit() -> None:
    config = StackConfig(environment="abcdefgh", suffix="12345678", allow_local_state=True)
    assert (
        len(config.name("redis"))
        <= NAME_LIMITS["aws_elasticache_replication_group.replication_group_id"]
    )
    assert len(config.name("role-processor-execution")) <= NAME_LIMITS["aws_iam_role.name"]


def test_from_environ_reads_variables_then_context() -> None:
    context = {"environmentSuffix": "ctx1", "environment": "stage"}
    config = StackConfig.from_environ(
        {"TAP_AZ_COUNT": "3", "TAP_ALLOW_LOCAL_STATE": "true"}, context.get
    )
    assert (config.suffix, config.environment, config.az_count) == ("ctx1", "stage", 3)
    config = StackConfig.from_environ(
        {"ENVIRONMENT_SUFFIX": "env1", "TAP_ALLOW_LOCAL_STATE": "true"}, context.get
    )
    assert config.suffix == "env1"


def test_from_environ_reports_unparsable_values_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        StackConfig.from_environ({"TAP_AZ_COUNT": "two", "TAP_PRODUCTION": "maybe"})
    assert "TAP_AZ_COUNT='two'" in str(caught.value)
    assert "TAP_PRODUCTION='maybe'" in str(caught.value)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"ENVIRONMENT_SUFFIX": "Upper"}, "ENVIRONMENT_SUFFIX"),
        ({"ENVIRONMENT_SUFFIX": "waytoolong"}, "ENVIRONMENT_SUFFIX"),
        ({"ENVIRONMENT_SUFFIX": "ok", "TAP_AZ_COUNT": "1"}, "TAP_AZ_COUNT"),
        ({"ENVIRONMENT_SUFFIX": "ok", "TAP_MIN_TASKS": "4", "TAP_MAX_TASKS": "2"}, "TAP_MIN_TASKS"),
        ({"ENVIRONMENT_SUFFIX": "ok", "TAP_ENV": "prod"}, "TAP_STATE_BUCKET"),
        ({"ENVIRONMENT_SUFFIX": "ok", "TAP_ALARM_EMAILS": "not-an-address"}, "TAP_ALARM_EMAILS"),
    ],
)
def test_bad_configuration_stops_synth(env: dict[str, str], variable: str, tmp_path: Path) -> None:
    """``main.py`` (what ``cdktf synth`` runs) exits non-zero naming the variable and
    writes no stack."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAP_")}
    clean.pop("ENVIRONMENT_SUFFIX", None)
    clean.update(env, CDKTF_OUTDIR=str(tmp_path / "out"), PYTHONPATH=str(REPO))
    clean["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py")],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr
    assert "cdktf synth stopped" in result.stderr
    assert not list((tmp_path / "out").rglob("cdk.tf.json"))
