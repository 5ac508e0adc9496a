"""Kinesis edge of the processor: shard discovery and one polling reader per shard.

The client is a plain boto3 client with the standard retry mode. Its endpoint is
never set in code: boto3 reads ``AWS_ENDPOINT_URL_KINESIS`` (or ``AWS_ENDPOINT_URL``)
from the environment, which is how tests point it at kinesalite, so the code path
under test is the one that runs in AWS.

A :class:`ShardReader` is used by one thread and assumes the worker's rhythm:
``fetch()`` a batch, commit it, ``fetch()`` the next. So the last sequence number
it returned is the last checkpoint once the next ``fetch()`` starts, and an
expired iterator is re-created from there (``AFTER_SEQUENCE_NUMBER``) with no gap
and no replay beyond what PostgreSQL's ``ON CONFLICT`` absorbs anyway.

Rate: Kinesis allows 5 GetRecords calls per second per shard (one every 200 ms),
shared by every consumer of the shard. The reader waits ``poll_interval`` between
calls and polls again after only the 200 ms floor when the shard is behind
(``MillisBehindLatest > 0``) and the last batch was full.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from processor import client_timeouts
from processor.contract.environment import ProcessorSettings
from processor.core.backoff import Backoff, Jitter
from processor.core.leases import ShardInfo
from processor.core.model import KinesisRecord

log = logging.getLogger(__name__)

#: Kinesis's per-shard read limit is 5 GetRecords calls per second.
MIN_CALL_GAP_S: Final = 0.2
#: Back-off bounds for throttling and transient errors (full jitter in between).
BACKOFF_BASE_S: Final = 0.2
BACKOFF_MAX_S: Final = 5.0

#: Errors after which the same call is worth retrying later.
_TRANSIENT_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "InternalFailure",
        "InternalFailureException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ThrottlingException",
        "KMSThrottlingException",
    }
)


def make_kinesis_client(region: str) -> Any:
    """A boto3 Kinesis client; endpoint from the environment only (see module doc)."""
    config = Config(
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": client_timeouts.AWS_MAX_ATTEMPTS},
        connect_timeout=client_timeouts.AWS_CONNECT_TIMEOUT_S,
        read_timeout=client_timeouts.KINESIS_READ_TIMEOUT_S,
        # One connection per reader thread plus the lease thread's ListShards.
        max_pool_connections=64,
    )
    return boto3.session.Session().client("kinesis", config=config)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one GetRecords round gave for one shard."""

    records: list[KinesisRecord]
    millis_behind_latest: int
    #: The shard is closed and every record was returned: commit with shard_end.
    shard_end: bool
    #: Wall-clock time (epoch s) the reply came: with ``millis_behind_latest``, how
    #: far the shard was read at that moment (the silence detector's clock).
    received_at: float | None = None


class KinesisError(RuntimeError):
    """A Kinesis call failed in a way retrying the same call will not fix."""


#: The processor's back-off policy (:mod:`processor.core.backoff`) for Kinesis calls.
KINESIS_BACKOFF: Final = Backoff(BACKOFF_BASE_S, BACKOFF_MAX_S, Jitter.UPPER_THREE_QUARTERS)


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential back-off with jitter: uniform in [c/4, c], c = min(max, base * 2**attempt).

    The jitter spreads the retries of the readers that a throttled stream slowed down
    together; the floor keeps a retry from landing inside the same 200 ms window."""
    return KINESIS_BACKOFF.delay(attempt, rng or random)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class KinesisSource:
    """Shard discovery and reader factory for one stream."""

    def __init__(self, settings: ProcessorSettings, client: Any | None = None) -> None:
        self.settings = settings
        self.stream_name = settings.stream_name
        self.client = client if client is not None else make_kinesis_client(settings.aws_region)

    def list_shards(self) -> list[ShardInfo]:
        """Every shard of the stream, open and closed, following NextToken pages."""
        shards: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            page = self.client.list_shards(**kwargs)
            for raw in page.get("Shards", []):
                rng = raw.get("SequenceNumberRange", {})
                hashes = raw.get("HashKeyRange", {})
                hash_range = None
                if "StartingHashKey" in hashes and "EndingHashKey" in hashes:
                    hash_range = (int(hashes["StartingHashKey"]), int(hashes["EndingHashKey"]))
                shards.append(
                    ShardInfo(
                        shard_id=raw["ShardId"],
                        parent_shard_ids=tuple(
                            p
                            for p in (raw.get("ParentShardId"), raw.get("AdjacentParentShardId"))
                            if p
                        ),
                        adjacent_parent_shard_id=raw.get("AdjacentParentShardId"),
                        starting_sequence_number=rng.get("StartingSequenceNumber", ""),
                        ending_sequence_number=rng.get("EndingSequenceNumber"),
                        hash_key_range=hash_range,
                    )
                )
            token = page.get("NextToken")
            if not token:
                return shards
            # With NextToken the API refuses StreamName.
            kwargs = {"NextToken": token}

    def reader(
        self,
        shard_id: str,
        checkpoint: str | None,
        *,
        stop: threading.Event | None = None,
        initial_position: str | None = None,
    ) -> ShardReader:
        """A reader from ``checkpoint``, or without one from ``initial_position``
        (default: the configured one; the worker passes
        :func:`processor.core.leases.start_position`)."""
        return ShardReader(
            client=self.client,
            stream_name=self.stream_name,
            shard_id=shard_id,
            checkpoint=checkpoint,
            initial_position=initial_position or self.settings.initial_position,
            limit=self.settings.get_records_limit,
            poll_interval_s=self.settings.poll_interval_ms / 1000.0,
            stop=stop,
        )


class ShardReader:
    """Polls one shard. Not thread-safe: one reader thread owns it."""

    def __init__(
        self,
        *,
        client: Any,
        stream_name: str,
        shard_id: str,
        checkpoint: str | None,
        initial_position: str = "TRIM_HORIZON",
        limit: int = 1000,
        poll_interval_s: float = 0.2,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.stream_name = stream_name
        self.shard_id = shard_id
        self.initial_position = initial_position
        self.limit = limit
        # Never faster than the service allows, whatever the configuration says.
        self.poll_interval_s = max(poll_interval_s, MIN_CALL_GAP_S)
        self.stop = stop or threading.Event()
        self._clock = clock
        #: Last sequence number handed out (== last checkpoint when fetch() is called).
        self.position: str | None = checkpoint
        self.millis_behind_latest: int = 0
        self.finished = False
        self._iterator: str | None = None
        self._next_call_at = 0.0
        self._attempt = 0
        self.throttled = 0
        self.calls = 0

    # -- iterator ---------------------------------------------------------------

    def _new_iterator(self) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": self.shard_id}
        if self.position is not None:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["StartingSequenceNumber"] = self.position
        else:
            kwargs["ShardIteratorType"] = self.initial_position
        iterator: str = self.client.get_shard_iterator(**kwargs)["ShardIterator"]
        return iterator

    # -- polling ----------------------------------------------------------------

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until ``deadline``; False when asked to stop meanwhile."""
        delay = deadline - self._clock()
        if delay > 0:
            return not self.stop.wait(delay)
        return not self.stop.is_set()

    def fetch(self) -> FetchResult | None:
        """One GetRecords call at the next allowed time.

        Returns None when asked to stop before the call was made. Transient
        failures are retried here with back-off, so a result is either records
        (possibly none), or the end of the shard.
        """
        if self.finished:
            return FetchResult([], 0, shard_end=True)
        while True:
            if not self._wait_until(self._next_call_at):
                return None
            try:
                if self._iterator is None:
                    self._iterator = self._new_iterator()
                started = self._clock()
                response = self.client.get_records(ShardIterator=self._iterator, Limit=self.limit)
                self.calls += 1
            except ClientError as exc:
                code = _error_code(exc)
                if code == "ExpiredIteratorException":
                    # Iterators live 5 minutes; long back-off (PostgreSQL down) outlives them.
                    log.info("shard iterator expired; reopening", extra={"shard_id": self.shard_id})
                    self._iterator = None
                    self._next_call_at = self._clock() + MIN_CALL_GAP_S
                    continue
                if code in _TRANSIENT_CODES:
                    if code == "ProvisionedThroughputExceededException":
                        self.throttled += 1
                    self._back_off(code)
                    continue
                raise KinesisError(f"{code} on shard {self.shard_id}: {exc}") from exc
            except BotoCoreError as exc:
                # Connection reset, endpoint unreachable, read timeout: retry later.
                self._back_off(type(exc).__name__)
                continue
            self._attempt = 0
            return self._consume(response, started)

    def _back_off(self, reason: str) -> None:
        delay = backoff_delay(self._attempt)
        self._attempt += 1
        log.warning(
            "GetRecords back-off",
            extra={"shard_id": self.shard_id, "reason": reason, "delay_s": round(delay, 3)},
        )
        self._next_call_at = self._clock() + max(delay, MIN_CALL_GAP_S)

    def _consume(self, response: dict[str, Any], started: float) -> FetchResult:
        raw_records = response.get("Records", [])
        self.millis_behind_latest = int(response.get("MillisBehindLatest", 0) or 0)
        records = [self._convert(raw) for raw in raw_records]
        if records:
            self.position = records[-1].sequence_number
        next_iterator = response.get("NextShardIterator")
        self._iterator = next_iterator
        behind_and_full = self.millis_behind_latest > 0 and len(raw_records) >= self.limit
        gap = MIN_CALL_GAP_S if behind_and_full else self.poll_interval_s
        self._next_call_at = started + gap
        shard_end = next_iterator is None
        if shard_end:
            self.finished = True
        return FetchResult(records, self.millis_behind_latest, shard_end, time.time())

    def _convert(self, raw: dict[str, Any]) -> KinesisRecord:
        arrival = raw.get("ApproximateArrivalTimestamp")
        if isinstance(arrival, datetime):
            arrival = (
                arrival.replace(tzinfo=UTC) if arrival.tzinfo is None else arrival.astimezone(UTC)
            )
        elif isinstance(arrival, int | float):
            arrival = datetime.fromtimestamp(float(arrival), UTC)
        else:
            # Kinesis always sets it; an emulator that does not must not crash us.
            arrival = datetime.now(UTC)
        return KinesisRecord(
            shard_id=self.shard_id,
            sequence_number=raw["SequenceNumber"],
            partition_key=raw.get("PartitionKey", ""),
            data=bytes(raw.get("Data", b"")),
            arrival=arrival,
        )

    def records(self) -> Iterator[FetchResult]:
        """Fetch until stopped or the shard ends (convenience for tests and tools)."""
        while True:
            result = self.fetch()
            if result is None:
                return
            yield result
            if result.shard_end:
                return
