"""The one Kinesis producer of the simulator, the harness and the Locust campaign.

PutRecords in calls of at most 500 records and 5 MiB (data plus partition keys, as
the service counts); a record over 1 MiB is refused here, alone, since Kinesis
would refuse the whole call for it. Only the entries that come back with an
``ErrorCode`` are re-sent, after the jittered back-off of :mod:`simulator.backoff`;
what is still refused after the last attempt is reported per entry, never counted
as sent. That is the part the AWS Kinesis Data Generator and the Locust-for-Kinesis
sample get wrong: both count a call's failed entries as sent.

Users: :class:`simulator.sinks.KinesisSink` (``tap simulate``), the harness's
``local_pipeline.verify.put_records`` and :class:`simulator.load.kinesis_user.KinesisUser`,
whose Locust request events come from the ``on_call`` hook (one
:class:`PutRecordsCall` per call, timed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar

from simulator.backoff import Backoff

MAX_RECORDS_PER_CALL: Final = 500
MAX_BYTES_PER_CALL: Final = 5 * 1024 * 1024
MAX_RECORD_BYTES: Final = 1024 * 1024  # Kinesis's own limit for data + partition key
#: The error code of a record refused here for being over :data:`MAX_RECORD_BYTES`.
RECORD_TOO_LARGE: Final = "RecordTooLarge"

#: Whole-call errors that no retry can fix: stop and say so instead of counting
#: every record of the run as failed.
FATAL_ERROR_CODES: Final = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "ValidationException",
        "InvalidArgumentException",
        "UnrecognizedClientException",
        "KMSAccessDeniedException",
        "KMSNotFoundException",
        "KMSDisabledException",
    }
)


class Entry(Protocol):
    """What the producer sends: a simulator ``SimRecord``, a harness ``Record``."""

    @property
    def data(self) -> bytes: ...

    @property
    def partition_key(self) -> str: ...


E = TypeVar("E", bound=Entry)


def entry_size(entry: Entry) -> int:
    """The bytes Kinesis counts against its limits: data plus partition key."""
    return len(entry.data) + len(entry.partition_key.encode())


def plan_batches(entries: Sequence[E]) -> Iterator[list[E]]:
    """Split entries into PutRecords calls of at most 500 records and 5 MiB."""
    batch: list[E] = []
    batch_bytes = 0
    for entry in entries:
        size = entry_size(entry)
        if batch and (
            len(batch) >= MAX_RECORDS_PER_CALL or batch_bytes + size > MAX_BYTES_PER_CALL
        ):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(entry)
        batch_bytes += size
    if batch:
        yield batch


@dataclass(frozen=True, slots=True)
class PutRecordsCall:
    """One PutRecords call, as the ``on_call`` hook sees it."""

    stream: str
    #: Entries in the call.
    entries: int
    elapsed_ms: float
    #: The call failed as a whole: ``"<code>: <message>"`` (None: it answered).
    error: str | None
    #: One code per entry that was not stored: Kinesis's ``ErrorCode`` of each
    #: refused entry, or the call's error code for every entry of a failed call.
    refused_codes: tuple[str, ...]


@dataclass(slots=True)
class PutOutcome(Generic[E]):
    """What became of the entries of one :meth:`KinesisProducer.put`."""

    #: (entry, shard id) of every entry Kinesis stored.
    accepted: list[tuple[E, str]] = field(default_factory=list)
    #: (entry, error code) of every entry given up on after the last attempt.
    failed: list[tuple[E, str]] = field(default_factory=list)
    #: Re-sends: one entry sent three times adds 2.
    retried: int = 0
    #: Calls that answered (a call that failed as a whole is not counted).
    calls: int = 0


class StreamRefused(RuntimeError):
    """The stream refused a call as a whole for a reason no retry fixes (missing
    stream, no access). ``outcome`` holds what was stored before; ``refused`` the
    entries of the refused call."""

    def __init__(self, message: str, code: str, outcome: PutOutcome[Any], refused: int) -> None:
        super().__init__(message)
        self.code = code
        self.outcome = outcome
        self.refused = refused


def error_code(exc: BaseException) -> str:
    """A botocore error's code (``ClientError``), else the exception's class name."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


class KinesisProducer:
    """PutRecords with re-sends of only the refused entries and honest outcomes.

    ``pace(n)`` is called before every call with its entry count (a token bucket);
    ``on_call`` after every call, answered or failed.
    """

    def __init__(
        self,
        stream: str,
        client: Any,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pace: Callable[[int], object] | None = None,
        on_call: Callable[[PutRecordsCall], None] | None = None,
    ) -> None:
        self.stream = stream
        # A stream ARN goes in StreamARN (cross-account, or when names are ambiguous).
        self._stream_arg = {"StreamARN" if stream.startswith("arn:") else "StreamName": stream}
        self.client = client
        self.backoff = backoff if backoff is not None else Backoff()
        self._sleep = sleep
        self._pace = pace
        self.on_call = on_call

    def put(self, entries: Sequence[E]) -> PutOutcome[E]:
        """Send ``entries`` in as few calls as the limits allow; raises
        :class:`StreamRefused` when the stream refuses a call as a whole."""
        outcome: PutOutcome[E] = PutOutcome()
        sendable: list[E] = []
        for entry in entries:
            if entry_size(entry) > MAX_RECORD_BYTES:
                outcome.failed.append((entry, RECORD_TOO_LARGE))
            else:
                sendable.append(entry)
        for batch in plan_batches(sendable):
            self._put_batch(batch, outcome)
        return outcome

    def _put_batch(self, batch: list[E], outcome: PutOutcome[E]) -> None:
        pending: list[tuple[E, str]] = [(entry, "") for entry in batch]

        def send_pending() -> list[tuple[E, str]]:
            nonlocal pending
            pending = self._call([entry for entry, _ in pending], outcome)
            return pending

        def count_resend(_: Any) -> None:
            outcome.retried += len(pending)

        retrying = self.backoff.retrying(again=bool, sleep=self._sleep, before_sleep=count_resend)
        outcome.failed += retrying(send_pending)

    def _call(self, entries: list[E], outcome: PutOutcome[E]) -> list[tuple[E, str]]:
        """One PutRecords call; returns the (entry, code) pairs not stored."""
        from botocore.exceptions import BotoCoreError, ClientError

        if self._pace is not None:
            self._pace(len(entries))
        started = time.perf_counter()
        try:
            response = self.client.put_records(
                Records=[{"Data": e.data, "PartitionKey": e.partition_key} for e in entries],
                **self._stream_arg,
            )
        except (ClientError, BotoCoreError) as exc:  # throttled, refused, unreachable
            code = error_code(exc)
            self._report(entries, started, f"{code}: {exc}", (code,) * len(entries))
            if code in FATAL_ERROR_CODES:
                raise StreamRefused(
                    f"Kinesis stream {self.stream!r}: {code}: {exc}", code, outcome, len(entries)
                ) from exc
            return [(entry, code) for entry in entries]
        outcome.calls += 1
        refused: list[tuple[E, str]] = []
        for entry, result in zip(entries, response["Records"], strict=True):
            if "ErrorCode" in result:
                refused.append((entry, str(result["ErrorCode"])))
            else:
                outcome.accepted.append((entry, str(result.get("ShardId", ""))))
        self._report(entries, started, None, tuple(code for _, code in refused))
        return refused

    def _report(
        self, entries: list[E], started: float, error: str | None, refused: tuple[str, ...]
    ) -> None:
        if self.on_call is None:
            return
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.on_call(PutRecordsCall(self.stream, len(entries), elapsed_ms, error, refused))
