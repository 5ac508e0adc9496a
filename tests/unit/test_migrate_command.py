"""``python -m processor migrate``: configuration errors before any connection."""

from __future__ import annotations

import pytest

from processor.__main__ import main

ARN = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:{}-AbCdEf"
BASE = {
    "TAP_STREAM_NAME": "readings",
    "TAP_DB_HOST": "db.example",
    "TAP_DB_NAME": "tap",
    "TAP_DB_SECRET_ARN": ARN.format("app"),
    "TAP_REDIS_HOST": "redis.example",
    "TAP_REDIS_AUTH_SECRET_ARN": ARN.format("redis"),
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TAP_DB_MIGRATION_SECRET_ARN", raising=False)
    return monkeypatch


def test_migrate_without_the_owner_secret_exits_2(
    environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 2
    assert "TAP_DB_MIGRATION_SECRET_ARN" in capsys.readouterr().err


def test_a_malformed_owner_secret_arn_is_named(
    environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ.setenv("TAP_DB_MIGRATION_SECRET_ARN", "tap_admin")
    assert main(["migrate"]) == 2
    assert "TAP_DB_MIGRATION_SECRET_ARN='tap_admin' is invalid" in capsys.readouterr().err


def test_unknown_command_is_refused(environ: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as info:
        main(["migrat"])
    assert info.value.code == 2
