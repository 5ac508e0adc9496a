"""Loopback addresses and free ports for the local servers."""

from __future__ import annotations

import socket
import time
from typing import Final

#: Every local server binds here only: the emulators have no authentication, and a
#: laptop on a café network must not expose them. The run's TLS certificates name
#: this address (and ``localhost``), so ``verify-full`` works against it.
LOOPBACK: Final = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the caller retries on a rare race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port_closed(port: int, host: str = LOOPBACK, timeout: float = 10.0) -> bool:
    """Wait until nothing listens on ``host:port`` (a stopped server released it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_accepts(port, host, timeout=0.2):
            return True
        time.sleep(0.05)
    return False
