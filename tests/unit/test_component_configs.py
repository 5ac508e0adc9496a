"""The components' faces: every config field documented, each default in one place,
frozen outputs instead of bare attributes (issue 12, item 6).

Read from the source (``ast``), so no provider binding is imported: a component module
takes 10-90 s to import, this file a fraction of a second.
"""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from lib.components.api_container import ApiTaskValues, api_task_environment
from lib.components.processor_container import ProcessorTaskValues
from processor.contract.api_environment import API_VARIABLES, ApiSettings
from processor.contract.environment import TASK_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "lib" / "components"
STACK = ROOT / "lib" / "tap_stack.py"
CONFIG = ROOT / "lib" / "config.py"

#: Constructs that are building blocks of components, not components the stack
#: wires: they expose plain attributes on purpose.
BUILDING_BLOCKS = {
    # Read-only facts about the account (ids, partition) every component formats ARNs with.
    "AccountContext",
    # One log group; components keep it to name it in their outputs or depends_on.
    "EncryptedLogGroup",
}


def _module(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _dataclasses(path: Path) -> dict[str, ast.ClassDef]:
    found = {}
    for node in _module(path).body:
        if isinstance(node, ast.ClassDef) and any(
            "dataclass" in ast.unparse(decorator) for decorator in node.decorator_list
        ):
            found[node.name] = node
    return found


def _face_classes() -> list[tuple[Path, ast.ClassDef]]:
    """Every config, settings and outputs dataclass of the stack (``ProcessorTaskValues``
    is documented by the processor contract it mirrors, and checked against it below)."""
    classes = [
        (path, node)
        for path in sorted(COMPONENTS.glob("*.py"))
        for name, node in _dataclasses(path).items()
        if name.endswith(("Config", "Inputs", "Outputs", "Settings", "Placement"))
    ]
    classes.append((CONFIG, _dataclasses(CONFIG)["StackConfig"]))
    return classes


def _fields(node: ast.ClassDef) -> list[ast.AnnAssign]:
    return [
        item
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    ]


FACES = _face_classes()


def test_the_faces_are_found() -> None:
    names = {node.name for _, node in FACES}
    assert {"StackConfig", "CacheConfig", "CacheOutputs", "ProcessingOutputs"} <= names
    assert len(names) >= 18


@pytest.mark.parametrize(("path", "node"), FACES, ids=[node.name for _, node in FACES])
def test_every_field_is_documented_on_the_line_above(path: Path, node: ast.ClassDef) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    undocumented = [
        item.target.id  # type: ignore[union-attr]
        for item in _fields(node)
        if not lines[item.lineno - 2].strip().startswith("#:")
    ]
    assert not undocumented, f"{path.name}: {node.name} fields without a '#:' line: {undocumented}"


@pytest.mark.parametrize(
    ("path", "node"),
    [(p, n) for p, n in FACES if n.name.endswith("Outputs")],
    ids=[n.name for _, n in FACES if n.name.endswith("Outputs")],
)
def test_outputs_are_frozen(path: Path, node: ast.ClassDef) -> None:
    decorators = " ".join(ast.unparse(d) for d in node.decorator_list)
    assert "frozen=True" in decorators, f"{path.name}: {node.name} is not frozen"


def _defaults_by_config() -> dict[str, set[str]]:
    """Config class -> the fields that have a default in the component."""
    defaults: dict[str, set[str]] = {}
    for path, node in FACES:
        if path == CONFIG:
            continue
        defaults[node.name] = {
            item.target.id  # type: ignore[union-attr]
            for item in _fields(node)
            if item.value is not None
        }
    return defaults


def test_the_stack_never_overrides_a_component_default() -> None:
    """A default the stack always overrides is a second, dead default that can drift
    from the real one (``lib.config.StackConfig``): a field the stack sets has none."""
    defaults = _defaults_by_config()
    overridden = []
    for call in ast.walk(_module(STACK)):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
            for keyword in call.keywords:
                if keyword.arg in defaults.get(call.func.id, set()):
                    overridden.append(f"{call.func.id}.{keyword.arg}")
    assert not overridden, f"set by lib/tap_stack.py but defaulted in the component: {overridden}"


def test_components_expose_one_frozen_outputs_object() -> None:
    """No bare public attributes: a component's face is ``self.outputs``."""
    problems = []
    for path in sorted(COMPONENTS.glob("*.py")):
        for node in _module(path).body:
            if not isinstance(node, ast.ClassDef) or node.name in BUILDING_BLOCKS:
                continue
            if not any(ast.unparse(base) == "Construct" for base in node.bases):
                continue
            public = {
                target.attr
                for item in ast.walk(node)
                if isinstance(item, ast.Assign | ast.AnnAssign)
                for target in (item.targets if isinstance(item, ast.Assign) else [item.target])
                if isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
                and not target.attr.startswith("_")
            }
            if public != {"outputs"}:
                problems.append(f"{path.name}: {node.name} sets {sorted(public)}")
    assert not problems, problems


def test_the_task_values_are_exactly_the_contracts_stack_provided_variables() -> None:
    """The typed wiring and the processor's contract cannot drift apart."""
    contract = [var.attribute for var in TASK_VARIABLES if var.stack_provided]
    assert [f.name for f in fields(ProcessorTaskValues)] == contract


def test_task_values_become_the_contracts_variable_names() -> None:
    values = ProcessorTaskValues(
        stream_name="s",
        aws_region="eu-west-2",
        environment="dev",
        db_host="db",
        db_port=5432,
        db_name="tap",
        db_secret_arn="arn",
        db_sslmode="verify-full",
        db_ca_bundle="/ca.pem",
        redis_host="redis",
        redis_port=6379,
        redis_auth_secret_arn="arn2",
        redis_tls=True,
        health_port=8080,
        metrics_namespace="TapPipeline",
    )
    variables = values.variables()
    assert list(variables) == [var.name for var in TASK_VARIABLES if var.stack_provided]
    assert variables["TAP_DB_PORT"] == "5432"
    assert variables["TAP_REDIS_TLS"] == "true"
    assert variables["TAP_STREAM_NAME"] == "s"


def test_the_api_task_values_are_exactly_the_api_contracts_stack_provided_variables() -> None:
    """The read API's typed wiring and its settings contract cannot drift apart."""
    contract = [var.attribute for var in API_VARIABLES if var.stack_provided]
    assert [f.name for f in fields(ApiTaskValues)] == contract


def test_api_task_values_become_the_api_contracts_variables_and_settings() -> None:
    values = ApiTaskValues(
        aws_region="eu-west-2",
        environment="dev",
        db_host="db",
        db_port=5432,
        db_name="tap",
        db_sslmode="verify-full",
        db_ca_bundle="/ca.pem",
        redis_host="redis",
        redis_port=6379,
        redis_tls=True,
        db_secret_arn="arn:aws:secretsmanager:eu-west-2:123456789012:secret:api-db",
        redis_secret_arn="arn:aws:secretsmanager:eu-west-2:123456789012:secret:api-redis",
        api_port=8000,
    )
    variables = values.variables()
    assert list(variables) == [var.name for var in API_VARIABLES if var.stack_provided]
    assert variables["TAP_DB_PORT"] == "5432"
    assert variables["TAP_REDIS_TLS"] == "true"
    assert [e["name"] for e in api_task_environment(variables)] == list(variables)
    # What the stack provides plus the API's defaults is a valid API configuration,
    # read back into the same values.
    settings = ApiSettings.from_environ(variables | {"TAP_LOG_LEVEL": "INFO"})
    assert {f.name: getattr(settings, f.name) for f in fields(ApiTaskValues)} == {
        f.name: getattr(values, f.name) for f in fields(ApiTaskValues)
    }
