"""Health checks from ``state.json`` alone (``tap local status`` runs in another
process than the supervisor, so it has facts, not server objects)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local_pipeline.services.aws_emulator import emulator_client


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str
    latency_ms: float


def _timed(check: Callable[[], str]) -> Health:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:
        detail, ok = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}", False
    return Health(ok, detail, (time.perf_counter() - started) * 1000)


def check_postgres(facts: dict[str, Any]) -> Health:
    def check() -> str:
        import psycopg

        with psycopg.connect(facts["dsn"], connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT split_part(current_setting('server_version'), ' ', 1),"
                " coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)"
            ).fetchone()
        assert row is not None
        return f"{row[0]}, app login{', TLS' if row[1] else ''}"

    return _timed(check)


def check_redis(facts: dict[str, Any]) -> Health:
    def check() -> str:
        import redis

        extra = {"ssl_ca_certs": facts["ca_path"]} if facts.get("ca_path") else {}
        client = redis.from_url(facts["url"], socket_timeout=3, socket_connect_timeout=3, **extra)
        try:
            version = client.info("server")["redis_version"]
        finally:
            client.close()
        return f"{version}, AUTH{', TLS' if facts.get('tls') else ''}"

    return _timed(check)


def check_moto(facts: dict[str, Any]) -> Health:
    def check() -> str:
        url = f"{facts['endpoint_url']}/moto-api/data.json"
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback URL
            return f"HTTP {response.status}"

    return _timed(check)


def check_kinesis(facts: dict[str, Any]) -> Health:
    def check() -> str:
        client = emulator_client("kinesis", facts["endpoint_url"], timeout=3)
        streams = client.list_streams()["StreamNames"]
        return f"{len(streams)} stream(s)"

    return _timed(check)


#: service name in state.json -> its check. Later components (processors, stack
#: resources) register theirs here.
CHECKS: dict[str, Callable[[dict[str, Any]], Health]] = {
    "postgres": check_postgres,
    "redis": check_redis,
    "moto": check_moto,
    "kinesis": check_kinesis,
}


def check_all(state: dict[str, Any]) -> dict[str, Health]:
    results = {}
    for name, facts in state.get("services", {}).items():
        check = CHECKS.get(name)
        results[name] = check(facts) if check else Health(False, "no health check", 0.0)
    return results
