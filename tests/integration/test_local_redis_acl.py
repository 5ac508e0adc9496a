"""The local Redis keeps the read API's ACL user across a restart (issue 13 follow-up).

ElastiCache keeps its users when a node is replaced (they belong to the user group,
not to the node's memory); the local Redis must too, or ``tap api`` against the
local stack is refused after the supervisor restarts a crashed Redis. The cache's
data is still lost on a restart (no persistence, on purpose: reconciliation)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from local_pipeline.services import RedisServer
from local_pipeline.services.api_reader import provision_redis_reader
from processor.contract import storage

pytestmark = pytest.mark.integration


def _reader_answers(server: RedisServer, password: str) -> bool:
    client = server.client(username=storage.REDIS_API_READER_USER, password=password)
    try:
        return bool(client.ping())
    finally:
        client.close()


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_the_api_reader_user_survives_a_restart_and_still_cannot_write(
    private_redis_server: RedisServer, how: str
) -> None:
    server = private_redis_server
    password = provision_redis_reader(server)
    admin = server.client()
    try:
        admin.set(storage.redis_latest_key("d1"), "x")
    finally:
        admin.close()
    assert _reader_answers(server, password)

    bring_back: Callable[[], None] = server.restart
    if how == "kill":  # a crash, restarted as the supervisor does

        def bring_back() -> None:
            server.kill()
            server.start()

    bring_back()

    assert _reader_answers(server, password)  # before the fix: WRONGPASS
    reader = server.client(username=storage.REDIS_API_READER_USER, password=password)
    admin = server.client()  # the AUTH token survives too
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set(storage.redis_latest_key("d1"), "y")
        assert admin.get(storage.redis_latest_key("d1")) is None  # the data does not
    finally:
        reader.close()
        admin.close()


def test_provisioning_again_replaces_the_password(private_redis_server: RedisServer) -> None:
    first = provision_redis_reader(private_redis_server)
    second = provision_redis_reader(private_redis_server)
    private_redis_server.restart()
    assert _reader_answers(private_redis_server, second)
    with pytest.raises(redis.exceptions.AuthenticationError):
        _reader_answers(private_redis_server, first)
