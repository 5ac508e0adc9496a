"""The processor's health endpoint: ``GET /health/live`` and ``GET /health/ready``.

Liveness answers whether the worker's loops still tick (a wedged process should be
replaced); readiness whether it can do useful work (PostgreSQL reachable, Redis
reachable, leases held or being balanced). Both answer JSON, 200 or 503. The
container's HEALTHCHECK and the ECS task health check call ``/health/live``: a
PostgreSQL outage must not make ECS kill every task at once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

#: A check returns (healthy, details).
Check = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    """``http.server`` in a daemon thread; checks are called per request."""

    def __init__(self, port: int, live: Check, ready: Check, host: str = "127.0.0.1") -> None:
        # Loopback by default (TAP_HEALTH_HOST): the container health check runs inside
        # the task, and no load balancer probes the processor.
        self.host = host
        checks = {"/health/live": live, "/health/ready": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                check = checks.get(self.path.split("?", 1)[0].rstrip("/"))
                if check is None:
                    self._answer(404, {"error": "not found", "paths": sorted(checks)})
                    return
                try:
                    healthy, details = check()
                except Exception as exc:  # a failing check is an unhealthy answer, not a 500
                    healthy, details = False, {"error": type(exc).__name__}
                self._answer(200 if healthy else 503, {"ok": healthy, **details})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                # Health probes every few seconds would drown the JSON logs.
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", kwargs={"poll_interval": 0.5}
        )
        self._thread.daemon = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health endpoint listening", extra={"host": self.host, "port": self.port})
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def probe(port: int, path: str = "/health/live", timeout_s: float = 2.0) -> int:
    """Exit status of one health probe (the container's HEALTHCHECK runs this)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{path}", timeout=timeout_s
        ) as response:
            return 0 if response.status == 200 else 1
    except (OSError, urllib.error.URLError):
        return 1


if __name__ == "__main__":
    import os
    import sys

    sys.exit(probe(int(os.environ.get("TAP_HEALTH_PORT", "8080"))))
