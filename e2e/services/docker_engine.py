"""Is a Docker engine there? Asked once per process, quickly, without hanging.

The ``docker`` client may be installed with nothing behind it (as on the project's
machines); testcontainers would then fail slowly on the first container. We ping the
engine with a short timeout and fall back to local binaries when it does not answer.
"""

from __future__ import annotations

import functools
import os
from typing import Final

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
