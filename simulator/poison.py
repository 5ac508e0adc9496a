"""Malformed records for the dead-letter path (``--poison-rate``).

With probability ``poison_rate`` per reading a device also sends one poison
record, built from that reading and broken in one of the ways below. A poison
record carries the device id as partition key but does not consume the device's
``seq``: the readings stream stays gap-free, and the processor must dead-letter
every poison record with the reason in :data:`EXPECTED_REASON` (a unit test runs
each kind through ``processor.contract.record.decode_reading``). Each one is
labelled (``{"label": "poison", ...}`` in the labels file) so a demo can check
that the dead letters equal the poison sent, kind by kind.

No poison payload contains a newline, so a JSONL sink keeps one record per line.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import msgspec

from processor.contract.record import SCHEMA_VERSION, UNITS, RejectReason, SensorType
from simulator.timestamps import iso_from_epoch_ms


class PoisonKind(enum.StrEnum):
    NOT_JSON = "not_json"  # truncated JSON
    NOT_UTF8 = "not_utf8"  # a Latin-1 byte inside the device id
    MISSING_FIELD = "missing_field"  # no "facility"
    WRONG_TYPE = "wrong_type"  # "seq" as a string
    UNKNOWN_SENSOR_TYPE = "unknown_sensor_type"  # "humidity"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"  # schema_version 99
    NAN_TOKEN = "nan_token"  # noqa: S105 - the bare token NaN (not JSON), not a secret
    NUMBER_OVERFLOW = "number_overflow"  # 1e999: valid JSON, not a finite double
    OUT_OF_PHYSICAL_RANGE = "out_of_physical_range"  # 9999 °C / 9999 bar
    OVERSIZED = "oversized"  # a valid-looking reading padded to 8 KiB
    TS_IN_FUTURE = "ts_in_future"  # event time one day after the reading's


#: The reason ``decode_reading`` must give for each kind.
EXPECTED_REASON: Final[dict[PoisonKind, RejectReason]] = {
    PoisonKind.NOT_JSON: RejectReason.NOT_JSON,
    PoisonKind.NOT_UTF8: RejectReason.NOT_UTF8,
    PoisonKind.MISSING_FIELD: RejectReason.MISSING_FIELD,
    PoisonKind.WRONG_TYPE: RejectReason.WRONG_TYPE,
    PoisonKind.UNKNOWN_SENSOR_TYPE: RejectReason.UNKNOWN_SENSOR_TYPE,
    PoisonKind.UNKNOWN_SCHEMA_VERSION: RejectReason.UNKNOWN_SCHEMA_VERSION,
    # msgspec refuses the NaN token while parsing, before any field is looked at.
    PoisonKind.NAN_TOKEN: RejectReason.NOT_JSON,
    PoisonKind.NUMBER_OVERFLOW: RejectReason.NON_FINITE,
    PoisonKind.OUT_OF_PHYSICAL_RANGE: RejectReason.OUT_OF_RANGE,
    PoisonKind.OVERSIZED: RejectReason.OVERSIZED,
    PoisonKind.TS_IN_FUTURE: RejectReason.TS_IN_FUTURE,
}

ALL_POISON_KINDS: Final[tuple[PoisonKind, ...]] = tuple(PoisonKind)

_OVERSIZED_PADDING: Final = 8192
_ONE_DAY_MS: Final = 86_400_000
_NUMBER_MARKER: Final = 123456.5  # replaced by a raw token after encoding


class PoisonLabel(msgspec.Struct, tag_field="label", tag="poison"):
    """Ground truth for one poison record (one JSON line of the labels file)."""

    device_id: str
    partition_key: str
    kind: str
    expected_reason: str
    #: The seq of the reading the poison was derived from (not consumed).
    seq: int
    ts: str


def _reading_fields(
    device_id: str, facility: str, line: str, sensor_type: SensorType, ts_ms: int, seq: int
) -> dict[str, Any]:
    """A valid reading as a dict in wire order, the starting point of every kind."""
    is_status = sensor_type is SensorType.EQUIPMENT_STATUS
    return {
        "device_id": device_id,
        "facility": facility,
        "line": line,
        "sensor_type": sensor_type.value,
        "unit": UNITS[sensor_type],
        "ts": iso_from_epoch_ms(ts_ms),
        "seq": seq,
        "schema_version": SCHEMA_VERSION,
        "value": None if is_status else 20.0,
        "status": "RUNNING" if is_status else None,
    }


def _as_analog(fields: dict[str, Any]) -> dict[str, Any]:
    """Kinds that need a numeric value use a temperature body (a status device's
    poison still keys on its own device id)."""
    if fields["value"] is None:
        fields.update(sensor_type="temperature", unit="C", value=20.0, status=None)
    return fields


def make_poison(
    kind: PoisonKind,
    *,
    device_id: str,
    facility: str,
    line: str,
    sensor_type: SensorType,
    ts_ms: int,
    seq: int,
) -> bytes:
    """The bytes of one poison record of ``kind`` derived from a device's reading."""
    fields = _reading_fields(device_id, facility, line, sensor_type, ts_ms, seq)
    if kind is PoisonKind.NOT_JSON:
        return msgspec.json.encode(fields)[:-20]
    if kind is PoisonKind.NOT_UTF8:
        return msgspec.json.encode(fields).replace(b'"device_id":"', b'"device_id":"\xff', 1)
    if kind is PoisonKind.MISSING_FIELD:
        del fields["facility"]
    elif kind is PoisonKind.WRONG_TYPE:
        fields["seq"] = str(seq)
    elif kind is PoisonKind.UNKNOWN_SENSOR_TYPE:
        fields.update(sensor_type="humidity", unit="%", value=45.0, status=None)
    elif kind is PoisonKind.UNKNOWN_SCHEMA_VERSION:
        fields["schema_version"] = 99
    elif kind is PoisonKind.NAN_TOKEN:
        _as_analog(fields)["value"] = _NUMBER_MARKER
        return msgspec.json.encode(fields).replace(b"123456.5", b"NaN")
    elif kind is PoisonKind.NUMBER_OVERFLOW:
        _as_analog(fields)["value"] = _NUMBER_MARKER
        return msgspec.json.encode(fields).replace(b"123456.5", b"1e999")
    elif kind is PoisonKind.OUT_OF_PHYSICAL_RANGE:
        _as_analog(fields)["value"] = 9999.0
    elif kind is PoisonKind.OVERSIZED:
        fields["padding"] = "x" * _OVERSIZED_PADDING
    elif kind is PoisonKind.TS_IN_FUTURE:
        fields["ts"] = iso_from_epoch_ms(ts_ms + _ONE_DAY_MS)
    return msgspec.json.encode(fields)
