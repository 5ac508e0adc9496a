"""The record contract: every reject reason is reachable, nothing raises on any
input, and what a producer encodes the processor decodes unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.contract.record import (
    AFTER_DECODING_REASONS,
    BOOT_SCHEMA_VERSION,
    MAX_RECORD_BYTES,
    PHYSICAL_RANGE,
    SCHEMA_VERSION,
    UNITS,
    EquipmentStatus,
    Reading,
    Rejection,
    RejectReason,
    SensorType,
    ValidationLimits,
    decode_reading,
    encode_reading,
)

ARRIVAL = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)


def valid(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "device_id": "fac01-l02-m03-temperature-0",
        "facility": "fac01",
        "line": "l02",
        "sensor_type": "temperature",
        "value": 71.4,
        "status": None,
        "unit": "C",
        "ts": "2026-11-26T16:59:59.120Z",
        "seq": 4711,
        "schema_version": 1,
    }
    record.update(changes)
    return record


def status_record(**changes: Any) -> dict[str, Any]:
    record = valid(
        device_id="fac01-l02-m03-equipment_status-0",
        sensor_type="equipment_status",
        unit="state",
        value=None,
        status="RUNNING",
    )
    record.update(changes)
    return record


def without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


def enc(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


def raw(record: dict[str, Any], field: str, literal: str) -> bytes:
    """The record with one field's JSON replaced by a raw literal (NaN, 1e400...)."""
    marker = "__RAW__"
    return enc({**record, field: marker}).replace(f'"{marker}"'.encode(), literal.encode())


# One example per reason; the coverage test below fails when a reason is added
# without an example.
EXAMPLES: list[tuple[RejectReason, bytes]] = [
    (RejectReason.OVERSIZED, enc(valid(device_id="d" * (MAX_RECORD_BYTES + 1)))),
    (RejectReason.NOT_UTF8, b'{"device_id": "\xff\xfe"}'),
    (RejectReason.NOT_UTF8, b"\xff{}"),
    (RejectReason.NOT_JSON, b'{"device_id": '),
    (RejectReason.NOT_JSON, b""),
    (RejectReason.NOT_OBJECT, b"[1, 2, 3]"),
    (RejectReason.NOT_OBJECT, b"42"),
    (RejectReason.MISSING_FIELD, enc(without(valid(), "device_id"))),
    (RejectReason.MISSING_FIELD, enc(valid(value=None))),
    (RejectReason.MISSING_FIELD, enc(status_record(status=None))),
    (RejectReason.UNKNOWN_FIELD, enc(valid(humidity=3))),
    (RejectReason.WRONG_TYPE, enc(valid(seq="4711"))),
    (RejectReason.WRONG_TYPE, enc(valid(value=True))),
    (RejectReason.BAD_TIMESTAMP, enc(valid(ts="yesterday"))),
    (RejectReason.BAD_TIMESTAMP, enc(valid(ts="2026-11-26T16:59:59"))),  # no offset
    (RejectReason.BAD_TIMESTAMP, enc(valid(ts="9999-12-31T23:59:59-01:00"))),
    (RejectReason.BAD_TIMESTAMP, enc(valid(ts="0001-01-01T00:00:00+01:00"))),
    (RejectReason.TS_IN_FUTURE, enc(valid(ts="2026-11-26T17:05:01Z"))),
    (RejectReason.TS_TOO_OLD, enc(valid(ts="2026-11-19T16:59:59Z"))),
    (RejectReason.NON_FINITE, raw(valid(), "value", "1e400")),
    (RejectReason.NON_FINITE, raw(valid(), "value", "-1e999")),
    (RejectReason.OUT_OF_RANGE, enc(valid(value=600.5))),
    (RejectReason.OUT_OF_RANGE, enc(valid(sensor_type="pressure", unit="bar", value=-1.5))),
    (RejectReason.OUT_OF_RANGE, enc(valid(seq=-1))),
    (RejectReason.OUT_OF_RANGE, enc(valid(seq=2**63))),
    (RejectReason.OUT_OF_RANGE, raw(valid(), "seq", "1" + "0" * 30)),
    (RejectReason.UNKNOWN_SENSOR_TYPE, enc(valid(sensor_type="humidity"))),
    (RejectReason.UNKNOWN_SCHEMA_VERSION, enc(valid(schema_version=3))),
    (RejectReason.UNKNOWN_SCHEMA_VERSION, enc(valid(schema_version=3, boot=1))),
    (RejectReason.MISSING_FIELD, enc(valid(schema_version=2))),  # version 2 needs boot
    (RejectReason.MISSING_FIELD, enc(valid(schema_version=2, boot=None))),
    (RejectReason.INCONSISTENT, enc(valid(boot=1))),  # boot needs version 2
    (RejectReason.OUT_OF_RANGE, enc(valid(schema_version=2, boot=-1))),
    (RejectReason.OUT_OF_RANGE, enc(valid(schema_version=2, boot=2**63))),
    (RejectReason.WRONG_TYPE, enc(valid(schema_version=2, boot="3"))),
    (RejectReason.BAD_UNIT, enc(valid(unit="F"))),
    (RejectReason.BAD_STATUS, enc(status_record(status="EXPLODED"))),
    (RejectReason.BAD_IDENTIFIER, enc(valid(device_id="Machine 7"))),
    (RejectReason.BAD_IDENTIFIER, enc(valid(facility=""))),
    (RejectReason.INCONSISTENT, enc(valid(status="RUNNING"))),
    (RejectReason.INCONSISTENT, enc(status_record(value=1.0))),
]


def test_every_reason_has_an_example() -> None:
    """Every decoding reason; the processor assigns the others after decoding."""
    assert {reason for reason, _ in EXAMPLES} == set(RejectReason) - AFTER_DECODING_REASONS
    assert not AFTER_DECODING_REASONS & {reason for reason, _ in EXAMPLES}


@pytest.mark.parametrize(("reason", "data"), EXAMPLES, ids=lambda v: str(v)[:40])
def test_reject_reason(reason: RejectReason, data: bytes) -> None:
    result = decode_reading(data, arrival=ARRIVAL)
    assert isinstance(result, Rejection), result
    assert result.reason is reason, result.detail
    assert result.detail


def test_valid_records_decode() -> None:
    reading = decode_reading(enc(valid()), arrival=ARRIVAL)
    assert isinstance(reading, Reading)
    assert reading.value == 71.4
    assert reading.ts == datetime(2026, 11, 26, 16, 59, 59, 120000, tzinfo=UTC)
    status = decode_reading(enc(status_record()), arrival=ARRIVAL)
    assert isinstance(status, Reading)
    assert status.status is EquipmentStatus.RUNNING
    assert status.value is None


def test_timestamp_is_normalised_to_utc() -> None:
    reading = decode_reading(enc(valid(ts="2026-11-26T18:59:59+02:00")), arrival=ARRIVAL)
    assert isinstance(reading, Reading)
    assert reading.ts == datetime(2026, 11, 26, 16, 59, 59, tzinfo=UTC)
    assert reading.ts.utcoffset() == timedelta(0)


def test_limits_are_configurable_and_inclusive_of_the_edges() -> None:
    edge = valid(ts="2026-11-26T17:05:00Z")  # exactly arrival + max_future
    assert isinstance(decode_reading(enc(edge), arrival=ARRIVAL), Reading)
    tight = ValidationLimits(max_future=timedelta(seconds=1))
    result = decode_reading(enc(edge), arrival=ARRIVAL, limits=tight)
    assert isinstance(result, Rejection) and result.reason is RejectReason.TS_IN_FUTURE
    low, high = PHYSICAL_RANGE[SensorType.TEMPERATURE]
    assert isinstance(decode_reading(enc(valid(value=high)), arrival=ARRIVAL), Reading)
    assert isinstance(decode_reading(enc(valid(value=low)), arrival=ARRIVAL), Reading)


def test_detail_is_safe_for_a_text_column() -> None:
    # msgspec quotes an unknown field's name: a NUL or a lone surrogate must not reach SQL.
    for data in (b'{"\\u0000evil": 1}', b'{"\\ud800": 1}', enc({"x" * 5000: 1})[:4000]):
        result = decode_reading(data, arrival=ARRIVAL)
        assert isinstance(result, Rejection)
        assert "\x00" not in result.detail
        result.detail.encode("utf-8")  # raises if a surrogate slipped through
        assert len(result.detail) <= 300


# -- properties ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def check_total(data: bytes) -> Reading | Rejection:
    result = decode_reading(data, arrival=ARRIVAL)
    assert isinstance(result, Reading | Rejection)
    if isinstance(result, Rejection):
        assert "\x00" not in result.detail
        result.detail.encode("utf-8")
    else:
        data.decode("utf-8")  # an accepted record is valid UTF-8
    return result


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    check_total(data)


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=200))
def test_invalid_utf8_is_named(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        result = decode_reading(data, arrival=ARRIVAL)
        assert isinstance(result, Rejection) and result.reason is RejectReason.NOT_UTF8


@settings(max_examples=300)
@given(json_values)
def test_never_raises_on_arbitrary_json(value: Any) -> None:
    result = check_total(enc(value))
    assert isinstance(result, Rejection)  # no random value is a valid reading


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([valid(), status_record(), valid(sensor_type="pressure", unit="bar")]),
    field=st.sampled_from(sorted(valid())),
    action=st.sampled_from(["replace", "delete", "add"]),
    value=json_values,
)
def test_never_raises_on_mutated_records(
    base: dict[str, Any], field: str, action: str, value: Any
) -> None:
    record = dict(base)
    if action == "replace":
        record[field] = value
    elif action == "delete":
        record.pop(field)
    else:
        record[f"extra_{field}"] = value
    check_total(enc(record))


@settings(max_examples=500)
@given(
    base=st.sampled_from([enc(valid()), enc(status_record())]),
    position=st.integers(min_value=0, max_value=10_000),
    byte=st.integers(min_value=0, max_value=255),
    cut=st.booleans(),
)
def test_never_raises_on_byte_mutations(base: bytes, position: int, byte: int, cut: bool) -> None:
    i = position % len(base)
    data = base[:i] if cut else base[:i] + bytes([byte]) + base[i + 1 :]
    check_total(data)


analog = st.sampled_from([SensorType.TEMPERATURE, SensorType.PRESSURE])


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    sensor_type = draw(analog | st.just(SensorType.EQUIPMENT_STATUS))
    ts = ARRIVAL - timedelta(
        microseconds=draw(st.integers(min_value=0, max_value=6 * 86_400 * 10**6))
    )
    ident = st.from_regex(r"[a-z0-9][a-z0-9_.:-]{0,20}", fullmatch=True)
    boot = draw(st.none() | st.integers(min_value=0, max_value=2**63 - 1))
    value: float | None = None
    status: EquipmentStatus | None = None
    if sensor_type is SensorType.EQUIPMENT_STATUS:
        status = draw(st.sampled_from(EquipmentStatus))
    else:
        low, high = PHYSICAL_RANGE[sensor_type]
        value = draw(st.floats(min_value=low, max_value=high))
    return Reading(
        device_id=draw(ident),
        facility=draw(ident),
        line=draw(ident),
        sensor_type=sensor_type,
        unit=UNITS[sensor_type],
        ts=ts,
        seq=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        schema_version=BOOT_SCHEMA_VERSION if boot is not None else SCHEMA_VERSION,
        value=value,
        status=status,
        boot=boot,
    )


@settings(max_examples=500)
@given(readings())
def test_encode_decode_round_trip(reading: Reading) -> None:
    data = encode_reading(reading)
    assert decode_reading(data, arrival=ARRIVAL) == reading


# Issue 10 item 7: ``re.match`` with ``$`` accepts one trailing newline, which made
# "dev-1\n" a second, phantom device. Every identifier must match in full.
@settings(max_examples=300)
@given(
    readings(),
    st.sampled_from(["device_id", "facility", "line"]),
    st.sampled_from(["\n", "\r\n", "\r", " ", "\t", "\x00"]),
    st.booleans(),
)
def test_identifier_with_trailing_or_leading_control_is_rejected(
    reading: Reading, field: str, junk: str, leading: bool
) -> None:
    record = msgspec.to_builtins(reading)
    record[field] = junk + record[field] if leading else record[field] + junk
    result = decode_reading(enc(record), arrival=ARRIVAL)
    assert isinstance(result, Rejection), result
    assert result.reason is RejectReason.BAD_IDENTIFIER, result.detail


@pytest.mark.parametrize("field", ["device_id", "facility", "line"])
def test_trailing_newline_is_not_another_device(field: str) -> None:
    result = decode_reading(enc(valid(**{field: valid()[field] + "\n"})), arrival=ARRIVAL)
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.BAD_IDENTIFIER


def test_version_1_encoding_is_unchanged_and_version_2_adds_boot_last() -> None:
    """Issue 10 item 4: version 1 bytes stay what version 1 producers (the simulator)
    send; version 2 appends the boot counter."""
    v1 = decode_reading(enc(valid()), arrival=ARRIVAL)
    assert isinstance(v1, Reading) and v1.boot is None and v1.series == 0
    assert b"boot" not in encode_reading(v1)
    assert set(msgspec.json.decode(encode_reading(v1))) == set(valid())
    v2 = decode_reading(enc(valid(schema_version=2, boot=3)), arrival=ARRIVAL)
    assert isinstance(v2, Reading) and v2.boot == 3 and v2.series == 3
    assert encode_reading(v2).endswith(b',"boot":3}')
    assert decode_reading(encode_reading(v2), arrival=ARRIVAL) == v2
