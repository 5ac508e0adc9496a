"""SecretsProvider against moto's Secrets Manager: caching, forced and rate-limited
refresh (rotation), the secret formats of the DB and Redis, and that no value ever
shows in a repr, a log line or an error message."""

from __future__ import annotations

import json
import logging
import pickle
from typing import Any

import pytest

from processor.secrets import (
    DbCredentials,
    Secret,
    SecretFormatError,
    SecretsProvider,
    SecretsUnavailable,
)

pytestmark = pytest.mark.integration

PASSWORD = "hunter2-very-secret-Ω"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _create(secrets_client: Any, value: object, name: str) -> str:
    body = value if isinstance(value, str) else json.dumps(value)
    return str(secrets_client.create_secret(Name=name, SecretString=body)["ARN"])


def _put(secrets_client: Any, arn: str, value: object) -> None:
    secrets_client.put_secret_value(SecretId=arn, SecretString=json.dumps(value))


@pytest.fixture
def db_arn(secrets_client: Any, request: pytest.FixtureRequest) -> str:
    return _create(
        secrets_client,
        {"username": "tap_app", "password": PASSWORD, "engine": "postgres", "port": 5432},
        f"test-db-{request.node.name[:40]}-{id(request)}",
    )


def test_client_reaches_moto_through_the_standard_endpoint_variable(
    aws_env: dict[str, str], db_arn: str
) -> None:
    provider = SecretsProvider(aws_env["AWS_REGION"])
    values = provider.get_json(db_arn)
    assert values["password"].reveal() == PASSWORD
    # No endpoint parameter exists: the client found moto through the environment.
    assert (
        provider._secretsmanager().meta.endpoint_url == aws_env["AWS_ENDPOINT_URL_SECRETS_MANAGER"]
    )


def test_values_are_wrapped_and_never_printed(
    aws_env: dict[str, str], db_arn: str, caplog: pytest.LogCaptureFixture
) -> None:
    provider = SecretsProvider(aws_env["AWS_REGION"])
    values = provider.get_json(db_arn)
    creds = provider.db_credentials(db_arn)
    assert creds == DbCredentials("tap_app", Secret(PASSWORD))
    # Non-string JSON values keep their JSON text.
    assert values["port"].reveal() == "5432"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("values %s %r creds %s %r", values, values, creds, creds)
    shown = [repr(values), str(values), repr(creds), f"{creds.password}", str(creds.password)]
    shown += [caplog.text, repr(provider)]
    for text in shown:
        assert PASSWORD not in text
        assert "hunter2" not in text
    assert str(creds.password) == "***"
    assert repr(creds.password) == "Secret('***')"
    with pytest.raises(TypeError):
        pickle.dumps(creds.password)


def test_cache_serves_repeated_reads_and_refresh_picks_up_rotation(
    aws_env: dict[str, str], secrets_client: Any, db_arn: str
) -> None:
    clock = FakeClock()
    provider = SecretsProvider(aws_env["AWS_REGION"], min_refresh_interval_s=5, clock=clock)
    first = provider.db_credentials(db_arn)
    for _ in range(5):
        assert provider.db_credentials(db_arn) == first
    assert provider.fetch_count == 1

    _put(secrets_client, db_arn, {"username": "tap_app", "password": "rotated-1"})
    # Without refresh the cache answers (rotation is only noticed on a failed login).
    assert provider.db_credentials(db_arn).password.reveal() == PASSWORD
    # A forced refresh right after the last fetch is rate-limited: cached value, no call.
    clock.now += 1
    assert provider.db_credentials(db_arn, refresh=True).password.reveal() == PASSWORD
    assert provider.fetch_count == 1
    # Past the interval it reaches Secrets Manager and gets the new version.
    clock.now += 5
    assert provider.db_credentials(db_arn, refresh=True).password.reveal() == "rotated-1"
    assert provider.fetch_count == 2
    # ...and the cache now serves the new value.
    assert provider.db_credentials(db_arn).password.reveal() == "rotated-1"
    assert provider.fetch_count == 2
    assert provider.last_fetched_age(db_arn) == 0


def test_redis_token(aws_env: dict[str, str], secrets_client: Any) -> None:
    arn = _create(secrets_client, {"auth_token": "tok-" + PASSWORD}, "test-redis-token")
    provider = SecretsProvider(aws_env["AWS_REGION"])
    token = provider.redis_auth_token(arn)
    assert token.reveal() == "tok-" + PASSWORD
    assert PASSWORD not in repr(token)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"username": "u"}, "lacks password"),
        ({"password": PASSWORD}, "lacks username"),
        (f"not json {PASSWORD}", "is not JSON"),
        (json.dumps([PASSWORD]), "is not a JSON object"),
    ],
)
def test_malformed_db_secret_is_named_without_its_value(
    aws_env: dict[str, str], secrets_client: Any, body: object, message: str
) -> None:
    arn = _create(secrets_client, body, f"test-malformed-{abs(hash(message))}")
    provider = SecretsProvider(aws_env["AWS_REGION"])
    with pytest.raises(SecretFormatError, match=message) as info:
        provider.db_credentials(arn)
    assert PASSWORD not in str(info.value)
    assert info.value.__cause__ is None or PASSWORD not in str(info.value.__cause__)


def test_missing_secret_is_unavailable(aws_env: dict[str, str]) -> None:
    provider = SecretsProvider(aws_env["AWS_REGION"])
    arn = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:does-not-exist-AbCdEf"
    with pytest.raises(SecretsUnavailable, match="ResourceNotFoundException"):
        provider.get_json(arn)


def test_unreachable_endpoint_is_unavailable(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A closed port: connection refused, turned into SecretsUnavailable (not a hang).
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:9")
    provider = SecretsProvider(aws_env["AWS_REGION"])
    with pytest.raises(SecretsUnavailable):
        provider.get_json("arn:aws:secretsmanager:eu-west-2:123456789012:secret:x-AbCdEf")


def test_botocore_debug_logs_do_not_carry_the_secret(
    aws_env: dict[str, str], db_arn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """botocore logs response bodies at DEBUG; the GetSecretValue body is the secret."""
    with caplog.at_level(logging.DEBUG):
        SecretsProvider(aws_env["AWS_REGION"]).get_json(db_arn)
    assert "GetSecretValue" in caplog.text  # botocore did log the call...
    # ...but not the body. (The ASCII part: json.dumps escapes the Ω.)
    assert "hunter2-very-secret" not in caplog.text
