"""Static checks of the Dockerfile's two targets (``processor``, ``api``) and the
processor's pinned requirements (no Docker here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from processor.contract.environment import VARIABLES_BY_NAME

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
REQUIREMENTS = ROOT / "processor" / "requirements.txt"
TARGETS = ("processor", "api")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text()
    logical: list[str] = []
    buffer = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append(buffer + stripped)
        buffer = ""
    out = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (``FROM`` first)."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, rest in _instructions():
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            current = stages.setdefault(name, [])
        if current is not None:
            current.append((keyword, rest))
    return stages


def _target(name: str) -> list[tuple[str, str]]:
    """What the image of target ``name`` is built from: its stage and the stages it
    is ``FROM``, base first."""
    stages = _stages()
    chain: list[tuple[str, str]] = []
    while name in stages:
        chain = stages[name] + chain
        name = stages[name][0][1].split()[0]
    return chain


def _base_image(stage: str) -> str:
    args = dict(
        rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG" and "=" in rest
    )
    image = _target(stage)[0][1].split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)


def test_multi_stage_on_slim_python_312_and_the_processor_is_the_default_target() -> None:
    stages = _stages()
    assert {"processor", "api"} <= set(stages)
    assert list(stages)[-1] == "processor", "a build without --target makes the processor"
    for stage in stages:
        assert _base_image(stage).startswith("python:3.12-slim"), stage


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_as_non_root(target: str) -> None:
    users = [rest for keyword, rest in _target(target) if keyword == "USER"]
    assert users, "the target must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"


@pytest.mark.parametrize("target", TARGETS)
def test_target_has_no_compilers_and_copies_only_its_venv(target: str) -> None:
    final = _target(target)
    text = " ".join(rest for _, rest in final).lower()
    for forbidden in ("build-essential", "gcc", "g++", "pip install", "apt-get install"):
        assert forbidden not in text, forbidden
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    venvs = [c for c in copies if "/opt/venv" in c]
    assert venvs == [f"--from={target}-venv /opt/venv /opt/venv"]
    code = {c.split()[-2].rstrip("/") for c in copies if "--from" not in c}
    assert code == {"processor": {"processor"}, "api": {"processor", "api"}}[target]


def test_the_processor_venv_has_no_web_stack() -> None:
    """The processor image deliberately carries no web stack (docs/API.md)."""
    processor_venv = " ".join(rest for _, rest in _stages()["processor-venv"])
    assert "api/requirements.txt" not in processor_venv
    assert "processor/requirements.txt" in processor_venv


def test_ca_bundle_matches_the_contract_default() -> None:
    default = VARIABLES_BY_NAME["TAP_DB_CA_BUNDLE"].default
    text = DOCKERFILE.read_text()
    assert default is not None and default in text
    assert "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in text
    for target in TARGETS:
        copies = [rest for keyword, rest in _target(target) if keyword == "COPY"]
        assert any(c.startswith("--from=rds-ca") and c.endswith(default) for c in copies)


def test_healthcheck_and_entrypoint() -> None:
    processor = _target("processor")
    keywords = {keyword for keyword, _ in processor}
    assert "HEALTHCHECK" in keywords
    entry = [rest for keyword, rest in processor if keyword == "ENTRYPOINT"]
    assert entry == ['["python", "-m", "processor"]']
    api_entry = [rest for keyword, rest in _target("api") if keyword == "ENTRYPOINT"]
    assert api_entry == ['["python", "-m", "api.cli"]']


def _requirements() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[a-z,]+\])?==([0-9][A-Za-z0-9.]*)", line)
        assert match, f"not pinned with ==: {line!r}"
        pins[match.group(1).lower().replace("_", "-")] = match.group(3)
    return pins


def test_requirements_are_pinned_and_cover_pyproject() -> None:
    pins = _requirements()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        name = re.split(r"[\[<>=!~ ;]", dependency, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, f"{name} (pyproject dependency) missing from requirements.txt"
