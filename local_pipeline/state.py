"""The run folder's ``state.json``: what ``tap local up`` started, for ``status`` and
``down`` (and for humans and other tools: ports, pids, URLs, CA paths).

It holds the run's throwaway local passwords and tokens (a developer needs them to
connect with psql or redis-cli), so it is written with mode 0600.
"""

from __future__ import annotations

import json
import os
import time
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

STATE_FILE: Final = "state.json"
#: ``tap local up`` creates ``runs/<timestamp>/`` and points this link at it, so that
#: ``status`` and ``down`` need no ``--run-dir``.
CURRENT_LINK: Final = "current"
DEFAULT_RUNS_DIR: Final = Path("runs")


class StackStatus(StrEnum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


def new_run_dir(runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    run_dir = runs_dir / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=False)
    # When we are root, PostgreSQL runs as ``postgres`` and must be able to enter it.
    run_dir.chmod(0o755)
    link = runs_dir / CURRENT_LINK
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(run_dir.name)
    return run_dir


def resolve_run_dir(run_dir: Path | None, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """The given run folder, else the one ``runs/current`` points at."""
    if run_dir is not None:
        return run_dir.resolve()
    return (runs_dir / CURRENT_LINK).resolve()


def write_state(run_dir: Path, state: dict[str, Any]) -> Path:
    """Atomically replace ``state.json`` (readers never see half a file)."""
    path = run_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out, indent=2, sort_keys=True)
        out.write("\n")
    tmp.replace(path)
    return path


def read_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return state


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited: treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True
