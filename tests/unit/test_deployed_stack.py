"""The one description of a deployed stack (simulator/deployed_stack.py), read from
``terraform output -json`` with the contract's output names, and its two users:
``tap load --target deployed`` and the e2e suite's deployed target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from processor.contract import stack_outputs as out
from processor.contract.deployment import DEFAULT_REGION, RDS_CA_BUNDLE
from simulator.deployed_stack import (
    REQUIRED,
    DeployedStack,
    DeployedStackError,
    output_values,
    read_secret,
)

OUTPUTS: dict[str, Any] = {
    out.STREAM_NAME: {"value": "kinesis-readings-dev-x", "type": "string", "sensitive": False},
    out.DB_ENDPOINT: {"value": "db.example"},
    out.DB_PORT: {"value": 5432},
    out.DB_SECRET_ARN: {"value": "arn:aws:secretsmanager:eu-west-2:1:secret:db"},
    out.DB_APP_SECRET_ARN: {"value": "arn:aws:secretsmanager:eu-west-2:1:secret:app"},
    out.REDIS_PRIMARY_ENDPOINT: {"value": "redis.example"},
    out.REDIS_PORT: {"value": 6379},
    out.REDIS_AUTH_SECRET_ARN: {"value": "arn:aws:secretsmanager:eu-west-2:1:secret:r"},
    out.PROCESSOR_TASK_ENVIRONMENT: {"value": {"AWS_REGION": "eu-west-1", "TAP_DB_NAME": "t"}},
    out.ECS_CLUSTER_NAME: {"value": "cluster"},
    out.ECS_SERVICE_NAME: {"value": "service"},
}


class Secrets:
    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        if SecretId.endswith(":db"):
            return {"SecretString": json.dumps({"username": "m@ster", "password": "p/ss"})}
        if SecretId.endswith(":r"):
            return {"SecretString": json.dumps({"auth_token": "t0k"})}
        raise KeyError(SecretId)


def test_read_from_terraform_output_json_with_the_contract_names() -> None:
    stack = DeployedStack.from_outputs(OUTPUTS)
    assert stack.stream_name == "kinesis-readings-dev-x"
    assert (stack.db_port, stack.redis_port) == (5432, 6379)
    assert stack.ecs_cluster_name == "cluster" and stack.producer_role_arn is None
    # Plain values (a file already flattened) read the same.
    assert DeployedStack.from_outputs(output_values(OUTPUTS)) == stack


def test_reaches_the_stores_as_the_processor_does() -> None:
    stack = DeployedStack.from_outputs(OUTPUTS)
    dsn = stack.postgres_dsn(read_secret(Secrets(), stack.db_secret_arn), {})
    assert dsn.startswith("postgresql://m%40ster:p%2Fss@db.example:5432/t?")
    assert f"sslmode=verify-full&sslrootcert={RDS_CA_BUNDLE}" in dsn
    assert "sslrootcert=/ca.pem" in stack.postgres_dsn(
        {"username": "u", "password": "p"}, {"TAP_DB_CA_BUNDLE": "/ca.pem"}
    )
    redis_secret = read_secret(Secrets(), stack.redis_auth_secret_arn)
    assert stack.redis_url(redis_secret) == "rediss://:t0k@redis.example:6379/0"
    assert stack.region({}) == "eu-west-1"  # the task's
    assert stack.region({"AWS_REGION": "us-east-1"}) == "us-east-1"
    bare = DeployedStack.from_outputs(OUTPUTS | {out.PROCESSOR_TASK_ENVIRONMENT: {"value": {}}})
    assert bare.region({}) == DEFAULT_REGION and bare.db_name({}) == "tap"


@pytest.mark.parametrize("name", REQUIRED)
def test_a_missing_output_is_named(name: str) -> None:
    with pytest.raises(DeployedStackError, match=repr(name)):
        DeployedStack.from_outputs({k: v for k, v in OUTPUTS.items() if k != name}, "o.json")


def test_an_unreadable_secret_names_the_arn_not_the_value() -> None:
    with pytest.raises(DeployedStackError, match="secret:nope"):
        read_secret(Secrets(), "arn:aws:secretsmanager:eu-west-2:1:secret:nope")


def test_both_users_read_the_same_description(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from e2e.tests.targets import DeployedTarget
    from simulator.load.target import resolve_target

    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    campaign = resolve_target(str(path), environ={}, secrets_client=Secrets())
    stack = DeployedStack.from_outputs(OUTPUTS)
    assert campaign.stream_name == stack.stream_name
    assert campaign.pg_dsn == stack.postgres_dsn(read_secret(Secrets(), stack.db_secret_arn), {})
    monkeypatch.setenv("AWS_REGION", DEFAULT_REGION)
    suite = DeployedTarget(output_values(OUTPUTS))
    assert suite.stack == DeployedStack.from_outputs(OUTPUTS, "stack outputs")
    assert suite.stream_name == stack.stream_name
    assert suite.lease_duration_s() == 10.0
