"""One GetRecords batch of one shard -> a :class:`ProcessedBatch` ready to commit.

Every record ends in exactly one place: an accepted reading, a dead letter (with
its full payload and reason, so a poison record never stalls the shard), or — for
a producer retry that repeats a reading exactly inside the batch — nowhere (the
first copy wins; the database's ``ON CONFLICT DO NOTHING`` covers the copies that
arrive in different batches). Two readings of the batch with the same key,
``(device_id, boot, seq, event day)``, but different payloads both stay: only the
store knows which one matches what is already stored, and it dead-letters the other
as ``seq_conflict`` (issue 10 item 4).

The row helpers turn the batch into tuples in the column orders defined once in
:mod:`processor.contract.storage`, which the PostgreSQL store feeds to ``COPY``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from processor.contract.record import (
    DEFAULT_LIMITS,
    Reading,
    Rejection,
    ValidationLimits,
    decode_reading,
)
from processor.core.detection import DetectorBank, load_states
from processor.core.model import (
    AcceptedReading,
    Anomaly,
    DeadLetter,
    KinesisRecord,
    ProcessedBatch,
)

#: Given device ids with no detector state in memory, return their saved states
#: (``None`` when there is none): the adapter's Redis MGET.
StateLoader = Callable[[Sequence[str]], Mapping[str, bytes | None]]


def validate_records(
    records: Sequence[KinesisRecord],
    limits: ValidationLimits = DEFAULT_LIMITS,
    shard_end: bool = False,
    *,
    shard_id: str | None = None,
) -> ProcessedBatch:
    """Decode and validate; no detection. ``shard_id`` names the shard of an empty
    batch (a shard that ends with no records still has to be marked finished)."""
    sid = shard_id if shard_id is not None else (records[0].shard_id if records else "")
    batch = ProcessedBatch(shard_id=sid, shard_end=shard_end)
    readings = batch.readings
    dead = batch.dead_letters
    seen: set[Reading] = set()
    for record in records:
        result = decode_reading(record.data, arrival=record.arrival, limits=limits)
        if isinstance(result, Reading):
            if result in seen:  # an exact re-send: same reading, other Kinesis record
                continue
            seen.add(result)
            readings.append(
                AcceptedReading(result, record.shard_id, record.sequence_number, record.arrival)
            )
        else:
            dead.append(_dead_letter(record, result))
    if records:
        batch.checkpoint = records[-1].sequence_number
    return batch


def _dead_letter(record: KinesisRecord, rejection: Rejection) -> DeadLetter:
    return DeadLetter(
        shard_id=record.shard_id,
        sequence_number=record.sequence_number,
        partition_key=record.partition_key,
        data=record.data,
        reason=rejection.reason,
        detail=rejection.detail,
        arrival=record.arrival,
    )


def detect_batch(
    batch: ProcessedBatch, detectors: DetectorBank, state_loader: StateLoader | None = None
) -> None:
    """Run the detectors over the batch's readings (in shard order), appending to
    ``batch.anomalies``. With a ``state_loader``, devices the bank has never seen
    get their saved state first, in one call, so a new shard owner keeps baselines."""
    if state_loader is not None and batch.readings:
        unknown = detectors.missing(a.reading.device_id for a in batch.readings)
        if unknown:
            load_states(detectors, state_loader(unknown))
    out = batch.anomalies
    observe = detectors.observe_into
    for accepted in batch.readings:
        observe(accepted.reading, out, arrival=accepted.arrival, shard_id=accepted.shard_id)


def process_records(
    records: Sequence[KinesisRecord],
    detectors: DetectorBank,
    limits: ValidationLimits = DEFAULT_LIMITS,
    shard_end: bool = False,
    *,
    shard_id: str | None = None,
    state_loader: StateLoader | None = None,
) -> ProcessedBatch:
    """Validate a batch, run the detectors, and set the checkpoint to the last
    record's sequence number (dead letters and duplicates included: they are
    handled once they are stored)."""
    batch = validate_records(records, limits, shard_end, shard_id=shard_id)
    detect_batch(batch, detectors, state_loader)
    return batch


#: ``(device_id, boot, seq, anomaly_type, event time)``: an anomaly as the store
#: reports it stored (the type as its value).
AnomalyIdentity = tuple[str, int, int, str, datetime]


def anomaly_identity(anomaly: Anomaly) -> AnomalyIdentity:
    return (anomaly.device_id, anomaly.boot, anomaly.seq, anomaly.anomaly_type.value, anomaly.ts)


def committed_part(
    batch: ProcessedBatch,
    stored_keys: Collection[tuple[str, int]],
    stored_sequence_numbers: Collection[str],
    stored_anomalies: Collection[AnomalyIdentity],
) -> ProcessedBatch:
    """The part of a committed ``batch`` that PostgreSQL actually stored: what Redis
    may show (issue 10 item 5).

    A reading the database did not insert (a replay, or a record repeating a stored
    key) must not reach Redis: with a newer event time it would win the latest-reading
    compare-and-set, and reconciliation from PostgreSQL could never take it back.
    Readings are matched by their Kinesis sequence number, which identifies the record
    even when a device's ``seq`` repeats. Anomalies are exactly those the store says it
    stored (``stored_anomalies``, from its ``INSERT ... RETURNING``): the store decides
    which verdicts count (those of newly stored readings, delayed verdicts about a
    reading of an earlier batch, ``silent`` ones), and Redis's anomaly stream can never
    show one that ``tap.anomalies`` lacks (a delayed SPIKE or DRIFT did: the stream
    had it, the table did not). ``stored_keys`` is kept for the callers.
    """
    readings = [a for a in batch.readings if a.sequence_number in stored_sequence_numbers]
    anomalies = [an for an in batch.anomalies if anomaly_identity(an) in stored_anomalies]
    if len(readings) == len(batch.readings) and len(anomalies) == len(batch.anomalies):
        return batch
    return ProcessedBatch(
        shard_id=batch.shard_id,
        readings=readings,
        dead_letters=batch.dead_letters,
        anomalies=anomalies,
        checkpoint=batch.checkpoint,
        shard_end=batch.shard_end,
    )


# -- COPY rows ------------------------------------------------------------------------


def reading_rows(batch: ProcessedBatch, processed_at: datetime) -> list[tuple[Any, ...]]:
    """Rows in :data:`~processor.contract.storage.READINGS_COPY_COLUMNS` order."""
    rows = []
    for a in batch.readings:
        r = a.reading
        rows.append(
            (
                r.device_id,
                r.seq,
                r.facility,
                r.line,
                r.sensor_type.value,
                r.value,
                None if r.status is None else r.status.value,
                r.unit,
                r.ts,
                a.arrival,
                processed_at,
                a.shard_id,
                a.sequence_number,
                r.schema_version,
                r.series,
            )
        )
    return rows


def anomaly_rows(batch: ProcessedBatch, detected_at: datetime) -> list[tuple[Any, ...]]:
    """Rows in :data:`~processor.contract.storage.ANOMALIES_COPY_COLUMNS` order."""
    return [
        (
            an.device_id,
            an.seq,
            an.anomaly_type.value,
            an.severity.value,
            an.score,
            an.explanation,
            an.ts,
            detected_at,
            an.sensor_type,
            an.value,
            an.boot,
        )
        for an in batch.anomalies
    ]


def _text(value: str) -> str:
    """PostgreSQL ``text`` holds no NUL; a hostile partition key may."""
    return value.replace("\x00", "\\x00") if "\x00" in value else value


def dead_letter_rows(batch: ProcessedBatch, received_at: datetime) -> list[tuple[Any, ...]]:
    """Rows in :data:`~processor.contract.storage.DEAD_LETTERS_COPY_COLUMNS` order;
    ``payload`` is the raw bytes (``bytea``)."""
    return [
        (
            d.shard_id,
            d.sequence_number,
            _text(d.partition_key),
            d.data,
            d.reason.value,
            d.detail,
            d.arrival,
            received_at,
        )
        for d in batch.dead_letters
    ]
