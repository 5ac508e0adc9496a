"""``tap api`` against real PostgreSQL and Redis (issue 13, item 1): every endpoint,
Redis first with PostgreSQL behind it (fresh, stale, missing, down, bypassed), the
422s naming their parameter, the anomaly stream, and partition pruning (EXPLAIN).

Data is written by the processor's own edges (:class:`e2e.plant_writer.PlantWriter`);
the API reads with its read-only logins (:mod:`local_pipeline.services.api_reader`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api import limits, postgres_reads
from e2e.fixtures import FreshDatabase
from e2e.plant_writer import PlantWriter
from local_pipeline.services import LocalServices, RedisServer
from local_pipeline.services.api_reader import ApiThread, api_environment
from processor.contract.environment import ProcessorSettings
from processor.contract.record import RejectReason, SensorType
from processor.contract.storage import REDIS_ANOMALY_STREAM
from processor.core.model import AnomalyType, Severity

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Plant:
    writer: PlantWriter
    api: ApiThread
    http: httpx.Client
    db: FreshDatabase

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)


def _plant(
    services: LocalServices,
    db: FreshDatabase,
    db_secret_arn: str,
    redis_secret_arn: str,
    redis: RedisServer | None = None,
    **api_overrides: Any,
) -> Iterator[Plant]:
    env = services.processor_environment(
        "unused", db_secret_arn, redis_secret_arn, db_name=db.name, redis=redis,
        postgres=db.server,
    )  # fmt: skip
    settings = ProcessorSettings.from_environ(env)
    api_env = api_environment(services, db.name, redis=redis, postgres=db.server, **api_overrides)
    with (
        PlantWriter(settings) as writer,
        ApiThread(api_env) as api,
        httpx.Client(base_url=api.url, timeout=10) as http,
    ):
        yield Plant(writer, api, http, db)


@pytest.fixture
def plant(
    local_services: LocalServices,
    fresh_database: FreshDatabase,
    clean_redis: RedisServer,
    db_secret_arn: str,
    redis_secret_arn: str,
    aws_env: dict[str, str],
) -> Iterator[Plant]:
    yield from _plant(local_services, fresh_database, db_secret_arn, redis_secret_arn)


# --- latest: Redis first, PostgreSQL behind it -------------------------------------------


def test_latest_comes_from_redis_and_postgres_when_bypassed(plant: Plant) -> None:
    plant.writer.write([PlantWriter.reading("d1", 1, NOW - timedelta(seconds=5), 21.5)])

    cached = plant.get("/devices/d1/latest").json()
    assert (cached["source"], cached["cache"]) == ("redis", "hit")
    assert cached["reading"]["value"] == 21.5 and cached["reading"]["facility"] == "fac1"

    bypassed = plant.get("/devices/d1/latest", source="postgres").json()
    assert (bypassed["source"], bypassed["cache"]) == ("postgres", "bypassed")
    assert bypassed["reading"] == cached["reading"]

    assert plant.get("/devices/nobody/latest").status_code == 404


def test_latest_older_than_max_age_is_checked_against_postgres(plant: Plant) -> None:
    old = NOW - timedelta(minutes=5)
    plant.writer.write([PlantWriter.reading("d1", 1, old, 10.0)], arrival=old)
    # Old, but PostgreSQL has nothing newer: the cache's answer is verified.
    verified = plant.get("/devices/d1/latest").json()
    assert (verified["source"], verified["cache"]) == ("redis", "verified")

    # A worker committed a newer reading while Redis was out (it skips Redis then).
    plant.writer.write([PlantWriter.reading("d1", 2, NOW, 11.0)], redis=False)
    stale = plant.get("/devices/d1/latest").json()
    assert (stale["source"], stale["cache"]) == ("postgres", "stale")
    assert (stale["reading"]["seq"], stale["reading"]["value"]) == (2, 11.0)


def test_latest_missing_from_redis_comes_from_postgres(plant: Plant) -> None:
    plant.writer.write([PlantWriter.reading("d1", 1, NOW, 1.0)], redis=False)
    answer = plant.get("/devices/d1/latest").json()
    assert (answer["source"], answer["cache"]) == ("postgres", "miss")


def test_redis_down_every_answer_comes_from_postgres(
    local_services: LocalServices,
    fresh_database: FreshDatabase,
    private_redis_server: RedisServer,
    db_secret_arn: str,
    aws_env: dict[str, str],
) -> None:
    redis_arn = local_services.create_redis_secret(redis=private_redis_server)
    for plant in _plant(
        local_services, fresh_database, db_secret_arn, redis_arn, redis=private_redis_server
    ):
        plant.writer.write([PlantWriter.reading("d1", 1, NOW, 5.0)])
        assert plant.get("/devices/d1/latest").json()["source"] == "redis"
        assert plant.get("/health/ready").json() == {"ok": True, "postgres": True, "redis": True}

        private_redis_server.stop()
        latest = plant.get("/devices/d1/latest").json()
        assert (latest["source"], latest["cache"]) == ("postgres", "unavailable")
        assert latest["reading"]["value"] == 5.0
        devices = plant.get("/devices").json()
        assert (devices["source"], devices["cache"]) == ("postgres", "unavailable")
        assert [d["device_id"] for d in devices["devices"]] == ["d1"]
        ready = plant.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"ok": True, "postgres": True, "redis": False}
        assert plant.get("/health/live").json() == {"ok": True}


def test_postgres_down_latest_still_served_from_redis_and_not_ready(
    local_services: LocalServices,
    private_pg_server: Any,
    clean_redis: RedisServer,
    redis_secret_arn: str,
    aws_env: dict[str, str],
) -> None:
    db = FreshDatabase(private_pg_server.database, private_pg_server)
    db_arn = local_services.create_db_secret(postgres=private_pg_server)
    for plant in _plant(local_services, db, db_arn, redis_secret_arn):
        plant.writer.write([PlantWriter.reading("d1", 1, NOW, 7.0)])
        private_pg_server.stop()
        latest = plant.get("/devices/d1/latest").json()
        assert (latest["source"], latest["cache"], latest["reading"]["value"]) == (
            "redis", "hit", 7.0,
        )  # fmt: skip
        assert plant.get("/devices").json()["source"] == "redis"
        history = plant.get("/devices/d1/readings")
        assert history.status_code == 503 and "PostgreSQL unavailable" in history.text
        ready = plant.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json() == {"ok": False, "postgres": False, "redis": True}
        assert plant.get("/health/live").json() == {"ok": True}


# --- devices --------------------------------------------------------------------------


def test_devices_filters_and_pages_the_same_from_both_sources(plant: Plant) -> None:
    layout = [
        ("a1", "fac1", "l01", SensorType.TEMPERATURE),
        ("a2", "fac1", "l01", SensorType.PRESSURE),
        ("a3", "fac1", "l02", SensorType.TEMPERATURE),
        ("b1", "fac2", "l01", SensorType.TEMPERATURE),
        ("b2", "fac2", "l03", SensorType.PRESSURE),
    ]
    plant.writer.write(
        [
            PlantWriter.reading(d, 1, NOW, 1.0, facility=f, line=ln, sensor_type=t)
            for d, f, ln, t in layout
        ]
    )
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({}, ["a1", "a2", "a3", "b1", "b2"]),
        ({"facility": "fac1"}, ["a1", "a2", "a3"]),
        ({"facility": "fac1", "line": "l01"}, ["a1", "a2"]),
        ({"line": "l01"}, ["a1", "a2", "b1"]),
        ({"sensor_type": "pressure"}, ["a2", "b2"]),
    ]
    for source in (None, "postgres"):
        extra = {"source": source} if source else {}
        for params, expected in cases:
            answer = plant.get("/devices", **params, **extra).json()
            assert answer["source"] == (source or "redis")
            assert [d["device_id"] for d in answer["devices"]] == expected, (source, params)
        # Pages of two, by device id, whichever the source.
        seen: list[str] = []
        after = ""
        while True:
            page = plant.get("/devices", limit=2, after=after, **extra).json()
            seen += [d["device_id"] for d in page["devices"]]
            if page["next_after"] is None:
                break
            after = page["next_after"]
        assert seen == ["a1", "a2", "a3", "b1", "b2"]


def _hgetall_calls(redis: RedisServer) -> int:
    admin = redis.client()
    try:
        stats = admin.info("commandstats").get("cmdstat_hgetall", {})
        return int(stats.get("calls", 0))
    finally:
        admin.close()


def test_a_lines_board_reads_only_that_lines_devices_from_redis(
    plant: Plant, clean_redis: RedisServer
) -> None:
    """The board of a line is the API's most frequent request: it must cost the line's
    devices, not the plant's (it read every device's hash, then filtered: 25 times
    the CPU of PostgreSQL at 2,000 devices, docs/BENCHMARKS.md "Issue 13")."""
    plant.writer.write(
        [PlantWriter.reading("a1", 1, NOW, 1.0, facility="fac1", line="l01")]
        + [PlantWriter.reading(f"z{i:02d}", 1, NOW, 1.0, facility="fac2", line="l09")
           for i in range(30)]
    )  # fmt: skip
    before = _hgetall_calls(clean_redis)
    answer = plant.get("/devices", facility="fac1", line="l01").json()
    assert answer["source"] == "redis"
    assert [d["device_id"] for d in answer["devices"]] == ["a1"]
    assert _hgetall_calls(clean_redis) - before == 1


# --- readings ---------------------------------------------------------------------------


def test_readings_raw_pages_and_buckets(plant: Plant) -> None:
    start = NOW.replace(second=0) - timedelta(minutes=10)
    values = [float(i % 7) for i in range(60)]  # every 10 s for 10 minutes
    plant.writer.write(
        [
            PlantWriter.reading("d1", i, start + timedelta(seconds=10 * i), v)
            for i, v in enumerate(values)
        ]
    )
    window = {"from": start.isoformat(), "to": (start + timedelta(minutes=10)).isoformat()}

    collected: list[dict[str, Any]] = []
    params: dict[str, Any] = {**window, "limit": 25}
    while True:
        page = plant.get("/devices/d1/readings", **params).json()
        collected += page["readings"]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert [r["seq"] for r in collected] == list(range(60))
    assert [r["value"] for r in collected] == values

    buckets = plant.get("/devices/d1/readings", **window, bucket="1m").json()
    assert buckets["bucket"] == "1m" and buckets["readings"] is None
    assert len(buckets["buckets"]) == 10
    for minute, b in enumerate(buckets["buckets"]):
        chunk = values[6 * minute : 6 * minute + 6]
        assert b["count"] == 6
        assert (b["min"], b["max"]) == (min(chunk), max(chunk))
        assert b["avg"] == pytest.approx(sum(chunk) / 6)
    hourly = plant.get("/devices/d1/readings", **window, bucket="1h").json()["buckets"]
    assert sum(b["count"] for b in hourly) == 60


def test_recent_readings_come_from_the_redis_window_only_when_it_proves_them_whole(
    plant: Plant,
) -> None:
    """The window answers a recent range exactly as PostgreSQL would; a range older
    than the window, or a window with a hole (a batch a worker committed while it
    skipped Redis), is answered by PostgreSQL, complete."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(seconds=60)
    plant.writer.write(
        [PlantWriter.reading("d1", i, start + timedelta(seconds=i), float(i)) for i in range(60)]
    )
    recent = {
        "from": (start + timedelta(seconds=30)).isoformat(),
        "to": (now + timedelta(seconds=5)).isoformat(),
    }
    cached = plant.get("/devices/d1/readings", **recent).json()
    stored = plant.get("/devices/d1/readings", **recent, source="postgres").json()
    assert (cached["source"], stored["source"]) == ("redis", "postgres")
    assert [r["seq"] for r in cached["readings"]] == list(range(30, 60))
    assert cached["readings"] == stored["readings"]

    # Pages: the first from the window, the rest from PostgreSQL (the same cursor).
    first = plant.get("/devices/d1/readings", **recent, limit=20).json()
    assert first["source"] == "redis" and first["next_cursor"] is not None
    rest = plant.get("/devices/d1/readings", **recent, cursor=first["next_cursor"]).json()
    assert rest["source"] == "postgres"
    assert first["readings"] + rest["readings"] == stored["readings"]

    # Older than the window's first reading: nothing proves the start, PostgreSQL answers.
    everything = {"from": (start - timedelta(seconds=10)).isoformat(), "to": recent["to"]}
    older = plant.get("/devices/d1/readings", **everything).json()
    assert older["source"] == "postgres"
    assert [r["seq"] for r in older["readings"]] == list(range(60))

    # seq 60 committed while Redis was skipped, 61 cached: the window has a hole.
    plant.writer.write(
        [PlantWriter.reading("d1", 60, now + timedelta(seconds=1), 60.0)], redis=False
    )
    plant.writer.write([PlantWriter.reading("d1", 61, now + timedelta(seconds=2), 61.0)])
    holed = plant.get("/devices/d1/readings", **recent).json()
    assert holed["source"] == "postgres"
    assert [r["seq"] for r in holed["readings"]] == list(range(30, 62))


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/devices/d1/readings", {"bucket": "5m"}, "bucket"),
        ("/devices/d1/readings", {"limit": 0}, "limit"),
        ("/devices/d1/readings", {"limit": 10_001}, "limit"),
        ("/devices/d1/readings", {"from": "yesterday"}, "from"),
        ("/devices/d1/readings", {"from": "2026-11-30T10:00:00"}, "from"),
        (
            "/devices/d1/readings",
            {"from": "2026-11-30T10:00:00Z", "to": "2026-11-30T09:00:00Z"},
            "from",
        ),
        (
            "/devices/d1/readings",
            {"from": "2026-11-01T00:00:00Z", "to": "2026-11-03T00:00:00Z"},
            "from",
        ),
        (
            "/devices/d1/readings",
            {"from": "2026-01-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "bucket": "1m"},
            "from",
        ),
        ("/devices/d1/readings", {"cursor": "garbage"}, "cursor"),
        ("/devices/BAD DEVICE/readings", {}, "device_id"),
        ("/devices/BAD DEVICE/latest", {}, "device_id"),
        ("/devices/d1/latest", {"source": "memcached"}, "source"),
        ("/devices", {"sensor_type": "humidity"}, "sensor_type"),
        ("/devices", {"limit": 1_001}, "limit"),
        ("/devices", {"facility": "bad facility!"}, "facility"),
        ("/anomalies", {"severity": "apocalyptic"}, "severity"),
        ("/anomalies", {"type": "gremlins"}, "type"),
        ("/anomalies", {"since": "2020-01-01T00:00:00Z"}, "since"),
        ("/anomalies", {"limit": 5_000}, "limit"),
        ("/dead-letters/summary", {"since": "2020-01-01T00:00:00Z"}, "since"),
    ],
)
def test_bad_parameters_get_a_422_naming_them(
    plant: Plant, path: str, params: dict[str, Any], parameter: str
) -> None:
    response = plant.get(path, **params)
    assert response.status_code == 422, response.text
    named = [error["loc"][-1] for error in response.json()["detail"]]
    assert parameter in named, response.json()


# --- anomalies and dead letters ---------------------------------------------------------


def test_anomalies_filter_by_place_type_and_severity(plant: Plant) -> None:
    r1 = PlantWriter.reading("a1", 1, NOW - timedelta(minutes=3), 99.0)
    r2 = PlantWriter.reading("b1", 1, NOW - timedelta(minutes=2), 1.0, facility="fac2")
    r3 = PlantWriter.reading("b1", 2, NOW - timedelta(minutes=1), 50.0, facility="fac2")
    plant.writer.write(
        [r1, r2, r3],
        [
            PlantWriter.anomaly(r1, AnomalyType.LIMIT, Severity.CRITICAL),
            PlantWriter.anomaly(r2, AnomalyType.SPIKE, Severity.WARNING),
            PlantWriter.anomaly(r3, AnomalyType.LIMIT, Severity.WARNING),
        ],
    )

    def found(**params: Any) -> list[tuple[str, int]]:
        answer = plant.get("/anomalies", **params).json()
        return [(a["device_id"], a["seq"]) for a in answer["anomalies"]]

    assert found() == [("b1", 2), ("b1", 1), ("a1", 1)]  # newest first
    assert found(facility="fac2") == [("b1", 2), ("b1", 1)]
    assert found(facility="fac1", line="l01") == [("a1", 1)]
    assert found(type="limit") == [("b1", 2), ("a1", 1)]
    assert found(severity="critical") == [("a1", 1)]
    assert found(since=(NOW - timedelta(seconds=90)).isoformat()) == [("b1", 2)]
    first = plant.get("/anomalies", limit=1).json()
    assert first["truncated"] is True and len(first["anomalies"]) == 1
    assert first["anomalies"][0]["facility"] == "fac2"


def test_dead_letter_summary_counts_by_reason_and_hour(plant: Plant) -> None:
    arrival = datetime.now(UTC)
    plant.writer.write(
        dead_letters=[
            PlantWriter.dead_letter(RejectReason.NOT_JSON, 1, arrival),
            PlantWriter.dead_letter(RejectReason.NOT_JSON, 2, arrival),
            PlantWriter.dead_letter(RejectReason.BAD_IDENTIFIER, 3, arrival),
        ]
    )
    summary = plant.get("/dead-letters/summary").json()
    assert summary["total"] == 3
    counts = {c["reason"]: c["count"] for c in summary["counts"]}
    assert counts == {RejectReason.NOT_JSON.value: 2, RejectReason.BAD_IDENTIFIER.value: 1}
    assert len({c["hour"] for c in summary["counts"]}) == 1


# --- the anomaly stream (SSE) -------------------------------------------------------------


def test_stream_delivers_an_anomaly_written_after_connecting(plant: Plant) -> None:
    reading = PlantWriter.reading("d9", 1, NOW, 120.0, facility="fac3")
    received: list[dict[str, Any]] = []
    connected = threading.Event()

    def listen() -> None:
        with plant.http.stream("GET", "/anomalies/stream", timeout=20) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            event: dict[str, str] = {}
            for line in response.iter_lines():
                if line.startswith("retry:"):
                    connected.set()
                elif line.startswith(("id:", "event:", "data:")):
                    key, _, value = line.partition(":")
                    event[key] = value.strip()
                elif line == "" and "data" in event:
                    received.append(event)
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(10), "the stream did not open"
    plant.writer.write([reading], [PlantWriter.anomaly(reading, AnomalyType.LIMIT)])
    listener.join(timeout=20)
    assert received, "no anomaly event within 20 s"
    event = received[0]
    assert event["event"] == "anomaly"
    body = json.loads(event["data"])
    assert (body["device_id"], body["type"], body["seq"]) == ("d9", "limit", "1")
    assert event["id"].count("-") == 1  # a Redis stream id: Last-Event-ID resumes after it


# --- bounded queries: partition pruning, checked with EXPLAIN ---------------------------


def test_no_query_reads_partitions_outside_its_range(plant: Plant) -> None:
    """Every query of api.postgres_reads, planned on a database with 40 daily
    partitions, reads only the partitions of its range (plus the default partition)."""
    plant.writer.store.ensure_partitions(NOW, days_back=40, days_ahead=1)
    today = NOW.date()
    outside = {f"readings_p{(today - timedelta(days=d)):%Y%m%d}" for d in range(2, 40)}
    with psycopg.connect(plant.db.dsn(), autocommit=True) as conn:
        existing = {
            name
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'tap.readings'::regclass"
            )
        }
        assert outside <= existing  # the check below would be vacuous otherwise
        cur = psycopg.ClientCursor(conn)
        for name, query, params in postgres_reads.explained_queries(NOW, "d1"):
            explain = b"EXPLAIN " + query.as_bytes(conn)
            plan = "\n".join(row[0] for row in cur.execute(explain, params))
            read = {p for p in existing if p in plan}
            assert read, f"{name}: reads no readings partition?\n{plan}"
            assert not (read & outside), f"{name} reads partitions outside its range:\n{plan}"


def test_stream_resumes_after_last_event_id(plant: Plant, clean_redis: RedisServer) -> None:
    """A reconnecting EventSource sends Last-Event-ID: entries after it are replayed."""
    first = PlantWriter.reading("d1", 1, NOW, 1.0)
    second = PlantWriter.reading("d1", 2, NOW + timedelta(seconds=1), 2.0)
    plant.writer.write([first, second], [PlantWriter.anomaly(first), PlantWriter.anomaly(second)])
    admin = clean_redis.client()
    try:
        ids = [entry_id.decode() for entry_id, _ in admin.xrange(REDIS_ANOMALY_STREAM)]
    finally:
        admin.close()
    assert len(ids) == 2
    headers = {"Last-Event-ID": ids[0]}
    with plant.http.stream("GET", "/anomalies/stream", headers=headers, timeout=20) as response:
        for line in response.iter_lines():
            if line.startswith("id:"):
                assert line == f"id: {ids[1]}"
                break
            if line.startswith("data:"):
                pytest.fail(f"an event without id: {line}")
    refused = plant.http.get("/anomalies/stream", headers={"Last-Event-ID": "yesterday"})
    assert refused.status_code == 422
    assert "last-event-id" in [str(e["loc"][-1]).lower() for e in refused.json()["detail"]]


def test_openapi_describes_every_endpoint_and_the_board_is_served(plant: Plant) -> None:
    assert plant.get("/docs").status_code == 200
    paths = set(plant.get("/openapi.json").json()["paths"])
    assert paths == {
        "/devices",
        "/devices/{device_id}/latest",
        "/devices/{device_id}/readings",
        "/anomalies",
        "/anomalies/stream",
        "/dead-letters/summary",
        "/health/live",
        "/health/ready",
    }
    board = plant.http.get("/", follow_redirects=True)
    assert board.status_code == 200 and "board.js" in board.text
    assert plant.get("/board/board.js").status_code == 200


# --- PostgreSQL connections under concurrent readers ------------------------------------


def _sessions_opened(plant: Plant) -> int:
    """Sessions ever established to the test's database (pg_stat_database, PG 14+)."""
    with plant.db.admin_connection() as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_concurrent_readers_reuse_the_apis_connections(plant: Plant) -> None:
    """Forty readers asking PostgreSQL at once must queue for the API's connections,
    not open (and close again) one each: a PostgreSQL login is a process fork and a TLS
    handshake. The read benchmark saw 470 backend processes in 108 s before. A line's
    board from PostgreSQL over 2,000 devices is the slow query that piles them up."""
    plant.writer.write(
        [
            PlantWriter.reading(
                f"d{i:04d}", 1, NOW - timedelta(seconds=5), 20.0, line=f"l{i % 20:02d}"
            )
            for i in range(2_000)
        ]
    )
    board = {"facility": "fac1", "source": "postgres"}
    assert plant.get("/devices", line="l00", **board).status_code == 200
    before = _sessions_opened(plant)

    def ask(i: int) -> int:
        with httpx.Client(base_url=plant.api.url, timeout=60) as http:
            codes = [
                http.get("/devices", params={**board, "line": f"l{(i + k) % 20:02d}"}).status_code
                for k in range(3)
            ]
        return max(codes)

    with ThreadPoolExecutor(max_workers=40) as pool:
        assert set(pool.map(ask, range(40))) == {200}
    opened = _sessions_opened(plant) - before - 1  # minus this check's own session
    assert opened <= limits.POSTGRES_CONNECTIONS, (
        f"{opened} new PostgreSQL sessions for 120 requests by 40 readers"
    )
