"""The configuration tables of docs/PROCESSOR.md and docs/API.md are generated from the
contract (:data:`processor.contract.environment.TASK_VARIABLES`,
:data:`processor.contract.api_environment.API_VARIABLES`); this test fails when a
table and its contract drift. Regenerate both with::

    TAP_UPDATE_DOCS=1 .venv/bin/pytest tests/unit/test_settings_docs.py
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from processor.contract.api_environment import API_VARIABLES
from processor.contract.environment import TASK_VARIABLES, EnvVar

DOCS = Path(__file__).resolve().parents[2] / "docs"


@dataclass(frozen=True)
class GeneratedTable:
    """One document's table and the contract it is generated from."""

    doc: Path
    begin: str
    end: str
    variables: Sequence[EnvVar]


TABLES = {
    "processor": GeneratedTable(
        DOCS / "PROCESSOR.md",
        "<!-- config-table:begin (generated: tests/unit/test_settings_docs.py) -->",
        "<!-- config-table:end -->",
        TASK_VARIABLES,
    ),
    "api": GeneratedTable(
        DOCS / "API.md",
        "<!-- api-config-table:begin (generated: tests/unit/test_settings_docs.py) -->",
        "<!-- api-config-table:end -->",
        API_VARIABLES,
    ),
}


def config_table(variables: Sequence[EnvVar]) -> str:
    lines = [
        "| Variable | Required | Default | Set by the stack | Description |",
        "|---|---|---|---|---|",
    ]
    for var in variables:
        default = "" if var.default is None else f"`{var.default}`" if var.default else "(empty)"
        lines.append(
            f"| `{var.name}` | {'yes' if var.required else 'no'} | {default} | "
            f"{'yes' if var.stack_provided else 'no'} | {var.description.replace('|', '/')} |"
        )
    return "\n".join(lines)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_config_table_matches_the_contract(name: str) -> None:
    table = TABLES[name]
    text = table.doc.read_text()
    pattern = re.compile(re.escape(table.begin) + r"\n(.*?)" + re.escape(table.end), re.S)
    match = pattern.search(text)
    assert match, f"{table.doc} lacks the generated configuration table markers"
    expected = config_table(table.variables) + "\n"
    if os.environ.get("TAP_UPDATE_DOCS") and match.group(1) != expected:
        table.doc.write_text(text[: match.start(1)] + expected + text[match.end(1) :])
        return
    assert match.group(1) == expected, (
        f"{table.doc.name}'s configuration table is out of date; regenerate with "
        "TAP_UPDATE_DOCS=1 .venv/bin/pytest tests/unit/test_settings_docs.py"
    )


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_variable_has_a_distinct_name_and_attribute(name: str) -> None:
    variables = TABLES[name].variables
    names = [var.name for var in variables]
    attributes = [var.attribute for var in variables]
    assert len(set(names)) == len(names) and len(set(attributes)) == len(attributes)
