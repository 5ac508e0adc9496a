"""What the processor's container definition is made of, without the provider bindings.

:mod:`lib.components.processing` builds the task definitions from these; tests and
tools import them from here, so they need not load the jsii provider bindings (10-150 s
and ~600 MB) to check the health-check command or the task environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from processor.contract.environment import TASK_VARIABLES

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


def task_environment(values: Mapping[str, str]) -> list[dict[str, str]]:
    """The container ``environment`` list, from the contract.

    ``values`` must hold every ``stack_provided`` variable of ``TASK_VARIABLES`` and
    nothing else; the other variables keep the processor's documented defaults.
    """
    provided = [var.name for var in TASK_VARIABLES if var.stack_provided]
    missing = [name for name in provided if name not in values]
    unknown = sorted(set(values) - set(provided))
    if missing or unknown:
        raise TaskEnvironmentError(
            f"task environment does not match processor.contract: missing {missing}, "
            f"not stack-provided {unknown}"
        )
    return [{"name": name, "value": str(values[name])} for name in provided]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorTaskValues:
    """What the stack tells the processor task: one field per ``stack_provided``
    variable of :data:`processor.contract.environment.TASK_VARIABLES`, named by the
    variable's ``attribute`` (the name :class:`processor.contract.environment.
    ProcessorSettings` reads it into). The wiring is typed (no variable-name string in
    :mod:`lib.tap_stack`); ``tests/stack/test_tapstack_task_environment.py`` fails
    when the fields and the contract drift apart. Values may be Terraform tokens."""

    #: The Kinesis stream to consume.
    stream_name: str
    #: Region of the stream and secrets.
    aws_region: str
    #: The deployment's environment name.
    environment: str
    #: PostgreSQL host name.
    db_host: str
    #: PostgreSQL port.
    db_port: int
    #: The database the pipeline writes to.
    db_name: str
    #: The application role's secret (never the master secret).
    db_secret_arn: str
    #: libpq sslmode (verify-full in AWS).
    db_sslmode: str
    #: The RDS CA bundle inside the image.
    db_ca_bundle: str
    #: Redis primary endpoint.
    redis_host: str
    #: Redis port.
    redis_port: int
    #: The secret holding the Redis AUTH token.
    redis_auth_secret_arn: str
    #: TLS to Redis (always in AWS: transit encryption is on).
    redis_tls: bool
    #: Port of the processor's health endpoint (the container health check's).
    health_port: int
    #: CloudWatch namespace of the processor's metrics.
    metrics_namespace: str

    def variables(self) -> dict[str, str]:
        """Contract variable name -> value, as the container environment holds it."""
        by_attribute = {var.attribute: var.name for var in TASK_VARIABLES if var.stack_provided}
        return {
            by_attribute[f.name]: _environment_value(getattr(self, f.name)) for f in fields(self)
        }


def _environment_value(value: object) -> str:
    """Environment values are strings; booleans as the contract parses them."""
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
