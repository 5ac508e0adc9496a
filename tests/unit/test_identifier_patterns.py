"""Issue 10 item 7 beyond the record: every validated identifier matches in full.

``re.match`` with a ``$`` anchor accepts one trailing newline; these inputs were
accepted before the patterns were switched to ``fullmatch``.
"""

from __future__ import annotations

import pytest

from lib.config import ConfigError, StackConfig
from processor.contract.environment import ProcessorSettings, SettingsError

ARN = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:tap-db"


def _env(**overrides: str) -> dict[str, str]:
    return {
        "TAP_STREAM_NAME": "tap",
        "AWS_REGION": "eu-west-2",
        "TAP_DB_HOST": "db",
        "TAP_DB_NAME": "tap",
        "TAP_DB_SECRET_ARN": ARN,
        "TAP_REDIS_HOST": "cache",
        "TAP_REDIS_AUTH_SECRET_ARN": ARN,
        **overrides,
    }


def test_a_secret_arn_with_a_trailing_newline_is_refused_by_name() -> None:
    assert ProcessorSettings.from_environ(_env()).db_secret_arn == ARN
    with pytest.raises(SettingsError, match="TAP_DB_SECRET_ARN"):
        ProcessorSettings.from_environ(_env(TAP_DB_SECRET_ARN=ARN + "\n"))


@pytest.mark.parametrize("field", ["suffix", "environment"])
def test_stack_names_with_a_trailing_newline_are_refused(field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        StackConfig(**{field: "dev\n"})  # type: ignore[arg-type]
    assert repr("dev\n") in str(caught.value)
