"""A GetRecords batch -> readings, dead letters, anomalies, checkpoint, COPY rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from processor.contract.record import Reading, RejectReason, SensorType, encode_reading
from processor.contract.storage import (
    ANOMALIES_COPY_COLUMNS,
    DEAD_LETTERS_COPY_COLUMNS,
    READINGS_COPY_COLUMNS,
)
from processor.core.batch import (
    anomaly_identity,
    anomaly_rows,
    committed_part,
    dead_letter_rows,
    detect_batch,
    process_records,
    reading_rows,
    validate_records,
)
from processor.core.detection import DetectorBank
from processor.core.model import AnomalyType, KinesisRecord

T0 = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
SHARD = "shardId-000000000001"


def reading(device: str, seq: int, value: float, seconds: float = 0.0) -> Reading:
    return Reading(
        device_id=device,
        facility="fac01",
        line="l01",
        sensor_type=SensorType.TEMPERATURE,
        unit="C",
        ts=T0 + timedelta(seconds=seconds),
        seq=seq,
        schema_version=1,
        value=value,
    )


def record(n: int, data: bytes, key: str = "d1") -> KinesisRecord:
    return KinesisRecord(
        shard_id=SHARD,
        sequence_number=f"4960{n:020d}",
        partition_key=key,
        data=data,
        arrival=T0 + timedelta(seconds=n, milliseconds=300),
    )


def mixed() -> list[KinesisRecord]:
    return [
        record(1, encode_reading(reading("d1", 1, 70.0, 1))),
        record(2, encode_reading(reading("d2", 1, 135.0, 2)), key="d2"),  # limit anomaly
        record(3, b'{"device_id": "d1", "seq": '),  # poison
        # same (d1, 1) and event day, another payload: kept for the store to judge
        record(4, encode_reading(reading("d1", 1, 99.0, 1))),
        record(5, encode_reading(reading("d1", 2, 70.1, 5))),
        record(6, b'{"device_id": "d1"}'),  # last record is a dead letter
    ]


def test_every_record_is_accounted_for() -> None:
    records = mixed()
    batch = process_records(records, DetectorBank(), shard_end=False)
    assert batch.shard_id == SHARD
    # A reading repeating (d1, 1) with another payload stays: the store keeps the
    # first by Kinesis order and dead-letters the other as seq_conflict.
    assert [(a.reading.device_id, a.reading.seq) for a in batch.readings] == [
        ("d1", 1),
        ("d2", 1),
        ("d1", 1),
        ("d1", 2),
    ]
    assert batch.readings[0].sequence_number == records[0].sequence_number
    assert batch.readings[0].reading.value == 70.0
    assert batch.readings[0].arrival == records[0].arrival
    assert [(d.sequence_number, d.reason) for d in batch.dead_letters] == [
        (records[2].sequence_number, RejectReason.NOT_JSON),
        (records[5].sequence_number, RejectReason.MISSING_FIELD),
    ]
    poison = batch.dead_letters[0]
    assert poison.data == records[2].data  # full payload kept
    assert (poison.shard_id, poison.partition_key, poison.arrival) == (
        SHARD,
        "d1",
        records[2].arrival,
    )
    assert poison.detail
    assert batch.checkpoint == records[-1].sequence_number
    assert [(a.device_id, a.seq, a.anomaly_type) for a in batch.anomalies] == [
        ("d2", 1, AnomalyType.LIMIT)
    ]
    assert batch.shard_end is False


def test_empty_batch_at_shard_end() -> None:
    batch = process_records([], DetectorBank(), shard_end=True, shard_id=SHARD)
    assert (batch.shard_id, batch.checkpoint, batch.shard_end) == (SHARD, None, True)
    assert batch.readings == batch.dead_letters == batch.anomalies == []


def test_a_replayed_batch_keeps_its_readings_but_not_its_anomalies() -> None:
    # The DB drops the replayed readings (ON CONFLICT DO NOTHING); the detectors must
    # not report the anomalies again from the advanced state.
    bank = DetectorBank()
    first = process_records(mixed(), bank)
    again = process_records(mixed(), bank)
    assert len(again.readings) == len(first.readings) == 4
    assert len(first.anomalies) == 1 and again.anomalies == []


def test_state_loader_is_called_once_with_unknown_devices_only() -> None:
    donor = DetectorBank()
    donor.observe(reading("d2", 9, 70.0))  # d2's saved state: already at seq 9
    saved = {"d2": donor.state_of("d2").to_bytes()}  # type: ignore[union-attr]
    calls: list[list[str]] = []

    def loader(devices: Sequence[str]) -> dict[str, bytes | None]:
        calls.append(list(devices))
        return {d: saved.get(d) for d in devices}

    bank = DetectorBank()
    bank.observe(reading("d1", 0, 70.0))  # d1 already known
    batch = process_records(mixed(), bank, state_loader=loader)
    assert calls == [["d2"]]
    # d2's reading has seq 1 <= 9: a replay of something already seen, no anomaly
    assert batch.anomalies == []
    assert bank.state_of("d2").last_seq == 9  # type: ignore[union-attr]


def test_validate_then_detect_equals_process() -> None:
    split = validate_records(mixed())
    assert split.anomalies == []
    detect_batch(split, DetectorBank())
    whole = process_records(mixed(), DetectorBank())
    assert split == whole


def test_rows_follow_the_copy_column_orders() -> None:
    batch = process_records(mixed(), DetectorBank())
    now = T0 + timedelta(minutes=1)
    rows = reading_rows(batch, now)
    assert len(rows) == 4 and all(len(r) == len(READINGS_COPY_COLUMNS) for r in rows)
    first = dict(zip(READINGS_COPY_COLUMNS, rows[0], strict=True))
    assert first == {
        "device_id": "d1",
        "seq": 1,
        "facility": "fac01",
        "line": "l01",
        "sensor_type": "temperature",
        "value": 70.0,
        "status": None,
        "unit": "C",
        "event_ts": T0 + timedelta(seconds=1),
        "arrival_ts": T0 + timedelta(seconds=1, milliseconds=300),
        "processed_at": now,
        "shard_id": SHARD,
        "sequence_number": "496000000000000000000001",
        "schema_version": 1,
        "boot": 0,
    }
    (anomaly,) = anomaly_rows(batch, now)
    a = dict(zip(ANOMALIES_COPY_COLUMNS, anomaly, strict=True))
    assert (a["device_id"], a["seq"], a["anomaly_type"], a["severity"]) == (
        "d2",
        1,
        "limit",
        "warning",
    )
    assert a["event_ts"] == T0 + timedelta(seconds=2) and a["detected_at"] == now
    assert (a["sensor_type"], a["value"], a["score"]) == ("temperature", 135.0, 5.0)
    assert "warning limit" in a["explanation"]
    dead = [
        dict(zip(DEAD_LETTERS_COPY_COLUMNS, r, strict=True)) for r in dead_letter_rows(batch, now)
    ]
    assert [d["reason"] for d in dead] == ["not_json", "missing_field"]
    assert dead[0]["payload"] == b'{"device_id": "d1", "seq": '
    assert (dead[0]["shard_id"], dead[0]["partition_key"], dead[0]["received_at"]) == (
        SHARD,
        "d1",
        now,
    )
    assert dead[0]["arrival_ts"] == T0 + timedelta(seconds=3, milliseconds=300)


def test_dead_letter_rows_hold_no_nul_in_text_columns() -> None:
    batch = process_records([record(1, b"\x00\x01", key="k\x00ey")], DetectorBank())
    (row,) = dead_letter_rows(batch, T0)
    d = dict(zip(DEAD_LETTERS_COPY_COLUMNS, row, strict=True))
    assert d["payload"] == b"\x00\x01"  # bytea keeps the bytes
    for column in ("shard_id", "sequence_number", "partition_key", "reason", "detail"):
        assert "\x00" not in d[column], column
    assert d["partition_key"] == "k\\x00ey"


def test_copy_columns_are_the_agreed_ones() -> None:
    # Another engineer's migrations create the tables with exactly these columns.
    assert READINGS_COPY_COLUMNS == (
        "device_id",
        "seq",
        "facility",
        "line",
        "sensor_type",
        "value",
        "status",
        "unit",
        "event_ts",
        "arrival_ts",
        "processed_at",
        "shard_id",
        "sequence_number",
        "schema_version",
        "boot",
    )
    assert ANOMALIES_COPY_COLUMNS == (
        "device_id",
        "seq",
        "anomaly_type",
        "severity",
        "score",
        "explanation",
        "event_ts",
        "detected_at",
        "sensor_type",
        "value",
        "boot",  # migration 0007; event_day is generated from event_ts, not copied
    )
    assert DEAD_LETTERS_COPY_COLUMNS == (
        "shard_id",
        "sequence_number",
        "partition_key",
        "payload",
        "reason",
        "detail",
        "arrival_ts",
        "received_at",
    )


def test_committed_part_keeps_only_what_postgresql_stored() -> None:
    """Issue 10 item 5: Redis gets the stored readings and their anomalies only."""
    records = [
        record(1, encode_reading(reading("d1", 1, 70.0, 1))),
        record(2, encode_reading(reading("d2", 1, 135.0, 2)), key="d2"),  # limit anomaly
        record(3, encode_reading(reading("d3", 4, 140.0, 3)), key="d3"),  # limit anomaly
    ]
    batch = process_records(records, DetectorBank())
    assert {(a.device_id, a.seq) for a in batch.anomalies} == {("d2", 1), ("d3", 4)}
    # d2's (device, seq) was already stored by an earlier record: not inserted now.
    stored_keys = {("d1", 1), ("d3", 4)}
    stored_records = {records[0].sequence_number, records[2].sequence_number}
    # The store inserted d3's anomaly only (d2's reading was not new).
    stored_anomalies = {anomaly_identity(a) for a in batch.anomalies if a.device_id == "d3"}
    part = committed_part(batch, stored_keys, stored_records, stored_anomalies)
    assert [a.sequence_number for a in part.readings] == sorted(stored_records)
    assert {(a.device_id, a.seq) for a in part.anomalies} == {("d3", 4)}
    assert part.checkpoint == batch.checkpoint
    assert part.dead_letters == batch.dead_letters
    # Everything stored: the batch itself (no copy on the hot path).
    everything = {r.sequence_number for r in records}
    all_keys = {("d1", 1), ("d2", 1), ("d3", 4)}
    every_anomaly = {anomaly_identity(a) for a in batch.anomalies}
    assert committed_part(batch, all_keys, everything, every_anomaly) is batch
    # All readings new, but the store kept no anomaly (e.g. already stored): none shown.
    assert committed_part(batch, all_keys, everything, set()).anomalies == []


def test_committed_part_matches_anomalies_on_the_readings_identity() -> None:
    """A batch holds seq 5 of boot 0 (a replay the store did not insert) and seq 5 of
    boot 1 (stored), both over the limit: only boot 1's anomaly may reach Redis. An
    identity without the boot let boot 0's ride along with it."""
    old = reading("d1", 5, 135.0, 1)
    new = msgspec.structs.replace(old, schema_version=2, boot=1, ts=T0 + timedelta(seconds=40))
    records = [record(1, encode_reading(old)), record(40, encode_reading(new))]
    bank = DetectorBank()
    batch = validate_records(records)
    detect_batch(batch, bank)
    # the second is a new series for the detectors, but the limit episode goes on:
    # raise it again from a fresh bank so both readings carry an anomaly.
    batch.anomalies += DetectorBank().observe(new)
    assert [(a.boot, a.seq) for a in batch.anomalies] == [(0, 5), (1, 5)]
    # The store returns the identities it inserted: boot 1's (boot is part of it).
    stored = {anomaly_identity(batch.anomalies[1])}
    part = committed_part(batch, {("d1", 5)}, {records[1].sequence_number}, stored)
    assert [(a.boot, a.seq, a.ts) for a in part.anomalies] == [(1, 5, new.ts)]
    assert anomaly_rows(part, T0)[0][-1] == 1  # the boot column


def test_an_exact_resend_in_the_batch_is_dropped_and_a_reboot_is_a_new_series() -> None:
    """Issue 10 item 4: the in-batch rule. An exact producer re-send disappears; the
    same seq after a restart (boot 1, schema version 2), on another event day, or with
    another payload stays (the store judges the last against what it holds)."""
    before = reading("d1", 1, 70.0, 1)
    rebooted = msgspec.structs.replace(
        before, schema_version=2, boot=1, ts=T0 + timedelta(seconds=9)
    )
    previous_day = msgspec.structs.replace(before, ts=T0 - timedelta(days=1))
    records = [
        record(1, encode_reading(before)),
        record(2, encode_reading(before)),  # exact re-send
        record(3, encode_reading(rebooted)),
        record(4, encode_reading(previous_day)),
        record(5, encode_reading(msgspec.structs.replace(rebooted, value=71.0))),
    ]
    batch = validate_records(records)
    assert [a.sequence_number for a in batch.readings] == [
        records[0].sequence_number,
        records[2].sequence_number,
        records[3].sequence_number,
        records[4].sequence_number,
    ]
    assert batch.dead_letters == []
    assert [row[-1] for row in reading_rows(batch, T0)] == [0, 1, 0, 1]  # the boot column
