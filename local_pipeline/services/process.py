"""One supervised server process: start with its output in a log file, stop cleanly,
kill, and never outlive the test run.

Every local server (PostgreSQL, Redis, moto, kinesalite) is one :class:`ServerProcess`.
Three safety nets keep a crashed or interrupted run from leaving servers behind:

- :meth:`ServerProcess.stop` from the owner (fixture teardown, ``tap local down``);
- an :mod:`atexit` hook that stops whatever is still running when Python exits
  normally or on Ctrl-C (``KeyboardInterrupt`` unwinds through atexit);
- on Linux, ``PR_SET_PDEATHSIG``: the kernel signals the server when the process that
  started it dies, even by ``kill -9``. The signal follows the *thread* that called
  ``fork``, so servers must be started from a long-lived thread (the main thread in
  pytest and in ``tap local up``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class ServiceStartError(RuntimeError):
    """A server did not become healthy; the message carries the end of its log."""


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent(sig: int) -> Callable[[], None]:
    def set_death_signal() -> None:
        # Runs in the child between fork and exec (after the uid change, which would
        # otherwise clear the setting).
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)

    return set_death_signal


_running: weakref.WeakSet[ServerProcess] = weakref.WeakSet()
_registry_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _registry_lock:
        leftovers = list(_running)
    for process in leftovers:
        with contextlib.suppress(Exception):
            process.stop(timeout=5)


class ServerProcess:
    """A server started as a child process, its output appended to ``log_path``.

    ``stop_signal`` is the server's own "shut down cleanly and quickly" signal
    (PostgreSQL: SIGINT, fast shutdown; most others: SIGTERM). ``run_as`` names a
    system user to drop to when we are root (PostgreSQL refuses to run as root).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        death_signal: signal.Signals = signal.SIGTERM,
        run_as: str | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.death_signal = death_signal
        self.run_as = run_as
        self.die_with_parent = die_with_parent
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {self.argv}\n".encode())
        log.flush()
        user = None
        if self.run_as is not None and os.geteuid() == 0:
            user = pwd.getpwnam(self.run_as).pw_uid
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                user=user,
                group=pwd.getpwuid(user).pw_gid if user is not None else None,
                # Own session: Ctrl-C in the terminal reaches the supervisor, which
                # stops servers in order, instead of every server at once.
                start_new_session=True,
                preexec_fn=(
                    _die_with_parent(self.death_signal)
                    if self.die_with_parent and sys.platform == "linux"
                    else None
                ),
            )
        finally:
            log.close()
        with _registry_lock:
            _running.add(self)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the server to shut down cleanly; kill it if it does not in ``timeout``."""
        popen = self._popen
        if popen is None or popen.poll() is not None:
            self._forget()
            return
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(self.stop_signal)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._forget()

    def kill(self) -> None:
        """SIGKILL, as a crash would (the restart scenarios use it)."""
        popen = self._popen
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            popen.wait(10)
        self._forget()

    def wait_healthy(
        self, check: Callable[[], bool], timeout: float, interval: float = 0.05
    ) -> None:
        """Poll ``check`` until it passes; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise ServiceStartError(
                    f"{self.name} exited with code {self.returncode} while starting; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"{self.name} not healthy after {timeout:.0f} s; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(interval)

    def _forget(self) -> None:
        with _registry_lock:
            _running.discard(self)
