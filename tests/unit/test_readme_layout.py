"""README.md's "Repository layout" table names only paths that exist.

The table is where a newcomer starts; after a restructuring (issue 12) a row that
names a moved or deleted file sends them to nothing. Every backticked path in a row
is checked: the first column against the project root, the second against the
row's folder (``services/`` in the ``local_pipeline/`` row) or the project root
(``lib/tap_stack.py``). Backticked words that are no path (``ProcessorCluster``,
``tap load``) are skipped: a path ends with ``/`` or has a file extension.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEADING = "## Repository layout"
CODE = re.compile(r"`([^`]+)`")
PATH = re.compile(r"^[\w.-]+(/[\w.-]+)*(/|\.[a-z]{2,4})$")


def layout_rows(readme: str) -> list[tuple[list[str], list[str]]]:
    """(paths of the first column, paths of the second) of every table row under
    the layout heading."""
    section = readme.split(HEADING, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        if not line.startswith("| `"):
            continue
        first, second = line.strip("|").split("|", 1)
        rows.append(
            (
                [c for c in CODE.findall(first) if PATH.match(c)],
                [c for c in CODE.findall(second) if PATH.match(c)],
            )
        )
    return rows


def missing_paths(readme: str, root: Path) -> list[str]:
    missing = []
    for folders, named in layout_rows(readme):
        for path in folders:
            if not (root / path).exists():
                missing.append(path)
        bases = [root / f for f in folders if f.endswith("/")] + [root]
        for path in named:
            if not any((base / path).exists() for base in bases):
                missing.append(f"{path} (row {', '.join(folders)})")
    return missing


def test_every_path_the_readme_layout_names_exists() -> None:
    readme = (REPO / "README.md").read_text()
    rows = layout_rows(readme)
    assert len(rows) >= 8, "the layout table was not found under its heading"
    assert missing_paths(readme, REPO) == []


def test_a_moved_file_in_the_table_is_caught(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "here.py").write_text("")
    readme = (
        f"{HEADING}\n\n| path | what |\n|---|---|\n"
        "| `pkg/` | `here.py`, `gone.py`, `ProcessorCluster`, `tap load` |\n"
        "| `nowhere/` | a folder that moved |\n"
    )
    assert missing_paths(readme, tmp_path) == ["gone.py (row pkg/)", "nowhere/"]
