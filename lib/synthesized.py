"""Read a synthesized stack (``cdktf.out/stacks/<stack>/cdk.tf.json``) without cdktf.

Used by the stack tests and by anything that must start processors "with exactly
the environment of the synthesized ECS task definition" (the local stack): the
environment is ``resource.aws_ecs_task_definition.<id>.container_definitions``, a
JSON string whose single container holds ``environment: [{name, value}, ...]``.
Values that AWS decides at apply time are Terraform references (``${...}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DEFAULT_STACK: Final = "TapStack"
#: A Terraform interpolation left in a value by synth (resolved at apply time).
REFERENCE: Final = re.compile(r"\$\{[^}]*\}")
_TASK_DEFINITION_REF: Final = re.compile(r"\$\{aws_ecs_task_definition\.([^.}]+)\.arn\}")


def stack_file(outdir: str | Path = "cdktf.out", stack: str = DEFAULT_STACK) -> Path:
    return Path(outdir) / "stacks" / stack / "cdk.tf.json"


@dataclass(frozen=True)
class SynthesizedStack:
    """The parsed ``cdk.tf.json`` of one stack."""

    path: Path
    document: Mapping[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> SynthesizedStack:
        path = Path(path)
        return cls(path, json.loads(path.read_text(encoding="utf-8")))

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Logical id -> body of every resource of one type (empty when none)."""
        return dict(self.document.get("resource", {}).get(resource_type, {}))

    def data(self, data_type: str) -> dict[str, dict[str, Any]]:
        return dict(self.document.get("data", {}).get(data_type, {}))

    def single(self, resource_type: str) -> dict[str, Any]:
        found = self.resources(resource_type)
        if len(found) != 1:
            raise LookupError(f"expected one {resource_type}, found {len(found)}")
        return next(iter(found.values()))

    def component(self, resource_type: str, component_id: str) -> dict[str, Any]:
        """The one resource of a type inside one component (the construct id given
        in lib/tap_stack.py, e.g. ``processing``), where other components have their
        own (the read API has its own service, repository, scaling target)."""
        found = [
            body
            for logical_id, body in self.resources(resource_type).items()
            if logical_id.startswith(f"{component_id}_")
        ]
        if len(found) != 1:
            raise LookupError(f"expected one {resource_type} in {component_id}, found {len(found)}")
        return found[0]

    def all_resources(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(type, logical id, body) of every resource."""
        for resource_type, by_id in self.document.get("resource", {}).items():
            for logical_id, body in by_id.items():
                yield resource_type, logical_id, body

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return dict(self.document.get("output", {}))

    def cache_secret_version(self) -> dict[str, Any]:
        """The Redis AUTH token's secret version (the application role's secret has
        one too): the one the cache construct declares."""
        (version,) = [
            v
            for k, v in self.resources("aws_secretsmanager_secret_version").items()
            # Not the read API's Redis user's (cache_users_..., issue 13).
            if k.startswith("cache_auth-secret-value")
        ]
        return version

    def service_task_definition(self) -> dict[str, Any]:
        """The task definition the ECS service runs (the stack also has the one-off
        migrate task's); the only one when there is one."""
        tasks = self.resources("aws_ecs_task_definition")
        if len(tasks) == 1:
            return next(iter(tasks.values()))
        services = self.resources("aws_ecs_service")
        # The processor's service (the read API's is the second one, issue 13).
        processor = {k: v for k, v in services.items() if k.startswith("processing_")}
        if len(processor) != 1:
            raise LookupError(f"expected one processor service, found {sorted(services)}")
        (service,) = processor.values()
        match = _TASK_DEFINITION_REF.fullmatch(service["task_definition"])
        if match is None:
            raise LookupError(f"service task_definition {service['task_definition']!r}")
        return tasks[match.group(1)]

    def container_definitions(self) -> list[dict[str, Any]]:
        task = self.service_task_definition()
        definitions: list[dict[str, Any]] = json.loads(task["container_definitions"])
        return definitions

    def task_environment(self) -> dict[str, str]:
        """The processor container's environment, name -> value (references unresolved)."""
        (container,) = self.container_definitions()
        return {item["name"]: item["value"] for item in container.get("environment", [])}
