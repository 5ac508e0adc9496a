"""``tap api`` refuses a bad configuration with a message naming every bad variable
(exit status 2), before importing the web stack or connecting to anything."""

from __future__ import annotations

import pytest

from api.cli import main
from processor.contract.api_environment import API_VARIABLES
from tap_cli.main import COMMANDS

VALID = {
    "TAP_DB_HOST": "db.internal",
    "TAP_DB_NAME": "tap",
    "TAP_REDIS_HOST": "cache.internal",
    "TAP_API_DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:api-db",
    "TAP_API_REDIS_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:api-r",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in API_VARIABLES:
        monkeypatch.delenv(var.name, raising=False)


def test_missing_variables_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    for name in VALID:
        assert f"{name} is required" in err


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("TAP_API_PORT", "eighty", "invalid literal"),
        ("TAP_API_HOST", "localhost", "must be an IP address"),
        ("TAP_API_CACHE_MAX_AGE_S", "0", "between 1 and 86400"),
        ("TAP_API_DB_SECRET_ARN", "my-secret", "Secrets Manager secret ARN"),
        ("TAP_REDIS_TLS", "maybe", "true/false"),
    ],
)
def test_a_bad_value_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    why: str,
) -> None:
    for key, good in VALID.items():
        monkeypatch.setenv(key, good)
    monkeypatch.setenv(name, value)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert f"{name}={value!r} is invalid" in err and why in err
    assert err.count("is invalid") == 1


def test_tap_lists_the_api_command() -> None:
    assert COMMANDS["api"][0] == "api.cli"


def test_the_message_names_the_apis_configuration_not_the_processors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An operator starting ``tap api`` must not be sent to the processor's settings."""
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "invalid API configuration" in err
    assert "processor" not in err.split("\n")[0]
