"""``python -m processor`` as a real child process: the one processor-process class
of the local pipeline. Callers start processors through
:class:`local_pipeline.verify.ProcessorCluster` (the local stack, the e2e suite, the
integration tests, the benchmarks and ``tap load --target fresh``), which gives every
one the synthesized task environment.

stderr (JSON logs) goes to a log file; stdout (EMF metrics) to ``.metrics`` beside
it. Moved here from ``local_pipeline/verify.py`` (which re-exports it) so that the local
pipeline never imports the end-to-end suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class ProcessorProcess:
    """``python -m processor`` as a real child process (signals are what we test).

    stderr (JSON logs) goes to ``log_path``; stdout (EMF metrics) to ``.metrics``
    beside it. :meth:`events` parses the log lines.
    """

    def __init__(self, popen: subprocess.Popen[bytes], name: str, log_path: Path) -> None:
        self.popen = popen
        self.name = name
        self.log_path = log_path
        self.health_port = 0

    @classmethod
    def start(
        cls,
        environment: Mapping[str, str],
        log_path: Path,
        *,
        name: str | None = None,
        python: str = sys.executable,
    ) -> ProcessorProcess:
        name = name or environment.get("TAP_WORKER_ID") or log_path.stem
        env = {
            # The child gets only what a task gets (plus PATH and the test's PYTHONPATH).
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
            "AWS_EMF_ENVIRONMENT": "Local",
            "TAP_WORKER_ID": name,
            **environment,
        }
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as err, log_path.with_suffix(".metrics").open("ab") as out:
            popen = subprocess.Popen(
                [python, "-m", "processor"],
                env=env,
                stdout=out,
                stderr=err,
                cwd=str(Path(__file__).resolve().parents[1]),  # the project root
            )
        process = cls(popen, name, log_path)
        process.health_port = int(env.get("TAP_HEALTH_PORT", "8080"))
        return process

    def __enter__(self) -> ProcessorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ensure_stopped()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, signum)

    def terminate(self) -> float:
        """SIGTERM; returns the wall-clock time it was sent (epoch seconds)."""
        sent = time.time()
        self.signal(signal.SIGTERM)
        return sent

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def ensure_stopped(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines (optionally those with ``"event": event``)."""
        out = []
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (event is None or entry.get("event") == event):
                out.append(entry)
        return out

    def wait_for_event(
        self,
        event: str,
        *,
        timeout: float,
        where: Callable[[dict[str, Any]], bool] | None = None,
        count: int = 1,
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            # A ``where`` that raises on a line counts as "not yet" (as it did when
            # this polled through local_pipeline.verify.wait_until).
            with contextlib.suppress(Exception):
                found = [e for e in self.events(event) if where is None or where(e)]
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)

    def health(self, path: str = "/health/ready") -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}{path}", timeout=2
            ) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until ``/health/ready`` answers 200 (PostgreSQL, Redis and the lease
        loop are up); raise if the process exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log_path}")
            with contextlib.suppress(OSError, ValueError):
                if self.health()[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}")

    def held_shards(self) -> list[str]:
        """The shards this worker reads, from its readiness answer ([] if down)."""
        try:
            _, body = self.health()
        except OSError:
            return []
        return list(body.get("leases", []))

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
