"""Every poison kind is dead-lettered by the contract with its labelled reason."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from processor.contract.record import Rejection, SensorType, decode_reading
from simulator.fleet import Fleet
from simulator.poison import EXPECTED_REASON, PoisonKind, PoisonLabel, make_poison
from simulator.timestamps import datetime_from_epoch_ms

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("sensor_type", list(SensorType))
@pytest.mark.parametrize("kind", list(PoisonKind))
def test_each_kind_is_rejected_with_its_reason(kind: PoisonKind, sensor_type: SensorType) -> None:
    ts_ms = 1_795_510_800_123
    data = make_poison(
        kind,
        device_id=f"fac01-l01-m01-{sensor_type.value}-0",
        facility="fac01",
        line="l01",
        sensor_type=sensor_type,
        ts_ms=ts_ms,
        seq=42,
    )
    assert b"\n" not in data
    verdict = decode_reading(data, arrival=datetime_from_epoch_ms(ts_ms))
    assert isinstance(verdict, Rejection), verdict
    assert verdict.reason == EXPECTED_REASON[kind], verdict.detail


def test_fleet_poison_is_labelled_rejected_and_does_not_consume_seq() -> None:
    fleet = Fleet(30, 5, start=START, poison_rate=0.05)
    records = fleet.tick(fleet.start_ms + 600_000 - 1)
    labels = [label for label in fleet.finish() if isinstance(label, PoisonLabel)]
    poison = [r for r in records if r.poison is not None]
    assert len(poison) == len(labels) == sum(fleet.poison_sent.values()) > 100
    assert {r.poison for r in poison} == {kind.value for kind in PoisonKind}
    by_reason: Counter[str] = Counter()
    for record, label in zip(poison, labels, strict=True):
        assert record.partition_key == label.partition_key == label.device_id
        assert record.poison == label.kind
        verdict = decode_reading(record.data, arrival=datetime_from_epoch_ms(record.ts_ms))
        assert isinstance(verdict, Rejection)
        assert verdict.reason.value == label.expected_reason
        by_reason[verdict.reason.value] += 1
    assert sum(by_reason.values()) == len(labels)
    # Readings keep a gap-free seq per device: poison took none.
    seqs: dict[str, list[int]] = {}
    for record in records:
        if record.poison is None:
            seqs.setdefault(record.partition_key, []).append(record.seq)
    assert all(s == list(range(len(s))) for s in seqs.values())


def test_poison_does_not_change_the_readings() -> None:
    clean = Fleet(30, 5, start=START).tick(START.replace(minute=5))
    dirty = Fleet(30, 5, start=START, poison_rate=0.05).tick(START.replace(minute=5))
    assert [r.data for r in dirty if r.poison is None] == [r.data for r in clean]


def test_counts_and_labels_cover_only_records_handed_out() -> None:
    """generate(count) may stop between a reading and its poison record, or in the
    middle of a burst: whatever is held back is neither counted nor labelled."""
    fleet = Fleet(10, 5, start=START, poison_rate=0.3, anomaly_rate=0.05)
    records: list = []
    for size in (7, 3, 11, 1, 5) * 40:
        records += fleet.generate(size)
    labels = fleet.finish()
    poison = [r for r in records if r.poison is not None]
    poison_labels = [label for label in labels if isinstance(label, PoisonLabel)]
    assert len(poison) == len(poison_labels) == sum(fleet.poison_sent.values())
    assert [(r.partition_key, r.seq) for r in poison] == [
        (label.device_id, label.seq) for label in poison_labels
    ]
    sent = {(r.partition_key, r.seq) for r in records if r.poison is None}
    for label in labels:
        if not isinstance(label, PoisonLabel) and label.anomaly != "silent":
            assert all(
                (label.device_id, seq) in sent for seq in range(label.start_seq, label.end_seq + 1)
            ), label
