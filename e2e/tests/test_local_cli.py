"""``tap local up --processors N``: the synthesized stack's stream and secrets and N
supervised processors, healthy in ``tap local status``, gone after ``down``."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from e2e.local.state import pid_alive, read_state


def _tap_local(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e2e.local.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _allowed_overrides(state: dict[str, Any]) -> set[str]:
    """:data:`LOCAL_OVERRIDES`, plus each conditional override whose condition this
    run's servers meet (a server without TLS), never more."""
    from e2e.local.stack_resources import LOCAL_OVERRIDES

    allowed = set(LOCAL_OVERRIDES)
    services = state["services"]
    if not services["redis"]["tls"]:
        allowed.add("TAP_REDIS_TLS")
    if not services["postgres"]["tls"]:
        allowed.add("TAP_DB_SSLMODE")
    if services["postgres"]["source"] == "external":
        allowed.add("TAP_DB_NAME")
    return allowed


@pytest.mark.timeout(300)
def test_up_with_processors_status_down() -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="tap-local-cli-"))
    run_dir.chmod(0o755)  # PostgreSQL (as ``postgres`` when we are root) must enter it
    try:
        up = _tap_local("up", "--run-dir", str(run_dir), "--processors", "1", "--detach")
        assert up.returncode == 0, up.stdout + up.stderr
        status = _tap_local("status", "--run-dir", str(run_dir), "--json", timeout=60)
        report = json.loads(status.stdout)
        assert status.returncode == 0, status.stdout
        assert report["services"]["processor-1"]["healthy"], report
        assert report["services"]["stack"]["healthy"], report
        state = read_state(run_dir)
        assert state is not None
        processor = state["components"]["processor-1"]
        # Only documented overrides differ from the synthesized task environment.
        assert set(processor["changed_variables"]) <= _allowed_overrides(state)
        pid = processor["pid"]
    finally:
        down = _tap_local("down", "--run-dir", str(run_dir), timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not pid_alive(pid)
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
