"""The health endpoint listens on loopback unless told otherwise (issue 11, item 11):
the ECS container health check and the image's HEALTHCHECK run inside the task and
probe 127.0.0.1, and nothing outside the task (no load balancer) calls it today."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from lib.components.processor_container import HEALTH_PATH, health_check_command
from processor.contract.environment import VARIABLES_BY_NAME, ProcessorSettings
from processor.health import HealthServer, probe


def _ok() -> tuple[bool, dict[str, Any]]:
    return True, {}


def test_the_health_server_binds_loopback_by_default() -> None:
    server = HealthServer(0, _ok, _ok).start()
    try:
        assert server.host == "127.0.0.1"
        assert server._server.server_address[0] == "127.0.0.1"
        assert probe(server.port) == 0
    finally:
        server.stop()


def test_the_bind_address_is_a_setting_the_stack_does_not_set() -> None:
    var = VARIABLES_BY_NAME["TAP_HEALTH_HOST"]
    assert var.default == "127.0.0.1"
    assert not var.stack_provided  # the task definition sets it only if ever needed
    base = {
        "TAP_STREAM_NAME": "s",
        "TAP_DB_HOST": "db",
        "TAP_DB_NAME": "tap",
        "TAP_DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:db",
        "TAP_REDIS_HOST": "redis",
        "TAP_REDIS_AUTH_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:r",
    }
    assert ProcessorSettings.from_environ(base).health_host == "127.0.0.1"
    every = "0.0.0.0"  # noqa: S104 - what an operator would set for an external probe
    assert ProcessorSettings.from_environ(base | {"TAP_HEALTH_HOST": every}).health_host == every
    with pytest.raises(ValueError, match="TAP_HEALTH_HOST"):
        ProcessorSettings.from_environ(base | {"TAP_HEALTH_HOST": "not an address"})


@pytest.mark.parametrize("healthy", [True, False])
def test_the_task_health_check_command_reaches_a_loopback_server(healthy: bool) -> None:
    """The exact command of the ECS task definition's health check, run against a
    server bound to 127.0.0.1 (as it runs inside the container)."""
    assert HEALTH_PATH == "/health/live"

    def live() -> tuple[bool, dict[str, Any]]:
        return healthy, {}

    server = HealthServer(0, live, _ok).start()
    try:
        command = health_check_command(server.port)
        assert command[:2] == ["CMD", "python"]
        result = subprocess.run(
            [sys.executable, *command[2:]], capture_output=True, timeout=30, check=False
        )
        assert (result.returncode == 0) is healthy, result.stderr.decode()[-500:]
    finally:
        server.stop()
