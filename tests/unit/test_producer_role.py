"""Producing through the stack's producer role (simulator/load/producer_role.py),
against moto's in-process emulation of STS, IAM and Kinesis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from simulator.load.producer_role import assumed_role_session

REGION = "eu-west-2"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    moto = pytest.importorskip("moto")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        yield


def test_session_acts_as_the_role_and_can_put_records(aws: None) -> None:
    import boto3

    iam = boto3.client("iam", region_name=REGION)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role_arn = iam.create_role(
        RoleName="role-producer-dev-t1", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    boto3.client("kinesis", region_name=REGION).create_stream(StreamName="s1", ShardCount=1)

    session = assumed_role_session(role_arn, region=REGION, session_name="gateway-01")

    identity = session.client("sts").get_caller_identity()
    assert identity["Arn"].endswith(":assumed-role/role-producer-dev-t1/gateway-01")
    frozen = session.get_credentials().get_frozen_credentials()
    assert frozen.token  # temporary credentials, not the caller's keys
    assert frozen.access_key != "testing"
    response = session.client("kinesis").put_records(
        StreamName="s1", Records=[{"Data": b"{}", "PartitionKey": "dev-1"}]
    )
    assert response["FailedRecordCount"] == 0
