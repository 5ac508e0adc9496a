"""Locust's Kinesis protocol adapter: a client timing PutRecords, and a User.

In the style of ``locust/contrib/postgres.py``: :class:`KinesisClient` times one
operation and fires ``events.request``; :class:`KinesisUser` is an abstract User
that owns a client and a slice of the simulated fleet.

What is fired (names shared with :mod:`simulator.load.summary`):

* ``PutRecords`` / <stream>: once per call; ``response_length`` = records in the
  call; a failure only when the call as a whole failed (throttled, connection
  refused, ...).
* ``PutRecords.failed-record`` / <stream>: one **failure** per record Kinesis
  refused, its ``ErrorCode`` as the error (so locust_failures.csv counts refused
  records by code), and one per record of a call that failed as a whole.

Why two rows: a PutRecords call answers 200 with ``FailedRecordCount`` > 0, and
the AWS Kinesis Data Generator and the Locust-for-Kinesis sample count such a call
as fully sent. Here the call row keeps the call's timing honest, and the
failed-record row counts every lost record. Locust's *Aggregated* fail ratio mixes
calls and records (it over-states a record fail ratio, never hides one); the
campaign's verdict uses records: refused / attempted (summary.json).

Retries: botocore's own retries are off (``max_attempts=1``), so a throttled call
surfaces. Entry-level retries are the simulator's one producer's
(:class:`simulator.kinesis_producer.KinesisProducer`, its batching and jittered
back-off reused as is; the events come from its ``on_call`` hook); ``retries=0`` by
default, so a refused record is a failed record. With ``retries=N`` each refusal is
still a failure event and a re-sent record counts once per attempt.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, ClassVar, Final

import gevent
from locust import User, task
from locust.exception import StopUser

from simulator.aws_client import kinesis_client
from simulator.backoff import Backoff
from simulator.fleet import Fleet, SimRecord
from simulator.kinesis_producer import (
    MAX_RECORDS_PER_CALL,
    KinesisProducer,
    PutOutcome,
    PutRecordsCall,
    StreamRefused,
)
from simulator.load.producer_role import PRODUCER_ROLE_ENV
from simulator.load.slices import SliceAllocator, skip_backlog
from simulator.load.summary import FAILED_RECORD, PUT_RECORDS

log = logging.getLogger(__name__)

#: Seconds a user accumulates due readings before a call (the KPL's default
#: RecordMaxBufferedTime is 100 ms): one call per interval instead of one per reading.
DEFAULT_BATCH_INTERVAL_S: Final = 0.1


class RequestEvents:
    """The producer's ``on_call`` hook: fires the request events described in the
    module docstring for each PutRecords call."""

    def __init__(self, stream: str, request_event: Any) -> None:
        self.stream = stream
        self._request_event = request_event

    def __call__(self, call: PutRecordsCall) -> None:
        self._fire(PUT_RECORDS, call.elapsed_ms, call.entries, call.error)
        for code in call.refused_codes:
            self._fire(FAILED_RECORD, call.elapsed_ms, 0, code)

    def _fire(self, request_type: str, ms: float, length: int, error: str | None) -> None:
        self._request_event.fire(
            request_type=request_type,
            name=self.stream,
            response_time=ms,
            response_length=length,
            exception=error,
            context={},
        )


class KinesisUser(User):
    """Sends its slice of the fleet in real time: every ``batch_interval_s`` it
    takes the readings due (``fleet.tick(now)``, at most 500) and puts them in one
    call; when the slice is behind (more than a call's worth due) it sends at once.

    Subclasses set :attr:`stream_name` and implement :meth:`slices` (the process's
    :class:`SliceAllocator`); :meth:`before_send` sees each batch and
    :meth:`after_send` what became of it.
    """

    abstract = True
    stream_name: ClassVar[str] = ""
    batch_interval_s: ClassVar[float] = DEFAULT_BATCH_INTERVAL_S
    retries: ClassVar[int] = 0

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.producer = KinesisProducer(
            self.stream_name,
            # Made after gevent's monkey-patching (Locust patches on import), so its
            # sockets are cooperative; botocore retries off: we count failures.
            kinesis_client(
                max_attempts=1,
                max_pool_connections=2,
                role_arn=os.environ.get(PRODUCER_ROLE_ENV) or None,
            ),
            backoff=Backoff(max_attempts=1 + self.retries),
            sleep=gevent.sleep,
            on_call=RequestEvents(self.stream_name, environment.events.request),
        )
        self.slot: int | None = None
        self.fleet: Fleet | None = None
        self._behind = False
        self._next_call = 0.0

    def slices(self) -> SliceAllocator:
        raise NotImplementedError

    def on_start(self) -> None:
        self.slot, self.fleet = self.slices().acquire()
        skip_backlog(self.fleet, int(time.time() * 1000), pause=lambda: gevent.sleep(0))
        self._next_call = time.monotonic()

    def on_stop(self) -> None:
        if self.slot is not None:
            self.slices().release(self.slot)
            self.slot = None

    def wait_time(self) -> float:
        if self._behind:
            return 0.0
        return max(0.0, self._next_call - time.monotonic())

    @task
    def send_due(self) -> None:
        assert self.fleet is not None
        self._next_call = time.monotonic() + self.batch_interval_s
        records = self.fleet.tick(int(time.time() * 1000), limit=MAX_RECORDS_PER_CALL)
        self._behind = len(records) >= MAX_RECORDS_PER_CALL
        if not records:
            return
        self.before_send(records)
        try:
            outcome = self.producer.put(records)
        except StreamRefused as exc:
            # Missing stream, access denied: no retry helps; stop the whole run.
            log.error("stopping the campaign: %s", exc)
            self.environment.process_exit_code = 2
            runner = self.environment.runner
            if runner is not None:
                gevent.spawn(runner.quit)
            raise StopUser() from exc
        self.after_send(outcome)

    def before_send(self, records: list[SimRecord]) -> None:
        """Hook: called with each batch before it is sent (the campaign samples here)."""

    def after_send(self, outcome: PutOutcome[SimRecord]) -> None:
        """Hook: what became of the batch (the campaign follows accepted records)."""
