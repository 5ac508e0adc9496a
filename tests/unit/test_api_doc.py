"""docs/API.md's configuration table is generated from the contract
(:data:`processor.contract.api_environment.API_VARIABLES`); this test fails when they
drift. Regenerate with::

    TAP_UPDATE_DOCS=1 .venv/bin/pytest tests/unit/test_api_doc.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from processor.contract.api_environment import API_VARIABLES

DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"
BEGIN = "<!-- api-config-table:begin (generated: tests/unit/test_api_doc.py) -->"
END = "<!-- api-config-table:end -->"


def config_table() -> str:
    lines = [
        "| Variable | Required | Default | Set by the stack | Description |",
        "|---|---|---|---|---|",
    ]
    for var in API_VARIABLES:
        default = "" if var.default is None else f"`{var.default}`" if var.default else "(empty)"
        lines.append(
            f"| `{var.name}` | {'yes' if var.required else 'no'} | {default} | "
            f"{'yes' if var.stack_provided else 'no'} | {var.description.replace('|', '/')} |"
        )
    return "\n".join(lines)


def test_config_table_matches_the_contract() -> None:
    text = DOC.read_text()
    pattern = re.compile(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), re.S)
    match = pattern.search(text)
    assert match, f"{DOC} lacks the generated configuration table markers"
    expected = config_table() + "\n"
    if os.environ.get("TAP_UPDATE_DOCS") and match.group(1) != expected:
        DOC.write_text(text[: match.start(1)] + expected + text[match.end(1) :])
        return
    assert match.group(1) == expected, (
        "docs/API.md configuration table is out of date; regenerate with "
        "TAP_UPDATE_DOCS=1 .venv/bin/pytest tests/unit/test_api_doc.py"
    )


def test_every_api_variable_has_a_distinct_name_and_attribute() -> None:
    names = [var.name for var in API_VARIABLES]
    attributes = [var.attribute for var in API_VARIABLES]
    assert len(set(names)) == len(names) and len(set(attributes)) == len(attributes)
