"""moto's server: the emulated AWS control plane (Secrets Manager, and later the whole
stack for ``terraform apply``), one process on a loopback port.

moto keeps everything in memory: a restart forgets every resource. Clients reach it
through ``AWS_ENDPOINT_URL`` (see ``LocalServices.client_environment``).
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path
from typing import Any, Final

from local_pipeline.services.network import LOOPBACK, free_port, wait_port_closed
from local_pipeline.services.process import ServerProcess, ServiceStartError
from processor.contract.deployment import DEFAULT_REGION

#: The region every local resource lives in (the stack's default region).
REGION: Final = DEFAULT_REGION
#: Emulators accept any credentials; these only keep botocore from looking for real ones.
DUMMY_ACCESS_KEY_ID: Final = "testing"
DUMMY_SECRET_ACCESS_KEY: Final = "testing"


def emulator_client(service: str, endpoint_url: str, *, timeout: float = 10) -> Any:
    """A boto3 client for an emulator: dummy credentials, short timeouts, few retries
    (health checks must fail fast, and tests want to see errors, not retries). Made
    by the simulator's and harness's one client factory, from the environment a
    client of the emulators gets (``LocalServices.client_environment``)."""
    from simulator.aws_client import aws_client

    environment = {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
    }
    return aws_client(
        service,
        environ=environment,
        max_attempts=1,
        connect_timeout=timeout,
        read_timeout=timeout,
    )


class HttpEmulator:
    """An emulator speaking HTTP on a loopback port, supervised as one process."""

    name = "emulator"

    def __init__(self, log_path: Path, *, port: int | None = None) -> None:
        self.log_path = log_path
        self.host = LOOPBACK
        self.port = port or free_port()
        self._process: ServerProcess | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30) -> None:
        if self._process is not None and self._process.running:
            return
        for attempt in range(3):
            self._process = ServerProcess(self.name, self.argv(), self.log_path)
            self._process.start()
            try:
                self._process.wait_healthy(self.healthy, timeout=timeout)
                return
            except ServiceStartError:
                # The free port may have been taken between our probe and the bind;
                # try another one, but only before anyone has seen this port.
                if self._process.running or attempt == 2:
                    raise
                self.port = free_port()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            wait_port_closed(self.port)

    def restart(self) -> None:
        """Same port; the emulator's in-memory state is lost."""
        self.stop()
        self.start()

    def describe(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "port": self.port,
            "pid": self.pid,
            "log": str(self.log_path),
        }


class MotoServer(HttpEmulator):
    """``python -m moto.server`` (all services on one port)."""

    name = "moto"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 - fixed http://127.0.0.1 URL
                f"{self.endpoint_url}/moto-api/data.json", timeout=2
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def reset(self) -> None:
        """Forget every resource (moto's own reset endpoint)."""
        url = f"{self.endpoint_url}/moto-api/reset"
        request = urllib.request.Request(url, method="POST")  # noqa: S310 - loopback URL
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback URL
            pass
