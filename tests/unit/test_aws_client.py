"""The simulator's and harness's one AWS client factory (simulator/aws_client.py):
region, endpoint and credentials read the same way for every service and for an
environment passed in (a target's) as for this process's."""

from __future__ import annotations

import pytest

from processor.contract.deployment import DEFAULT_REGION
from simulator.aws_client import aws_client, aws_region, kinesis_client

_AWS = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_KINESIS",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_PROFILE",
)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _AWS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "process-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "process-secret")


def test_region_order_is_aws_region_then_default_region_then_the_stack_default() -> None:
    assert aws_region({}) == DEFAULT_REGION
    assert aws_region({"AWS_DEFAULT_REGION": "eu-west-1"}) == "eu-west-1"
    assert aws_region({"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "us-east-1"}) == "us-east-1"


def test_this_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:4567")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = kinesis_client(max_attempts=1)
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.endpoint_url == "http://127.0.0.1:4567"
    assert client.meta.config.retries["mode"] == "standard"
    assert client._request_signer._credentials.access_key == "process-key"


def test_a_passed_environment_is_read_the_same_way() -> None:
    target = {
        "AWS_REGION": "eu-central-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:4567",
        "AWS_ACCESS_KEY_ID": "target-key",
        "AWS_SECRET_ACCESS_KEY": "target-secret",
    }
    kinesis = kinesis_client(environ=target)
    assert kinesis.meta.endpoint_url == "http://127.0.0.1:4567"
    assert kinesis.meta.region_name == "eu-central-1"
    assert kinesis._request_signer._credentials.access_key == "target-key"
    # No service-specific endpoint: the general one (moto for Secrets Manager).
    secrets = aws_client("secretsmanager", environ=target)
    assert secrets.meta.endpoint_url == "http://127.0.0.1:5000"
    named = aws_client(
        "secretsmanager", environ=target | {"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://h:1"}
    )
    assert named.meta.endpoint_url == "http://h:1"


def test_a_deployed_target_without_endpoints_reaches_aws() -> None:
    client = kinesis_client(environ={"AWS_REGION": DEFAULT_REGION})
    assert client.meta.endpoint_url == f"https://kinesis.{DEFAULT_REGION}.amazonaws.com"
    # No keys in the target: this process's credential chain.
    assert client._request_signer._credentials.access_key == "process-key"


def test_each_client_has_its_own_session_but_the_service_data_is_loaded_once() -> None:
    # A new session loaded botocore's JSON (endpoints, the service's model) again:
    # 0.13 s of CPU per client, several per integration test; with the data loader
    # shared, 0.015 s (docs/BENCHMARKS.md, "Session 5: CPU cuts").
    first = aws_client("secretsmanager", environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    second = aws_client("secretsmanager", environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    assert first is not second
    assert first._loader is second._loader
    assert first.meta.events is not second.meta.events  # sessions stay separate
