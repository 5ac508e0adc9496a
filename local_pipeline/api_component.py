"""``tap api`` as a component of ``tap local up`` (issue 13, item 4): started after the
processors (whose start migrated the database), with the read-only logins of
:mod:`local_pipeline.services.api_reader`, restarted by the supervisor when it dies.

The API's Redis user survives the supervisor's restart of a crashed local Redis: the
local binary keeps its users in an ACL file (:attr:`local_pipeline.services.redis.
RedisServer.acl_path`, saved by :func:`~local_pipeline.services.api_reader.
provision_redis_reader`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx

from local_pipeline.services.api_reader import api_environment
from local_pipeline.services.local_stack import LocalServices
from local_pipeline.services.process import ServerProcess


class ApiComponent:
    name = "api"

    def __init__(self, services: LocalServices, log_dir: Path) -> None:
        self.services = services
        self.log_path = log_dir / "api.log"
        self.process: ServerProcess | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        environment = api_environment(self.services, self.services.postgres.database)
        self.port = int(environment["TAP_API_PORT"])
        self.process = ServerProcess(
            "api",
            [sys.executable, "-m", "tap_cli.main", "api"],
            self.log_path,
            env=os.environ | environment,
        )
        self.process.start()
        self.process.wait_healthy(self._ready, timeout=60, interval=0.2)

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def healthy(self) -> bool:
        return self.process is not None and self.process.running

    def describe(self) -> dict[str, Any]:
        running = self.process is not None
        return {
            "kind": "api",
            "pid": self.process.pid if self.process is not None else None,
            "board_url": f"{self.url}/board/" if running else None,
            "docs_url": f"{self.url}/docs" if running else None,
            "endpoint_url": f"{self.url}/health/ready" if running else None,
            "log": str(self.log_path),
        }
