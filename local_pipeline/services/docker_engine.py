"""Is a Docker engine there? Asked once per process, quickly, without hanging.

The ``docker`` client may be installed with nothing behind it (as on the project's
machines); testcontainers would then fail slowly on the first container. We ping the
engine with a short timeout and fall back to local binaries when it does not answer.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Final

#: Set to 0 to never use containers even when Docker runs (e.g. to test binaries).
USE_CONTAINERS_ENV: Final = "TAP_USE_CONTAINERS"


@functools.cache
def docker_engine_answers(timeout: float = 2.0) -> bool:
    if os.environ.get(USE_CONTAINERS_ENV, "1").strip().lower() in {"0", "false", "no"}:
        return False
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        # No socket, permission denied, a context pointing nowhere: all mean "no".
        return False


class ContainerLifecycle:
    """Stop, kill, remove and log capture of a testcontainers container, shared by
    the PostgreSQL and Redis container servers (``_container`` is set by their
    ``start``; ``log_path`` receives the container's output when it stops)."""

    log_path: Path
    _container: Any = None
    #: Seconds Docker waits for a graceful stop before it kills the container.
    stop_timeout_s: int = 10

    def stop(self) -> None:
        if self._container is not None:
            self._write_logs()
            self._container.get_wrapped_container().stop(timeout=self.stop_timeout_s)

    def kill(self) -> None:
        if self._container is not None:
            self._container.get_wrapped_container().kill()

    def remove(self) -> None:
        if self._container is not None:
            self._write_logs()
            self._container.stop()
            self._container = None

    def _write_logs(self) -> None:
        with contextlib.suppress(Exception):
            out, err = self._container.get_logs()
            self.log_path.write_bytes(out + err)
