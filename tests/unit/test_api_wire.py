"""Drift check of the hot routes' msgspec encoding (api/wire.py) against the pydantic
models that document the answers at /docs (api/models.py): same fields in the same
order, the same JSON document for the same data (byte-identical but for the spelling
of a float's exponent: msgspec writes 1e20 where pydantic writes 1e+20, the same
number), and the OpenAPI schema still names the models."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel

from api import models, wire
from api.app import create_app
from processor.contract.api_environment import ApiSettings

UTC_TS = datetime(2026, 11, 30, 12, 0, 1, 250_000, tzinfo=UTC)
PAIRS: list[tuple[type[msgspec.Struct], type[BaseModel]]] = [
    (wire.DeviceLatest, models.DeviceLatest),
    (wire.LatestAnswer, models.LatestAnswer),
    (wire.DevicesAnswer, models.DevicesAnswer),
]


@pytest.mark.parametrize(("struct", "model"), PAIRS)
def test_same_fields_in_the_same_order(
    struct: type[msgspec.Struct], model: type[BaseModel]
) -> None:
    assert struct.__struct_fields__ == tuple(model.model_fields)


def _hash(**overrides: str) -> dict[str, str]:
    """A latest hash as the processor writes it (strings)."""
    fields = {
        "device_id": "fac1-l01-m01-temperature-0",
        "facility": "fac1",
        "line": "l01",
        "sensor_type": "temperature",
        "value": "21.5",
        "status": "running",
        "unit": "C",
        "ts": UTC_TS.isoformat(),
        "seq": "42",
        "arrival": (UTC_TS + timedelta(milliseconds=30)).isoformat(),
    }
    return fields | overrides


HASHES = [
    _hash(),
    _hash(value="", status="", arrival=""),  # no value, no status, no arrival
    _hash(value="1e-07"),
    _hash(value="-1234567.125"),
    _hash(value=repr(1 / 3)),
    _hash(
        value="1e+20", ts="2026-11-30T12:00:00+00:00", arrival="2026-11-30T13:00:00.000001+01:00"
    ),
    _hash(seq=str(2**62), device_id='quote"and\\backslash-é'),
]


@pytest.mark.parametrize("fields", HASHES)
def test_a_latest_answer_encodes_as_the_model_does(fields: dict[str, str]) -> None:
    reading = wire.latest_from_hash(fields)
    for source, cache in [
        (models.Source.REDIS, models.CacheState.HIT),
        (models.Source.POSTGRES, models.CacheState.STALE),
    ]:
        fast = wire.encode(
            wire.LatestAnswer(device_id="d", source=source, cache=cache, reading=reading)
        )
        documented = models.LatestAnswer(
            device_id="d", source=source, cache=cache, reading=_model(reading)
        ).model_dump_json()
        assert json.loads(fast) == json.loads(documented)
        if "e" not in fields["value"]:
            assert fast.decode() == documented


def test_a_board_encodes_as_the_model_does_and_rows_build_the_same_reading() -> None:
    readings = [wire.latest_from_hash(f) for f in HASHES]
    row: dict[str, Any] = {
        "device_id": "d9", "facility": "fac2", "line": "l07", "sensor_type": "vibration",
        "value": math.pi, "status": None, "unit": "mm/s",
        "event_ts": datetime(2026, 11, 30, 12, 0, tzinfo=timezone(timedelta(hours=-5))),
        "seq": 7, "arrival_ts": None,
    }  # fmt: skip
    readings.append(wire.latest_from_row(row))
    for next_after in (None, "d9"):
        fast = wire.encode(
            wire.DevicesAnswer(
                source=models.Source.REDIS,
                cache=models.CacheState.HIT,
                devices=readings,
                next_after=next_after,
            )
        )
        documented = models.DevicesAnswer(
            source=models.Source.REDIS,
            cache=models.CacheState.HIT,
            devices=[_model(r) for r in readings],
            next_after=next_after,
        ).model_dump_json()
        assert json.loads(fast) == json.loads(documented)
        # Strings (datetimes included) compare exactly inside the parsed documents.
        assert fast.decode().replace("e+", "e") == documented.replace("e+", "e")
    empty = wire.DevicesAnswer(models.Source.POSTGRES, models.CacheState.BYPASSED, [], None)
    assert wire.encode(empty) == (
        b'{"source":"postgres","cache":"bypassed","devices":[],"next_after":null}'
    )


def test_the_openapi_schema_still_documents_the_hot_routes() -> None:
    settings = ApiSettings.from_environ(
        {
            "TAP_DB_HOST": "db.internal",
            "TAP_DB_NAME": "tap",
            "TAP_REDIS_HOST": "cache.internal",
            "TAP_API_DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:a",
            "TAP_API_REDIS_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:123456789012:secret:b",
        }
    )
    schema = create_app(settings).openapi()
    for path, model in (
        ("/devices", "DevicesAnswer"),
        ("/devices/{device_id}/latest", "LatestAnswer"),
    ):
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"] == {"$ref": f"#/components/schemas/{model}"}
    documented = schema["components"]["schemas"]["DeviceLatest"]["properties"]
    assert list(documented) == list(wire.DeviceLatest.__struct_fields__)


def _model(reading: wire.DeviceLatest) -> models.DeviceLatest:
    return models.DeviceLatest(**msgspec.structs.asdict(reading))
