"""The sensor reading: the one schema shared by the simulator, Locust and the processor.

A reading is a JSON object sent as one Kinesis record (partition key = ``device_id``)::

    {"device_id": "fac1-l02-m03-temp-0", "facility": "fac1", "line": "l02",
     "sensor_type": "temperature", "value": 71.4, "status": null, "unit": "C",
     "ts": "2026-11-26T17:00:00.120Z", "seq": 4711, "schema_version": 1}

Schema version 2 adds ``"boot"``: a counter the device increments at every restart
(reboot, firmware update, replacement unit taking over the id), so that a sequence
that starts again at 0 is a new series, ``(device_id, boot, seq)``, not a repeat of
old readings (issue 10 item 4). Version 1 records (no ``boot``) are still accepted
and count as boot 0. How a repeated ``(device_id, boot, seq)`` is handled (exact
re-send de-duplicated, different payload dead-lettered as ``seq_conflict``) is in
docs/PROCESSOR-STORAGE.md.

``decode_reading`` never raises on any byte string: it returns either a
:class:`Reading` or a :class:`Rejection` carrying a :class:`RejectReason` code,
which the processor writes to the dead-letter table with the raw bytes.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

import msgspec

#: What a producer without a boot counter sends (the simulator, Locust).
SCHEMA_VERSION: Final = 1
#: The version that carries ``boot``.
BOOT_SCHEMA_VERSION: Final = 2
SUPPORTED_SCHEMA_VERSIONS: Final = frozenset({SCHEMA_VERSION, BOOT_SCHEMA_VERSION})
#: Largest boot counter (a PostgreSQL bigint).
MAX_BOOT: Final = 2**63 - 1

#: Largest accepted record. A reading is about 250 bytes; anything near Kinesis's
#: 1 MiB limit is a producer bug, not a reading.
MAX_RECORD_BYTES: Final = 4096

#: Identifier patterns, always applied with ``fullmatch``: ``match`` with ``$`` also
#: accepts one trailing newline, which made ``"dev-1\n"`` a second, phantom device.
DEVICE_ID_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,127}")
_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


class SensorType(enum.StrEnum):
    TEMPERATURE = "temperature"
    PRESSURE = "pressure"
    EQUIPMENT_STATUS = "equipment_status"


class EquipmentStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    IDLE = "IDLE"
    MAINTENANCE = "MAINTENANCE"
    FAULT = "FAULT"


#: The unit each sensor type must declare.
UNITS: Final[dict[SensorType, str]] = {
    SensorType.TEMPERATURE: "C",
    SensorType.PRESSURE: "bar",
    SensorType.EQUIPMENT_STATUS: "state",
}

#: Physically possible ranges (inclusive). A value outside is not an anomaly of the
#: machine but a broken sensor or producer, so the record is dead-lettered.
#: Temperature: industrial RTDs/thermocouples on this plant read -50..600 °C.
#: Pressure: hydraulic lines up to 400 bar gauge; negative gauge down to -1 bar (vacuum).
PHYSICAL_RANGE: Final[dict[SensorType, tuple[float, float]]] = {
    SensorType.TEMPERATURE: (-50.0, 600.0),
    SensorType.PRESSURE: (-1.0, 400.0),
}


class RejectReason(enum.StrEnum):
    """Why a record went to the dead-letter table (stored as text, stable codes)."""

    OVERSIZED = "oversized"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_SENSOR_TYPE = "unknown_sensor_type"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    BAD_UNIT = "bad_unit"
    BAD_STATUS = "bad_status"
    BAD_IDENTIFIER = "bad_identifier"
    INCONSISTENT = "inconsistent"
    #: Not a decoding verdict: set by the processor when a valid reading repeats the
    #: (device_id, boot, seq) of a stored reading of the same event day with a
    #: different payload (issue 10 item 4). See :data:`AFTER_DECODING_REASONS`.
    SEQ_CONFLICT = "seq_conflict"


#: Reasons ``decode_reading`` never returns: assigned once a reading meets others.
AFTER_DECODING_REASONS: Final = frozenset({RejectReason.SEQ_CONFLICT})


class Reading(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=False):
    """A validated reading. Field order is the wire order."""

    device_id: str
    facility: str
    line: str
    sensor_type: SensorType
    unit: str
    ts: Annotated[datetime, msgspec.Meta(tz=True)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    schema_version: int
    value: float | None = None
    status: EquipmentStatus | None = None
    #: Schema version 2 only: the device's restart counter (None in version 1).
    boot: Annotated[int, msgspec.Meta(ge=0, le=MAX_BOOT)] | None = None

    @property
    def series(self) -> int:
        """The boot counter, 0 for a version 1 record (the stored ``boot``)."""
        return 0 if self.boot is None else self.boot


class _ReadingV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=False):
    """The version 1 wire form (no ``boot``): what :func:`encode_reading` writes for
    a reading without a boot counter, byte for byte what version 1 producers send."""

    device_id: str
    facility: str
    line: str
    sensor_type: SensorType
    unit: str
    ts: datetime
    seq: int
    schema_version: int
    value: float | None = None
    status: EquipmentStatus | None = None


class _WireReading(msgspec.Struct, forbid_unknown_fields=True):
    """What we accept on the wire before semantic checks: loose enums so an unknown
    sensor type or status gets its own reason code instead of a generic type error."""

    device_id: str
    facility: str
    line: str
    sensor_type: str
    unit: str
    ts: Annotated[datetime, msgspec.Meta(tz=True)]
    seq: int
    schema_version: int
    value: float | None = None
    status: str | None = None
    boot: int | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Time window a reading's event time must fall in, relative to its Kinesis arrival."""

    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=7)
    max_record_bytes: int = MAX_RECORD_BYTES


DEFAULT_LIMITS: Final = ValidationLimits()

# Dict lookups instead of Enum calls and enum attribute access on the hot path
# (each Enum call costs about a microsecond; the processor decodes > 20k records/s).
_SENSOR_TYPES: Final[dict[str, SensorType]] = {t.value: t for t in SensorType}
_STATUSES: Final[dict[str, EquipmentStatus]] = {s.value: s for s in EquipmentStatus}
_EQUIPMENT_STATUS: Final = SensorType.EQUIPMENT_STATUS

_decoder: Final = msgspec.json.Decoder(_WireReading)
_encoder: Final = msgspec.json.Encoder()


def encode_reading(reading: Reading) -> bytes:
    """Serialize a reading exactly as producers must send it (version 1 without
    ``boot``, version 2 with it as the last field)."""
    if reading.boot is None:
        return _encoder.encode(
            _ReadingV1(
                reading.device_id,
                reading.facility,
                reading.line,
                reading.sensor_type,
                reading.unit,
                reading.ts,
                reading.seq,
                reading.schema_version,
                reading.value,
                reading.status,
            )
        )
    return _encoder.encode(reading)


def _classify_validation_error(message: str) -> RejectReason:
    if "missing required field" in message:
        return RejectReason.MISSING_FIELD
    if "unknown field" in message:
        return RejectReason.UNKNOWN_FIELD
    if "`$.ts`" in message:
        return RejectReason.BAD_TIMESTAMP
    if "Expected `object`" in message and "at `$" not in message:
        return RejectReason.NOT_OBJECT
    if "out of range" in message:
        # msgspec says "Number out of range" for a float literal that overflows to
        # infinity (1e400) and for an integer beyond 64 bits.
        return RejectReason.NON_FINITE if "`$.value`" in message else RejectReason.OUT_OF_RANGE
    return RejectReason.WRONG_TYPE


#: Longest ``detail`` kept: it is a hint for a human, not a copy of the payload
#: (the payload is stored beside it).
MAX_DETAIL_CHARS: Final = 300


def _detail(text: str) -> str:
    """A detail safe for a PostgreSQL ``text`` column (no NUL) and bounded in size;
    msgspec error messages may quote attacker-chosen field names, including lone
    surrogates (``"\\ud800"``) that cannot be encoded as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if len(text) > MAX_DETAIL_CHARS:
        text = text[: MAX_DETAIL_CHARS - 3] + "..."
    return text


def _reject(reason: RejectReason, detail: str) -> Rejection:
    return Rejection(reason, _detail(detail))


def decode_reading(
    data: bytes, *, arrival: datetime, limits: ValidationLimits = DEFAULT_LIMITS
) -> Reading | Rejection:
    """Validate one Kinesis record's bytes. Never raises.

    ``arrival`` is the record's Kinesis ``ApproximateArrivalTimestamp`` (tz-aware);
    event-time checks are made against it so that replaying old records gives the
    same verdict as the first delivery.
    """
    try:
        if len(data) > limits.max_record_bytes:
            return Rejection(
                RejectReason.OVERSIZED, f"{len(data)} bytes > limit {limits.max_record_bytes}"
            )
        # msgspec validates UTF-8 inside strings (raising UnicodeDecodeError) and
        # rejects any other non-ASCII byte as malformed JSON, so a separate UTF-8
        # pass is only needed to name the reason of a failure, not on the hot path.
        try:
            wire = _decoder.decode(data)
        except UnicodeDecodeError as exc:
            return Rejection(RejectReason.NOT_UTF8, f"invalid UTF-8: {exc.reason}")
        except msgspec.ValidationError as exc:
            return _not_utf8(data) or _reject(_classify_validation_error(str(exc)), str(exc))
        except msgspec.DecodeError as exc:
            return _not_utf8(data) or _reject(RejectReason.NOT_JSON, str(exc))
        return _check_semantics(wire, arrival, limits)
    except Exception as exc:  # msgspec is total on bytes, but a dead letter beats a crash
        return _reject(RejectReason.NOT_JSON, f"{type(exc).__name__}: {exc}")


def _not_utf8(data: bytes) -> Rejection | None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.NOT_UTF8, f"invalid UTF-8 at byte {exc.start}")
    return None


def _check_semantics(
    wire: _WireReading, arrival: datetime, limits: ValidationLimits
) -> Reading | Rejection:
    if wire.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        return Rejection(
            RejectReason.UNKNOWN_SCHEMA_VERSION, f"schema_version {wire.schema_version}"
        )
    boot = wire.boot
    if wire.schema_version == SCHEMA_VERSION:
        if boot is not None:
            return Rejection(
                RejectReason.INCONSISTENT,
                f"boot needs schema_version {BOOT_SCHEMA_VERSION}, got {SCHEMA_VERSION}",
            )
    elif boot is None:
        return Rejection(
            RejectReason.MISSING_FIELD, f"schema_version {wire.schema_version} without boot"
        )
    elif boot < 0 or boot > MAX_BOOT:
        return Rejection(RejectReason.OUT_OF_RANGE, f"boot {boot} outside 0..2^63-1")
    sensor_type = _SENSOR_TYPES.get(wire.sensor_type)
    if sensor_type is None:
        return _reject(RejectReason.UNKNOWN_SENSOR_TYPE, f"sensor_type {wire.sensor_type!r}")
    if not DEVICE_ID_PATTERN.fullmatch(wire.device_id):
        return Rejection(RejectReason.BAD_IDENTIFIER, "device_id does not match pattern")
    if not _NAME_PATTERN.fullmatch(wire.facility) or not _NAME_PATTERN.fullmatch(wire.line):
        return Rejection(RejectReason.BAD_IDENTIFIER, "facility or line does not match pattern")
    if wire.seq < 0 or wire.seq > 2**63 - 1:
        return Rejection(RejectReason.OUT_OF_RANGE, f"seq {wire.seq} outside 0..2^63-1")
    if wire.unit != UNITS[sensor_type]:
        return _reject(
            RejectReason.BAD_UNIT,
            f"unit {wire.unit!r} for {sensor_type}, want {UNITS[sensor_type]!r}",
        )
    ts = wire.ts
    try:
        if ts.tzinfo is not UTC:
            ts = ts.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is valid RFC 3339 but not a UTC datetime
        return Rejection(RejectReason.BAD_TIMESTAMP, "ts outside the representable UTC range")
    if ts - arrival > limits.max_future:
        return Rejection(
            RejectReason.TS_IN_FUTURE, f"ts {ts.isoformat()} after arrival + {limits.max_future}"
        )
    if arrival - ts > limits.max_age:
        return Rejection(
            RejectReason.TS_TOO_OLD, f"ts {ts.isoformat()} before arrival - {limits.max_age}"
        )

    status: EquipmentStatus | None = None
    value = wire.value
    if sensor_type is _EQUIPMENT_STATUS:
        if value is not None:
            return Rejection(RejectReason.INCONSISTENT, "equipment_status carries a value")
        if wire.status is None:
            return Rejection(RejectReason.MISSING_FIELD, "equipment_status without status")
        status = _STATUSES.get(wire.status)
        if status is None:
            return _reject(RejectReason.BAD_STATUS, f"status {wire.status!r}")
    else:
        if wire.status is not None:
            return Rejection(RejectReason.INCONSISTENT, f"{sensor_type} carries a status")
        if value is None:
            return Rejection(RejectReason.MISSING_FIELD, f"{sensor_type} without value")
        if not math.isfinite(value):
            return Rejection(RejectReason.NON_FINITE, f"value {value!r}")
        low, high = PHYSICAL_RANGE[sensor_type]
        if not low <= value <= high:
            return Rejection(
                RejectReason.OUT_OF_RANGE, f"value {value} outside physical range [{low}, {high}]"
            )
    return Reading(
        device_id=wire.device_id,
        facility=wire.facility,
        line=wire.line,
        sensor_type=sensor_type,
        unit=wire.unit,
        ts=ts,
        seq=wire.seq,
        schema_version=wire.schema_version,
        value=float(value) if value is not None else None,
        status=status,
        boot=boot,
    )
