"""Campaign targets: tap local state, terraform outputs, environment, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from simulator.load.target import Target, TargetError, resolve_target

STATE = {
    "run_dir": "/tmp/run",
    "region": "eu-west-2",
    "client_environment": {
        "AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:4567",
        "AWS_REGION": "eu-west-2",
    },
    "services": {
        "postgres": {"dsn": "postgresql://tap_app:pw@127.0.0.1:5433/tap?sslmode=verify-full"},
        "redis": {"url": "rediss://:tok@127.0.0.1:6380/0", "ca_path": "/tmp/run/tls/ca.pem"},
        "kinesis": {"endpoint_url": "http://127.0.0.1:4567"},
        "moto": {"endpoint_url": "http://127.0.0.1:5000"},
    },
}


def write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "target.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_local_state_file(tmp_path: Path) -> None:
    target = resolve_target(write(tmp_path, STATE), stream="readings", environ={})
    assert target.stream_name == "readings"
    assert target.kinesis_endpoint == "http://127.0.0.1:4567"
    assert target.redis_ca == "/tmp/run/tls/ca.pem"
    described = target.describe()
    assert "pw" not in json.dumps(described) and "tok" not in json.dumps(described)
    assert described["postgres"] == "postgresql://127.0.0.1:5433/tap"


def test_local_state_without_a_stream_says_how_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="--stream"):
        resolve_target(write(tmp_path, STATE), environ={})


class Secrets:
    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        if "db" in SecretId:
            return {"SecretString": json.dumps({"username": "master", "password": "p@ss"})}
        return {"SecretString": json.dumps({"auth_token": "t0k"})}


def test_terraform_outputs_and_secrets(tmp_path: Path) -> None:
    outputs = {
        "stream_name": {"value": "tap-dev-readings", "type": "string", "sensitive": False},
        "db_endpoint": {"value": "db.example"},
        "db_port": {"value": 5432},
        "db_secret_arn": {"value": "arn:aws:secretsmanager:eu-west-2:1:secret:db"},
        "redis_primary_endpoint": {"value": "redis.example"},
        "redis_port": {"value": 6379},
        "redis_auth_secret_arn": {"value": "arn:aws:secretsmanager:eu-west-2:1:secret:r"},
        "processor_task_environment": {"value": {"AWS_REGION": "eu-west-2", "TAP_DB_NAME": "tap"}},
    }
    target = resolve_target(write(tmp_path, outputs), environ={}, secrets_client=Secrets())
    assert target.kind == "deployed"
    assert target.stream_name == "tap-dev-readings"
    assert target.aws_environment == {}  # normal AWS credentials and endpoints
    assert target.pg_dsn is not None and "master:p%40ss@db.example:5432/tap" in target.pg_dsn
    assert "sslmode=verify-full" in target.pg_dsn
    assert target.redis_url == "rediss://:t0k@redis.example:6379/0"
    # An older stack without a producer role: Locust produces with the caller's keys.
    assert target.producer_role_arn is None
    assert "TAP_PRODUCER_ROLE_ARN" not in target.process_environment()


def test_deployed_target_produces_through_the_producer_role(tmp_path: Path) -> None:
    role = "arn:aws:iam::123456789012:role/role-producer-dev-pr1"
    outputs = {
        "stream_name": {"value": "kinesis-readings-dev-pr1"},
        "db_endpoint": {"value": "db.example"},
        "db_port": {"value": 5432},
        "db_secret_arn": {"value": "arn:aws:secretsmanager:eu-west-2:1:secret:db"},
        "redis_primary_endpoint": {"value": "redis.example"},
        "redis_port": {"value": 6379},
        "redis_auth_secret_arn": {"value": "arn:aws:secretsmanager:eu-west-2:1:secret:r"},
        "processor_task_environment": {"value": {"AWS_REGION": "eu-west-2"}},
        "producer_role_arn": {"value": role},
    }
    target = resolve_target(write(tmp_path, outputs), environ={}, secrets_client=Secrets())
    assert target.producer_role_arn == role
    assert target.process_environment()["TAP_PRODUCER_ROLE_ARN"] == role
    assert Target.from_json(target.to_json()).producer_role_arn == role


def test_environment_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no runs/current here
    env = {
        "AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:1",
        "TAP_STREAM_NAME": "s",
        "TAP_PG_DSN": "postgresql://u:p@h:1/d",
        "TAP_REDIS_URL": "rediss://:t@h:2/0?ssl_ca_certs=/ca.pem",
    }
    target = resolve_target("local", environ=env)
    assert (target.stream_name, target.redis_url, target.redis_ca) == (
        "s",
        "rediss://:t@h:2/0",
        "/ca.pem",
    )
    with pytest.raises(TargetError, match="AWS_ENDPOINT_URL_KINESIS"):
        resolve_target("local", environ={})


def test_round_trip_and_unknown_files(tmp_path: Path) -> None:
    target = Target(kind="local", stream_name="s", region="eu-west-2", pg_dsn="x")
    assert Target.from_json(target.to_json()) == target
    assert resolve_target(write(tmp_path, json.loads(target.to_json())), environ={}) == target
    with pytest.raises(TargetError, match=r"not a tap local state\.json"):
        resolve_target(write(tmp_path, {"hello": 1}), environ={})
    with pytest.raises(TargetError, match="does not exist"):
        resolve_target(str(tmp_path / "missing.json"), environ={})


def test_the_read_apis_url_from_tap_local_up_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: read users need the API; tap local up's state names its board URL."""
    without = resolve_target(write(tmp_path, STATE), stream="s", environ={})
    assert without.api_url is None
    state = STATE | {"components": {"api": {"board_url": "http://127.0.0.1:8123/board/"}}}
    target = resolve_target(write(tmp_path, state), stream="s", environ={})
    assert target.api_url == "http://127.0.0.1:8123"
    assert target.describe()["api"] == "http://127.0.0.1:8123"
    assert Target.from_json(target.to_json()).api_url == "http://127.0.0.1:8123"
    monkeypatch.chdir(tmp_path)  # no runs/current/state.json here
    environ = {
        "AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:4567",
        "TAP_API_URL": "https://api.plant.internal",
    }
    assert resolve_target("local", stream="s", environ=environ).api_url == (
        "https://api.plant.internal"
    )
