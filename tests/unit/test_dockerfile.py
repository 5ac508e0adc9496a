"""Static checks of processor/Dockerfile and its pinned requirements (no Docker here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from processor.contract.environment import VARIABLES_BY_NAME

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "processor" / "Dockerfile"
REQUIREMENTS = ROOT / "processor" / "requirements.txt"


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


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def test_multi_stage_on_slim_python_312() -> None:
    stages = _stages()
    assert len(stages) >= 2, "builder and runtime stages"
    args = dict(
        rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG" and "=" in rest
    )
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert image.startswith("python:3.12-slim"), image


def test_final_stage_runs_as_non_root() -> None:
    final = _stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"


def test_final_stage_has_no_compilers_and_copies_only_the_venv() -> None:
    final = _stages()[-1]
    text = " ".join(rest for _, rest in final).lower()
    for forbidden in ("build-essential", "gcc", "g++", "pip install", "apt-get install"):
        assert forbidden not in text, forbidden
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert any("--from=builder" in c and "/opt/venv" in c for c in copies)
    assert any(c.split()[-2].rstrip("/") == "processor" for c in copies)


def test_ca_bundle_matches_the_contract_default() -> None:
    default = VARIABLES_BY_NAME["TAP_DB_CA_BUNDLE"].default
    text = DOCKERFILE.read_text()
    assert default is not None and default in text
    assert "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in text


def test_healthcheck_and_entrypoint() -> None:
    final = _stages()[-1]
    keywords = {keyword for keyword, _ in final}
    assert "HEALTHCHECK" in keywords
    entry = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert entry == ['["python", "-m", "processor"]']


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
