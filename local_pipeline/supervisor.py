"""Keeps the local stack up: starts the servers, writes ``state.json``, restarts a
server that crashed, and stops everything in order on Ctrl-C, SIGTERM (``tap local
down``) or SIGHUP (terminal closed).

Extensible by design: later work adds components (the synthesized stack's resources,
N processor processes) as :class:`Supervised` objects started after the servers and
stopped before them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from local_pipeline.services.local_stack import LocalServices
from local_pipeline.state import StackStatus, write_state


class Supervised(Protocol):
    """Anything the supervisor starts, watches and stops besides the four servers."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def healthy(self) -> bool: ...

    def describe(self) -> dict[str, Any]: ...


class LocalStackSupervisor:
    def __init__(
        self,
        services: LocalServices,
        *,
        components: Sequence[Supervised] = (),
        service_names: Sequence[str] = (),
        check_interval: float = 2.0,
        max_restarts: int = 5,
        log: Any = print,
    ) -> None:
        self.services = services
        self.components = list(components)
        self.service_names = tuple(service_names)
        self.check_interval = check_interval
        self.max_restarts = max_restarts
        self.log = log
        self.status = StackStatus.STARTING
        self.started_at = time.time()
        self.restarts: dict[str, int] = {}
        self.error: str | None = None
        self._stop = threading.Event()

    @property
    def run_dir(self) -> Path:
        return self.services.run_dir

    def state(self) -> dict[str, Any]:
        state = self.services.describe()
        services = state["services"]
        # Components (the synthesized stack's resources, processors) are listed apart
        # from the servers: ``tap local status`` checks them differently.
        state["components"] = {c.name: c.describe() for c in self.components}
        state |= {
            "version": 1,
            "status": str(self.status),
            "supervisor_pid": os.getpid(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "restarts": self.restarts,
            "error": self.error,
            "logs_dir": str(self.services.logs_dir),
        }
        if {"moto", "kinesis"} <= set(services):
            state["client_environment"] = self.services.client_environment()
        return state

    def _write(self, status: StackStatus) -> None:
        self.status = status
        write_state(self.run_dir, self.state())

    def up(self) -> None:
        """Start the servers, then the components; state READY (or FAILED, raised)."""
        self._write(StackStatus.STARTING)
        try:
            self.services.start(*self.service_names)
            for component in self.components:
                component.start()
        except BaseException as exc:
            self.error = str(exc)
            self._write(StackStatus.FAILED)
            self.down(final=StackStatus.FAILED)
            raise
        self._write(StackStatus.READY)

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self.request_stop)

    def supervise(self) -> None:
        """Watch until asked to stop; restart a server that stopped answering."""
        failing: dict[str, int] = {}
        while not self._stop.wait(self.check_interval):
            for name, server in self._watched():
                if server.healthy():
                    failing.pop(name, None)
                    continue
                failing[name] = failing.get(name, 0) + 1
                # Two misses in a row: one slow answer under load is not a crash.
                if failing[name] < 2 or self._stop.is_set():
                    continue
                if self.restarts.get(name, 0) >= self.max_restarts:
                    self.log(
                        f"{name} is down and was restarted {self.max_restarts} times; giving up"
                    )
                    continue
                self.log(f"{name} stopped answering; restarting it (see its log)")
                try:
                    server.restart()
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    failing.pop(name, None)
                except Exception as exc:
                    self.log(f"restarting {name} failed: {exc}")
                self._write(self.status)

    def _watched(self) -> list[tuple[str, Any]]:
        watched: list[tuple[str, Any]] = []
        for name in self.services.started:
            server = getattr(self.services, name)
            if getattr(server, "supports_restart", True):
                watched.append((name, server))
        watched += [(c.name, c) for c in self.components]
        return watched

    def down(self, final: StackStatus = StackStatus.STOPPED) -> None:
        """Stop components (last first), then the servers; record the final status."""
        self._write(StackStatus.STOPPING)
        # Keep the facts (ports, logs) in the final state for post-mortems.
        last = self.state()
        for component in reversed(self.components):
            try:
                component.stop()
            except Exception as exc:
                self.log(f"stopping {component.name} failed: {exc}")
        try:
            self.services.stop()
        finally:
            self.status = final
            write_state(self.run_dir, last | {"status": str(final), "supervisor_pid": None})
