"""tox.ini is the one place that lists the suites: ``make test`` runs its env_list
(the ``suite`` env, every suite in one environment), and ``suite`` runs every
suite env's commands exactly once. A suite env added without joining ``suite``
would silently never run in ``make test`` or CI."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Envs that are deliberately not part of `make test`, with the reason.
OUTSIDE_THE_SUITE = {
    "suite": "the aggregate itself",
    "bench": "the full benchmark: minutes of load, figures for docs/BENCHMARKS.md",
    "faults": "tests that hold servers down for minutes: .ci/run runs them after make test",
}


def _tox() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini")
    return parser


def test_make_test_runs_the_suite_env_only() -> None:
    env_list = [e.strip() for e in _tox()["tox"]["env_list"].split(",")]
    assert env_list == ["suite"]
    makefile = (ROOT / "Makefile").read_text()
    (recipe,) = re.findall(r"^test:.*\n\t(.+)$", makefile, flags=re.MULTILINE)
    assert recipe.strip() == "$(BIN)/tox run", "make test must run tox.ini's env_list"


def test_suite_runs_every_suite_env_exactly_once() -> None:
    tox = _tox()
    envs = {s.removeprefix("testenv:") for s in tox.sections() if s.startswith("testenv:")}
    referenced = re.findall(r"\{\[testenv:([\w-]+)\]commands\}", tox["testenv:suite"]["commands"])
    assert len(referenced) == len(set(referenced)), referenced
    assert set(referenced) == envs - set(OUTSIDE_THE_SUITE)


def test_faults_env_exists_and_tolerates_an_empty_folder() -> None:
    commands = _tox()["testenv:faults"]["commands"]
    assert "tests/faults" in commands and "-m faults" in commands
    assert '"$code" = 5' in commands  # pytest's "no tests collected"
