"""The hot endpoints' answers as msgspec structs, encoded to JSON without pydantic.

``GET /devices/{id}/latest`` and a line's board ``GET /devices?facility&line`` are
what boards poll (issue 13's goals: hundreds of requests/s). FastAPI's default path
for a ``response_model`` validates the returned model again, turns it into Python
primitives and then into JSON: measured on this machine it was most of the API's
CPU per request beside the HTTP stack (docs/BENCHMARKS.md, "the lean API"). These
routes instead build the structs below straight from a Redis hash or a PostgreSQL
row and return the bytes of :data:`ENCODER`; FastAPI passes a returned ``Response``
through untouched.

The pydantic models of :mod:`api.models` stay the single description of the wire
format: they are the OpenAPI schema at ``/docs`` (``response_model=``, for the
documentation only). ``tests/unit/test_api_wire.py`` is the drift check: same field
names in the same order, and the same JSON from both for the same data (datetimes as
RFC 3339 with ``Z`` for UTC, floats as shortest round-trip; only an exponent's
spelling differs, ``1e20`` here for pydantic's ``1e+20``, the same number).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec

from api.models import CacheState, Source

ENCODER: Final = msgspec.json.Encoder()


class DeviceLatest(msgspec.Struct, frozen=True):
    """:class:`api.models.DeviceLatest` on the wire."""

    device_id: str
    facility: str
    line: str
    sensor_type: str
    value: float | None
    status: str | None
    unit: str
    ts: datetime
    seq: int
    arrival: datetime | None


class LatestAnswer(msgspec.Struct, frozen=True):
    """:class:`api.models.LatestAnswer` on the wire."""

    device_id: str
    source: Source
    cache: CacheState
    reading: DeviceLatest


class DevicesAnswer(msgspec.Struct, frozen=True):
    """:class:`api.models.DevicesAnswer` on the wire."""

    source: Source
    cache: CacheState
    devices: list[DeviceLatest]
    next_after: str | None


def latest_from_hash(fields: dict[str, str]) -> DeviceLatest:
    """A device's latest reading from its Redis hash (the processor's strings)."""
    value = fields.get("value")
    arrival = fields.get("arrival")
    return DeviceLatest(
        device_id=fields["device_id"],
        facility=fields["facility"],
        line=fields["line"],
        sensor_type=fields["sensor_type"],
        value=float(value) if value else None,
        status=fields.get("status") or None,
        unit=fields["unit"],
        ts=datetime.fromisoformat(fields["ts"]),
        seq=int(fields["seq"]),
        arrival=datetime.fromisoformat(arrival) if arrival else None,
    )


def latest_from_row(row: dict[str, Any]) -> DeviceLatest:
    """A device's latest reading from a row of :mod:`api.postgres_reads`."""
    return DeviceLatest(
        device_id=row["device_id"],
        facility=row["facility"],
        line=row["line"],
        sensor_type=row["sensor_type"],
        value=row["value"],
        status=row["status"],
        unit=row["unit"],
        ts=row["event_ts"],
        seq=row["seq"],
        arrival=row["arrival_ts"],
    )


def encode(answer: LatestAnswer | DevicesAnswer) -> bytes:
    return ENCODER.encode(answer)
