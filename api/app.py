"""The HTTP application of ``tap api``: routes, parameter checks, Redis-then-PostgreSQL.

Usage::

    app = create_app(ApiSettings.from_environ())
    uvicorn.run(app, host=..., port=...)

Every answer about a device's latest reading says where it came from (``source``)
and what the cache said (``cache``, :class:`api.models.CacheState`): Redis first,
PostgreSQL when Redis is down, misses, or holds an entry older than
``TAP_API_CACHE_MAX_AGE_S`` that PostgreSQL has a newer reading for (the processor
skips Redis while it is out and only reconciles later). ``?source=postgres``
bypasses the cache (to measure what it buys). Histories, anomalies and dead letters
come from PostgreSQL, bounded by :mod:`api.limits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from api import limits, postgres_reads, recent_window, wire
from api.limits import Bucket
from api.models import (
    AnomaliesAnswer,
    AnomalyOut,
    BucketStats,
    CacheState,
    DeadLetterCount,
    DeadLetterSummary,
    DevicesAnswer,
    Health,
    LatestAnswer,
    Liveness,
    RawReading,
    ReadingsAnswer,
    Source,
)
from api.redis_reads import STREAM_BLOCK_MS, CacheUnavailable, RedisReader
from processor.contract.anomaly import AnomalyType, Severity
from processor.contract.api_environment import ApiSettings
from processor.contract.record import DEVICE_ID_PATTERN, SensorType
from processor.postgres import DbTarget, PgConnector, PostgresStore, StoreError
from processor.redis_cache import anomaly_identity
from processor.secrets import SecretsProvider

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Server-side statement timeout of the API's connections: every query is bounded
#: (api.limits); one that still runs this long is refused rather than left to pile up.
API_STATEMENT_TIMEOUT_MS = 5_000

_DEVICE_ID = Path(pattern=DEVICE_ID_PATTERN.pattern, description="Device id.")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


def invalid(parameter: str, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the parameter."""
    return HTTPException(
        status_code=422,
        detail=[{"loc": ["query", parameter], "msg": message, "type": "value_error"}],
    )


def _unavailable(exc: Exception) -> HTTPException:
    return HTTPException(status_code=503, detail=f"PostgreSQL unavailable: {exc}")


class ReadSide:
    """The two stores the routes read, built at start-up (lifespan)."""

    def __init__(self, settings: ApiSettings, secrets: SecretsProvider) -> None:
        self.settings = settings
        target = DbTarget(
            host=settings.db_host,
            port=settings.db_port,
            dbname=settings.db_name,
            secret_arn=settings.db_secret_arn,
            sslmode=settings.db_sslmode,
            sslrootcert=settings.db_ca_bundle if settings.db_sslmode != "disable" else None,
            application_name="tap-api",
            statement_timeout_ms=API_STATEMENT_TIMEOUT_MS,
        )
        self.store = PostgresStore(
            PgConnector(target, secrets), max_idle_connections=limits.POSTGRES_CONNECTIONS
        )
        # The pool keeps POSTGRES_CONNECTIONS idle but opens one more for every query
        # beyond them; the queries wait here instead (a login costs the server a fork
        # and a TLS handshake). The readiness ping does not: it must not queue behind
        # slow reads, and it runs once per health-check interval.
        self._connections = asyncio.Semaphore(limits.POSTGRES_CONNECTIONS)
        self.redis = RedisReader(settings, secrets)
        self.stream_block_ms = STREAM_BLOCK_MS

    async def query(self, fn: Callable[[Any], T]) -> T:
        """Run a :mod:`api.postgres_reads` function on a pooled connection."""
        try:
            async with self._connections:
                return await run_in_threadpool(self.store.run_query, fn)
        except StoreError as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        await self.redis.close()
        self.store.close()


def create_app(settings: ApiSettings, secrets: SecretsProvider | None = None) -> FastAPI:
    """The application; the stores connect on first use (start-up never waits)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        side = ReadSide(settings, secrets or SecretsProvider(settings.aws_region))
        app.state.side = side
        try:
            yield
        finally:
            await side.close()

    app = FastAPI(
        title="tap read API",
        description="Read-only API over the IoT pipeline's Redis cache and PostgreSQL "
        "record, and the live plant board (issue 13).",
        version="1",
        lifespan=lifespan,
    )
    _routes(app)
    board = resources.files("api").joinpath("board")
    app.mount("/board", StaticFiles(directory=str(board), html=True), name="board")
    return app


def _side(request: Request) -> ReadSide:
    side: ReadSide = request.app.state.side
    return side


def _now() -> datetime:
    return datetime.now(UTC)


def _json(answer: wire.LatestAnswer | wire.DevicesAnswer) -> Response:
    """The hot routes' answer, encoded by msgspec (api/wire.py says why)."""
    return Response(wire.encode(answer), media_type="application/json")


async def _window_readings(
    side: ReadSide, device_id: str, start: datetime, end: datetime
) -> list[recent_window.WindowReading] | None:
    """The range's readings from the device's Redis window, or None when Redis is out,
    the latest reading is older than ``cache_max_age_s`` (the rule of ``/latest``) or
    the window cannot prove the answer complete."""
    try:
        fields, members = await side.redis.latest_and_window(device_id)
    except CacheUnavailable:
        return None
    if fields is None or not members:
        return None
    cached = wire.latest_from_hash(fields)
    if (_now() - (cached.arrival or cached.ts)).total_seconds() > side.settings.cache_max_age_s:
        return None
    window = recent_window.parse_members(members)
    if window is None:
        return None
    return recent_window.readings_in_range(window, (cached.ts, cached.seq), start, end)


def _routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/board/")

    @app.get("/health/live", response_model=Liveness, tags=["health"])
    async def live() -> Liveness:
        """The process answers (the event loop turns); says nothing of the stores, so
        an outage of theirs never makes ECS replace every API task at once."""
        return Liveness(ok=True)

    @app.get("/health/ready", response_model=Health, tags=["health"])
    async def ready(request: Request) -> Any:
        """Ready when PostgreSQL answers; Redis down degrades (answers come from
        PostgreSQL) but does not take the API out of service."""
        side = _side(request)
        postgres = await run_in_threadpool(side.store.ping)
        redis_ok = await side.redis.ping()
        body = Health(ok=postgres, postgres=postgres, redis=redis_ok)
        if not postgres:
            return JSONResponse(status_code=503, content=body.model_dump())
        return body

    # response_model documents the answer (/docs); the route returns msgspec's bytes.
    @app.get("/devices", response_model=DevicesAnswer, tags=["devices"])
    async def devices(
        request: Request,
        facility: Annotated[str | None, Query(pattern=_NAME)] = None,
        line: Annotated[str | None, Query(pattern=_NAME)] = None,
        sensor_type: SensorType | None = None,
        after: Annotated[str, Query(description="Device id cursor (exclusive).")] = "",
        limit: Annotated[int, Query(ge=1, le=limits.DEVICE_PAGE_MAX)] = (
            limits.DEVICE_PAGE_DEFAULT
        ),
        source: Source | None = None,
    ) -> Response:
        """Devices seen in the last 7 days with their latest reading, by device id."""
        side = _side(request)
        kind = None if sensor_type is None else sensor_type.value
        state = CacheState.BYPASSED
        if source is not Source.POSTGRES:
            try:
                page = await _devices_from_redis(side, facility, line, kind, after, limit)
                return _json(
                    wire.DevicesAnswer(
                        source=Source.REDIS,
                        cache=CacheState.HIT,
                        devices=page,
                        next_after=page[-1].device_id if len(page) == limit else None,
                    )
                )
            except CacheUnavailable:
                state = CacheState.UNAVAILABLE
        since = _now() - limits.DEVICE_HORIZON
        rows = await side.query(
            lambda conn: postgres_reads.latest_per_device(
                conn, since, facility=facility, line=line, sensor_type=kind, after=after,
                limit=limit,
            )
        )  # fmt: skip
        listed = [wire.latest_from_row(row) for row in rows]
        return _json(
            wire.DevicesAnswer(
                source=Source.POSTGRES,
                cache=state,
                devices=listed,
                next_after=listed[-1].device_id if len(listed) == limit else None,
            )
        )

    @app.get("/devices/{device_id}/latest", response_model=LatestAnswer, tags=["devices"])
    async def latest(
        request: Request,
        device_id: Annotated[str, _DEVICE_ID],
        source: Source | None = None,
    ) -> Response:
        """The device's latest reading: Redis first, PostgreSQL behind it."""
        side = _side(request)
        cached: wire.DeviceLatest | None = None
        if source is Source.POSTGRES:
            state = CacheState.BYPASSED
        else:
            try:
                fields = await side.redis.latest(device_id)
                cached = wire.latest_from_hash(fields) if fields else None
                state = CacheState.HIT if cached else CacheState.MISS
            except CacheUnavailable:
                state = CacheState.UNAVAILABLE
        if cached is not None:
            age = _now() - (cached.arrival or cached.ts)
            if age.total_seconds() <= side.settings.cache_max_age_s:
                return _json(
                    wire.LatestAnswer(
                        device_id=device_id, source=Source.REDIS, cache=state, reading=cached
                    )
                )
        since = _now() - limits.DEVICE_HORIZON
        row = await side.query(lambda conn: postgres_reads.latest_of_device(conn, device_id, since))
        stored = wire.latest_from_row(row) if row else None
        if cached is not None and (
            stored is None or (stored.ts, stored.seq) <= (cached.ts, cached.seq)
        ):
            return _json(
                wire.LatestAnswer(
                    device_id=device_id,
                    source=Source.REDIS,
                    cache=CacheState.VERIFIED,
                    reading=cached,
                )
            )
        if stored is None:
            raise HTTPException(404, detail=f"device {device_id!r} has no reading in 7 days")
        if cached is not None:
            state = CacheState.STALE
        return _json(
            wire.LatestAnswer(
                device_id=device_id, source=Source.POSTGRES, cache=state, reading=stored
            )
        )

    @app.get("/devices/{device_id}/readings", response_model=ReadingsAnswer, tags=["devices"])
    async def readings(
        request: Request,
        device_id: Annotated[str, _DEVICE_ID],
        start: Annotated[
            datetime | None, Query(alias="from", description="Inclusive; default: to - 1 h.")
        ] = None,
        end: Annotated[
            datetime | None, Query(alias="to", description="Exclusive; default now.")
        ] = (None),
        bucket: Annotated[
            Bucket | None, Query(description="Omit for raw readings (paged).")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=limits.RAW_PAGE_MAX)] = limits.RAW_PAGE_DEFAULT,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = (
            None
        ),
        source: Source | None = None,
    ) -> ReadingsAnswer:
        """Raw readings, or min/avg/max/count per bucket, of a bounded time range. A
        first page of raw readings comes from the device's recent window in Redis when
        the window proves it complete (api/recent_window.py), else from PostgreSQL;
        ``source=postgres`` always reads PostgreSQL."""
        side = _side(request)
        end_ts = _aware(end, "to") if end else _now()
        start_ts = _aware(start, "from") if start else end_ts - limits.READINGS_RANGE_DEFAULT
        if start_ts >= end_ts:
            raise invalid("from", "must be before 'to'")
        longest = limits.RAW_RANGE_MAX if bucket is None else limits.BUCKET_RANGE_MAX[bucket]
        if end_ts - start_ts > longest:
            raise invalid("from", f"range longer than {longest} for bucket={bucket or 'raw'}")
        answer = ReadingsAnswer.model_validate(
            {"device_id": device_id, "from": start_ts, "to": end_ts, "bucket": bucket}
        )
        if bucket is not None:
            if cursor is not None:
                raise invalid("cursor", "only raw readings are paged")
            width = bucket.width
            rows = await side.query(
                lambda conn: postgres_reads.bucketed_readings(
                    conn, device_id, start_ts, end_ts, width
                )
            )
            answer.buckets = [
                BucketStats(start=r["bucket"], min=r["min"], avg=r["avg"], max=r["max"],
                            count=r["count"])
                for r in rows
            ]  # fmt: skip
        else:
            if cursor is None and source is not Source.POSTGRES:
                cached = await _window_readings(side, device_id, start_ts, end_ts)
                if cached is not None:
                    page = cached[:limit]
                    answer.source = Source.REDIS
                    answer.readings = [
                        RawReading(ts=r.ts, seq=r.seq, boot=r.boot, value=r.value, status=r.status)
                        for r in page
                    ]
                    if len(page) == limit:  # as PostgreSQL's pages: the next page reads it
                        end_of_page = page[-1]
                        answer.next_cursor = (
                            f"{end_of_page.ts.isoformat()}~{end_of_page.boot}~{end_of_page.seq}"
                        )
                    return answer
            after = _parse_cursor(cursor) if cursor else None
            rows = await side.query(
                lambda conn: postgres_reads.raw_readings(
                    conn, device_id, start_ts, end_ts, after=after, limit=limit
                )
            )
            answer.readings = [RawReading(**{"ts": r["event_ts"], **r}) for r in rows]
            if len(rows) == limit:
                last = rows[-1]
                answer.next_cursor = f"{last['event_ts'].isoformat()}~{last['boot']}~{last['seq']}"
        return answer

    @app.get("/anomalies", response_model=AnomaliesAnswer, tags=["anomalies"])
    async def anomalies(
        request: Request,
        facility: Annotated[str | None, Query(pattern=_NAME)] = None,
        line: Annotated[str | None, Query(pattern=_NAME)] = None,
        device_id: Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN.pattern)] = None,
        type: AnomalyType | None = None,
        severity: Severity | None = None,
        since: Annotated[datetime | None, Query(description="Default: 24 h ago.")] = None,
        limit: Annotated[int, Query(ge=1, le=limits.ANOMALY_PAGE_MAX)] = (
            limits.ANOMALY_PAGE_DEFAULT
        ),
    ) -> AnomaliesAnswer:
        """Anomalies since a time (31 days at most), newest first."""
        side = _side(request)
        now = _now()
        since_ts = _aware(since, "since") if since else now - limits.ANOMALY_LOOKBACK_DEFAULT
        if now - since_ts > limits.ANOMALY_LOOKBACK_MAX:
            raise invalid("since", f"at most {limits.ANOMALY_LOOKBACK_MAX.days} days back")
        horizon = now - limits.DEVICE_HORIZON
        rows = await side.query(
            lambda conn: postgres_reads.anomalies(
                conn, since_ts, horizon,
                anomaly_type=type and type.value, severity=severity and severity.value,
                device_id=device_id, facility=facility, line=line, limit=limit + 1,
            )
        )  # fmt: skip
        out = [_anomaly_from_row(r) for r in rows[:limit]]
        return AnomaliesAnswer(anomalies=out, truncated=len(rows) > limit)

    @app.get("/anomalies/stream", tags=["anomalies"])
    async def anomaly_stream(
        request: Request,
        last_event_id: Annotated[str | None, Header(pattern=r"^\d+-\d+$")] = None,
    ) -> StreamingResponse:
        """Server-sent events: one ``anomaly`` event per entry of the processor's Redis
        anomaly stream, from now on (or after ``Last-Event-ID`` on a reconnect)."""
        return StreamingResponse(
            _events(request, _side(request), last_event_id or "$"),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/dead-letters/summary", response_model=DeadLetterSummary, tags=["operators"])
    async def dead_letters(
        request: Request,
        since: Annotated[datetime | None, Query(description="Default: 24 h ago.")] = None,
    ) -> DeadLetterSummary:
        """Dead letters per reject reason and hour (7 days at most)."""
        now = _now()
        since_ts = _aware(since, "since") if since else now - limits.DEAD_LETTER_LOOKBACK_DEFAULT
        if now - since_ts > limits.DEAD_LETTER_LOOKBACK_MAX:
            raise invalid("since", f"at most {limits.DEAD_LETTER_LOOKBACK_MAX.days} days back")
        rows = await _side(request).query(
            lambda conn: postgres_reads.dead_letter_summary(conn, since_ts)
        )
        counts = [DeadLetterCount(**r) for r in rows]
        return DeadLetterSummary(since=since_ts, total=sum(c.count for c in counts), counts=counts)


async def _devices_from_redis(
    side: ReadSide,
    facility: str | None,
    line: str | None,
    sensor_type: str | None,
    after: str,
    limit: int,
) -> list[wire.DeviceLatest]:
    """A page of devices from the cache: ids from the line's device set (a line's
    board, the most frequent request) or else the last-seen set, hashes pipelined a
    page at a time until the filtered page is full. The filters still apply to the
    hashes (on their raw strings, before a struct is built): a device moved to
    another line stays in the old line's set until it is pruned."""
    ids = [d for d in await side.redis.device_ids(facility, line) if d > after]
    page: list[wire.DeviceLatest] = []
    for i in range(0, len(ids), limit):
        for fields in await side.redis.latest_many(ids[i : i + limit]):
            if facility is not None and fields["facility"] != facility:
                continue
            if line is not None and fields["line"] != line:
                continue
            if sensor_type is not None and fields["sensor_type"] != sensor_type:
                continue
            page.append(wire.latest_from_hash(fields))
            if len(page) == limit:
                return page
    return page


async def _events(request: Request, side: ReadSide, cursor: str) -> AsyncIterator[str]:
    if cursor == "$":
        # Before the first byte: an entry added once the client sees the stream open
        # must come after the cursor. (Redis out: the loop below resolves it later.)
        with contextlib.suppress(CacheUnavailable):
            cursor = await side.redis.last_anomaly_id()
    # The browser's EventSource reconnects after `retry` ms, sending Last-Event-ID.
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        try:
            if cursor == "$":
                # Resolve "now" to the newest entry id once: reading with "$" again on
                # each round would skip entries added between two reads.
                cursor = await side.redis.last_anomaly_id()
            entries = await side.redis.read_anomalies(cursor, block_ms=side.stream_block_ms)
        except CacheUnavailable as exc:
            yield f": anomaly stream unavailable ({type(exc).__name__}); retrying\n\n"
            await asyncio.sleep(side.settings.redis_retry_s)
            continue
        if not entries:
            yield ": keep-alive\n\n"
            continue
        for entry_id, fields in entries:
            cursor = entry_id
            yield f"id: {entry_id}\nevent: anomaly\ndata: {json.dumps(fields)}\n\n"


def _aware(value: datetime, parameter: str) -> datetime:
    if value.tzinfo is None:
        raise invalid(parameter, "needs a time zone (e.g. 2026-11-30T12:00:00Z)")
    return value.astimezone(UTC)


def _parse_cursor(cursor: str) -> tuple[datetime, int, int]:
    try:
        ts, boot, seq = cursor.split("~")
        return datetime.fromisoformat(ts), int(boot), int(seq)
    except ValueError:
        raise invalid("cursor", "not a next_cursor of this API") from None


def _anomaly_from_row(row: dict[str, Any]) -> AnomalyOut:
    identity = anomaly_identity(
        row["device_id"], row["boot"], row["seq"], row["anomaly_type"],
        row["event_ts"].astimezone(UTC).date(),
    )  # fmt: skip
    return AnomalyOut(
        anomaly_id=identity,
        device_id=row["device_id"],
        facility=row["facility"],
        line=row["line"],
        seq=row["seq"],
        boot=row["boot"],
        type=row["anomaly_type"],
        severity=row["severity"],
        score=row["score"],
        explanation=row["explanation"],
        ts=row["event_ts"],
        detected_at=row["detected_at"],
        sensor_type=row["sensor_type"],
        value=row["value"],
    )
