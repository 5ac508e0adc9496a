"""The synthesized task environment is exactly what the processor reads."""

from __future__ import annotations

import pytest

from lib.components.processor_container import TaskEnvironmentError, task_environment
from lib.synthesized import REFERENCE, SynthesizedStack
from processor.contract.environment import (
    FORBIDDEN_SECRET_NAMES,
    TASK_VARIABLES,
    ProcessorSettings,
    SettingsError,
)

#: What a Terraform reference resolves to at apply time, by the attribute it reads.
PLACEHOLDERS = {
    ".secret_arn}": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:rds!db-0000-AbCdEf",
    ".arn}": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:redis-auth-AbCdEf",
    ".address}": "postgres-dev-ci01.abcdefghij.eu-west-2.rds.amazonaws.com",
    ".primary_endpoint_address}": "master.redis-dev-ci01.abcdef.euw2.cache.amazonaws.com",
    ".name}": "kinesis-readings-dev-ci01",
}


def resolve(value: str) -> str:
    def replace(match: object) -> str:
        reference = match.group(0)  # type: ignore[attr-defined]
        for ending, placeholder in PLACEHOLDERS.items():
            if reference.endswith(ending):
                return placeholder
        raise AssertionError(f"no placeholder for {reference}")

    return REFERENCE.sub(replace, value)


def test_environment_holds_exactly_the_stack_provided_variables(stack: SynthesizedStack) -> None:
    names = list(stack.task_environment())
    assert names == [v.name for v in TASK_VARIABLES if v.stack_provided]


def test_environment_satisfies_the_processor_settings(stack: SynthesizedStack) -> None:
    resolved = {name: resolve(value) for name, value in stack.task_environment().items()}
    settings = ProcessorSettings.from_environ(resolved)
    assert settings.aws_region == "eu-west-2"
    assert settings.db_sslmode == "verify-full"
    assert settings.redis_tls is True
    assert settings.db_port == 5432 and settings.redis_port == 6379
    assert settings.db_secret_arn.startswith("arn:aws:secretsmanager:")
    assert settings.redis_auth_secret_arn.startswith("arn:aws:secretsmanager:")
    assert settings.health_port == 8080
    # Nothing secret comes back out either.
    for name in settings.as_environment():
        assert not any(f in name for f in FORBIDDEN_SECRET_NAMES), name


def test_placeholder_check_can_fail(stack: SynthesizedStack) -> None:
    """Leaving a reference unresolved must fail validation (the test above has teeth)."""
    raw = dict(stack.task_environment())
    with pytest.raises(SettingsError) as caught:
        ProcessorSettings.from_environ({**raw, "TAP_DB_PORT": "${aws_db_instance.x.port}"})
    assert "TAP_DB_PORT" in str(caught.value)


def test_environment_is_also_an_output(stack: SynthesizedStack) -> None:
    assert stack.outputs["processor_task_environment"]["value"] == stack.task_environment()


@pytest.mark.parametrize(
    "values",
    [
        {},  # everything missing
        {v.name: "x" for v in TASK_VARIABLES if v.stack_provided} | {"TAP_LOG_LEVEL": "DEBUG"},
        {v.name: "x" for v in TASK_VARIABLES if v.stack_provided} | {"DB_PASSWORD": "x"},
    ],
)
def test_task_environment_rejects_drift_from_the_contract(values: dict[str, str]) -> None:
    with pytest.raises(TaskEnvironmentError):
        task_environment(values)
