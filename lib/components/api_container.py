"""What the read API's container definition is made of, without the provider bindings.

:mod:`lib.components.read_api` builds the task definition from these; tests import
them from here, so they need not load the jsii provider bindings to check the task
environment (as :mod:`lib.components.processor_container` does for the processor).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from lib.components.processor_container import (
    TaskEnvironmentError,
    contract_environment,
    environment_value,
)
from processor.contract.api_environment import API_VARIABLES

#: The API's container in its task definition.
API_CONTAINER_NAME = "api"


class ApiTaskEnvironmentError(TaskEnvironmentError):
    """The stack did not provide exactly the API contract's stack-provided variables."""


def api_task_environment(values: Mapping[str, str]) -> list[dict[str, str]]:
    """The container ``environment`` list from :data:`API_VARIABLES`: exactly the
    stack-provided ones (the others keep the API's documented defaults)."""
    return contract_environment(
        API_VARIABLES,
        values,
        contract="API task environment does not match processor.contract.api_environment",
        error=ApiTaskEnvironmentError,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiTaskValues:
    """What the stack tells the read API's task: one field per ``stack_provided``
    variable of :data:`processor.contract.api_environment.API_VARIABLES`, named by the
    variable's ``attribute`` (the name :class:`processor.contract.api_environment.
    ApiSettings` reads it into). The wiring is typed (no variable-name string in
    :mod:`lib.tap_stack`), as :class:`lib.components.processor_container.
    ProcessorTaskValues` is for the processor; ``tests/unit/test_component_configs.py``
    fails when the fields and the contract drift apart. The contract documents each
    variable (docs/API.md). Values may be Terraform tokens."""

    aws_region: str
    environment: str
    db_host: str
    db_port: int
    db_name: str
    db_sslmode: str
    db_ca_bundle: str
    redis_host: str
    redis_port: int
    redis_tls: bool
    db_secret_arn: str
    redis_secret_arn: str
    api_port: int

    def variables(self) -> dict[str, str]:
        """Contract variable name -> value, as the container environment holds it."""
        by_attribute = {var.attribute: var.name for var in API_VARIABLES if var.stack_provided}
        return {
            by_attribute[f.name]: environment_value(getattr(self, f.name)) for f in fields(self)
        }
