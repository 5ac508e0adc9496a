"""What the processor's container definition is made of, without the provider bindings.

:mod:`lib.components.processing` builds the task definitions from these; tests and
tools import them from here, so they need not load the jsii provider bindings (10-150 s
and ~600 MB) to check the health-check command or the task environment.
"""

from __future__ import annotations

from collections.abc import Mapping

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
