"""tox.ini is the one place that lists the suites: ``make test`` runs every env of
its env_list at once (``tox run-parallel --parallel all``). A suite env left out of
the env_list would silently never run in ``make test`` or CI."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Envs that are deliberately not part of `make test`, with the reason.
OUTSIDE_THE_SUITE = {
    "bench": "the full benchmark: minutes of load, figures for docs/BENCHMARKS.md",
    "faults": "tests that hold servers down for minutes: .ci/run runs them after make test",
}


def _tox() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini")
    return parser


def _env_list() -> list[str]:
    return [e.strip() for e in _tox()["tox"]["env_list"].split(",")]


def test_make_test_runs_the_whole_env_list_in_parallel() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (recipe,) = re.findall(r"^test:.*\n\t(.+)$", makefile, flags=re.MULTILINE)
    argv = recipe.split()
    assert argv[:2] == ["$(BIN)/tox", "run-parallel"], "make test must run tox.ini's env_list"
    assert "-e" not in argv and "-m" not in argv, "the env_list, not a selection of it"
    assert argv[argv.index("--parallel") + 1] == "all", "every env at once"


def test_every_suite_env_is_in_the_env_list_exactly_once() -> None:
    tox = _tox()
    envs = {s.removeprefix("testenv:") for s in tox.sections() if s.startswith("testenv:")}
    env_list = _env_list()
    assert len(env_list) == len(set(env_list)), env_list
    assert set(env_list) == envs - set(OUTSIDE_THE_SUITE)


def test_every_env_prints_its_output_in_parallel_mode() -> None:
    # Without it tox run-parallel shows only failing envs' output: CI's log would
    # not show what passed, or how long it took.
    assert _tox()["testenv"]["parallel_show_output"].strip() == "true"


def test_embedded_env_takes_the_wheel_servers_even_where_debians_exist() -> None:
    set_env = _tox()["testenv:embedded"]["set_env"]
    assert "TAP_LOCAL_SERVERS = embedded" in set_env


def test_faults_env_exists_and_tolerates_an_empty_folder() -> None:
    commands = _tox()["testenv:faults"]["commands"]
    assert "tests/faults" in commands and "-m faults" in commands
    assert '"$code" = 5' in commands  # pytest's "no tests collected"


def test_the_env_list_runs_in_three_lanes() -> None:
    # At most three envs at once on CI's 2 cores (tox.ini's header says why): each
    # env depends on at most one other, and three envs start the lanes.
    tox = _tox()
    depends = {
        env: [d.strip() for d in tox[f"testenv:{env}"].get("depends", "").split(",") if d.strip()]
        for env in _env_list()
    }
    assert all(len(d) <= 1 for d in depends.values()), depends
    assert all(d in depends for deps in depends.values() for d in deps), depends
    followers: dict[str, int] = {}
    for deps in depends.values():
        for d in deps:
            followers[d] = followers.get(d, 0) + 1
    assert all(n == 1 for n in followers.values()), "a lane must not fork"
    assert sorted(env for env, d in depends.items() if not d) == ["e2e", "integration", "lint"]


def test_every_env_caches_bytecode_outside_the_clone() -> None:
    # tox-uv installs no .pyc: an env that may not write bytecode compiles boto3,
    # psycopg and the provider bindings from source in every process it starts
    # (docs/BENCHMARKS.md, "Session 4: CPU cuts"). Envs with their own set_env
    # extend the shared one.
    tox = _tox()
    shared = tox["testenv"]["set_env"]
    assert "PYTHONDONTWRITEBYTECODE" not in shared
    assert re.search(r"^\s*PYTHONPYCACHEPREFIX = \{env_dir\}", shared, re.M), shared
    for section in tox.sections():
        if section.startswith("testenv:") and "set_env" in tox[section]:
            assert "{[testenv]set_env}" in tox[section]["set_env"], section
            assert "PYTHONDONTWRITEBYTECODE" not in tox[section]["set_env"], section


def test_the_type_env_checks_every_package_of_the_import_rules() -> None:
    # A package moved or added (local_pipeline/ from e2e/) must not fall out of mypy.
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "root_packages"
    ]
    checked = _tox()["testenv:type"]["commands"].split()
    assert set(packages) <= set(checked), set(packages) - set(checked)
