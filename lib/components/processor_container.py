"""What the processor's container definition is made of, without the provider bindings.

:mod:`lib.components.processing` builds the task definitions from these; tests and
tools import them from here, so they need not load the jsii provider bindings (10-150 s
and ~600 MB) to check the health-check command or the task environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from processor.contract.environment import TASK_VARIABLES, EnvVar

#: The processor's container in the service's task definition.
CONTAINER_NAME = "processor"
#: The container of the one-off migrate task (same image, command ``migrate``).
MIGRATE_CONTAINER_NAME = "migrate"
#: Non-root user of the processor image (uid:gid).
CONTAINER_USER = "10001:10001"
HEALTH_PATH = "/health/live"

#: Exactly the Kinesis calls the processor makes (processor/kinesis_source.py; a stack
#: test derives them from the code): nothing that writes, describes or administers.
KINESIS_READ_ACTIONS: tuple[str, ...] = (
    "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards",
)  # fmt: skip


class TaskEnvironmentError(ValueError):
    """The stack did not provide exactly the contract's stack-provided variables."""


def contract_environment(
    variables: Iterable[EnvVar],
    values: Mapping[str, str],
    *,
    contract: str,
    error: type[TaskEnvironmentError] = TaskEnvironmentError,
) -> list[dict[str, str]]:
    """A container ``environment`` list from a contract's variables: ``values`` must
    hold exactly the ``stack_provided`` ones (the others keep their documented
    defaults); ``error`` names ``contract`` and what is missing or not stack-provided."""
    provided = [var.name for var in variables if var.stack_provided]
    missing = [name for name in provided if name not in values]
    unknown = sorted(set(values) - set(provided))
    if missing or unknown:
        raise error(f"{contract}: missing {missing}, not stack-provided {unknown}")
    return [{"name": name, "value": str(values[name])} for name in provided]


def task_environment(values: Mapping[str, str]) -> list[dict[str, str]]:
    """The processor container's ``environment`` list, from ``TASK_VARIABLES``."""
    return contract_environment(
        TASK_VARIABLES, values, contract="task environment does not match processor.contract"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorTaskValues:
    """What the stack tells the processor task: one field per ``stack_provided``
    variable of :data:`processor.contract.environment.TASK_VARIABLES`, named by the
    variable's ``attribute`` (the name :class:`processor.contract.environment.
    ProcessorSettings` reads it into). The wiring is typed (no variable-name string in
    :mod:`lib.tap_stack`); ``tests/unit/test_component_configs.py`` fails when the
    fields and the contract drift apart. The contract documents each variable
    (docs/PROCESSOR.md's table). Values may be Terraform tokens."""

    stream_name: str
    aws_region: str
    environment: str
    db_host: str
    db_port: int
    db_name: str
    db_secret_arn: str
    db_sslmode: str
    db_ca_bundle: str
    redis_host: str
    redis_port: int
    redis_auth_secret_arn: str
    redis_tls: bool
    health_port: int
    metrics_namespace: str

    def variables(self) -> dict[str, str]:
        """Contract variable name -> value, as the container environment holds it."""
        by_attribute = {var.attribute: var.name for var in TASK_VARIABLES if var.stack_provided}
        return {
            by_attribute[f.name]: environment_value(getattr(self, f.name)) for f in fields(self)
        }


def environment_value(value: object) -> str:
    """Environment values are strings; booleans as the contract parses them (also
    the read API's: :class:`lib.components.api_container.ApiTaskValues`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def health_check_command(port: int) -> list[str]:
    """The image is python-slim without curl: a urllib one-liner exits non-zero unless
    the endpoint answers 2xx (urlopen raises on 4xx/5xx and on connection errors)."""
    url = f"http://127.0.0.1:{port}{HEALTH_PATH}"
    return [
        "CMD",
        "python",
        "-c",
        f"import urllib.request; urllib.request.urlopen({url!r}, timeout=3)",
    ]
