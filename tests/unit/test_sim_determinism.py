"""The fleet is a pure function of its parameters: same seed, same bytes; slices
partition the fleet; every reading is what the shared contract encodes."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from processor.contract.record import DEVICE_ID_PATTERN, Reading, decode_reading, encode_reading
from simulator.fleet import Fleet, SimRecord
from simulator.plant import build_devices
from simulator.timestamps import datetime_from_epoch_ms

START = datetime(2026, 11, 23, 5, 58, tzinfo=UTC)  # across a shift change, Monday


def _fleet(seed: int = 7, devices: int = 60, **kwargs: float) -> Fleet:
    return Fleet(devices, seed, start=START, **kwargs)  # type: ignore[arg-type]


def _by_device(records: list[SimRecord]) -> dict[str, list[bytes]]:
    streams: dict[str, list[bytes]] = defaultdict(list)
    for record in records:
        streams[record.partition_key].append(record.data)
    return dict(streams)


def test_same_seed_gives_identical_bytes() -> None:
    first = _fleet(anomaly_rate=0.02, poison_rate=0.01).generate(20_000)
    second = _fleet(anomaly_rate=0.02, poison_rate=0.01).generate(20_000)
    assert [r.data for r in first] == [r.data for r in second]
    assert [r.partition_key for r in first] == [r.partition_key for r in second]


def test_different_seed_differs() -> None:
    first = _fleet(seed=7).generate(2_000)
    second = _fleet(seed=8).generate(2_000)
    assert [r.data for r in first] != [r.data for r in second]


def test_generate_in_chunks_equals_one_call() -> None:
    whole = _fleet(anomaly_rate=0.05, poison_rate=0.05).generate(5_000)
    fleet = _fleet(anomaly_rate=0.05, poison_rate=0.05)
    chunked: list[SimRecord] = []
    while len(chunked) < 5_000:
        chunked += fleet.generate(min(37, 5_000 - len(chunked)))
    assert [r.data for r in chunked] == [r.data for r in whole]


def test_slices_partition_the_fleet_with_identical_streams() -> None:
    rounds = 300
    whole = _fleet(anomaly_rate=0.02, poison_rate=0.01)
    end_ms = whole.start_ms + rounds * 1000 - 1
    expected = _by_device(whole.tick(end_ms))
    merged: dict[str, list[bytes]] = {}
    slice_devices: list[str] = []
    for index in range(4):
        part = whole.slice(index, 4)
        slice_devices += part.device_ids
        streams = _by_device(part.tick(end_ms))
        assert not merged.keys() & streams.keys()
        merged.update(streams)
    assert merged == expected
    assert sorted(slice_devices) == sorted(whole.device_ids)


def test_labels_of_slices_equal_labels_of_whole() -> None:
    whole = _fleet(anomaly_rate=0.02, poison_rate=0.01)
    whole.tick(whole.start_ms + 600_000)
    expected = sorted(repr(label) for label in whole.finish())
    merged: list[str] = []
    for index in range(3):
        part = whole.slice(index, 3)
        part.tick(part.start_ms + 600_000)
        merged += [repr(label) for label in part.finish()]
    assert sorted(merged) == expected
    assert expected


def test_device_ids_are_stable_and_match_the_contract() -> None:
    small = [d.device_id for d in build_devices(7, range(10))]
    large = [d.device_id for d in build_devices(7, range(10_000))]
    assert large[:10] == small
    assert small[:4] == [
        "fac01-l01-m01-temperature-0",
        "fac01-l01-m01-pressure-0",
        "fac01-l01-m01-equipment_status-0",
        "fac01-l01-m02-temperature-0",
    ]
    assert len(set(large)) == 10_000
    assert all(DEVICE_ID_PATTERN.fullmatch(device_id) for device_id in large)


def test_records_are_byte_identical_to_the_contract_encoder() -> None:
    records = _fleet(devices=30, anomaly_rate=0.05).generate(20_000)
    for record in records:
        decoded = decode_reading(record.data, arrival=datetime_from_epoch_ms(record.ts_ms))
        assert isinstance(decoded, Reading), (record, decoded)
        assert encode_reading(decoded) == record.data
        assert decoded.device_id == record.device_id
        assert decoded.seq == record.seq
        assert decoded.sensor_type.value == record.sensor_type


def test_records_come_out_in_event_time_order() -> None:
    records = _fleet(devices=200).generate(10_000)
    times = [r.ts_ms for r in records]
    assert times == sorted(times)


def test_seq_is_per_device_and_gap_free_without_anomalies() -> None:
    records = _fleet(devices=12, poison_rate=0.05).generate(6_000)
    seqs: dict[str, list[int]] = defaultdict(list)
    for record in records:
        if record.poison is None:
            seqs[record.partition_key].append(record.seq)
    for device_seqs in seqs.values():
        assert device_seqs == list(range(len(device_seqs)))


def test_tick_emits_only_what_is_due() -> None:
    fleet = _fleet(devices=50)
    first = fleet.tick(fleet.start_ms + 999)
    assert len(first) == 50
    assert all(r.ts_ms <= fleet.start_ms + 999 for r in first)
    assert fleet.tick(fleet.start_ms + 999) == []
    limited = fleet.tick(fleet.start_ms + 1999, limit=20)
    assert len(limited) == 20
    assert len(fleet.tick(fleet.start_ms + 1999)) == 30
