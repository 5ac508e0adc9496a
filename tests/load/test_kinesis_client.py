"""The Locust user's request events come from the producer's ``on_call`` hook: one
event per call and one failure per refused record, through the same producer (and
retries) as the simulator's KinesisSink."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from simulator.backoff import Backoff
from simulator.fleet import Fleet
from simulator.kinesis_producer import KinesisProducer
from simulator.load.kinesis_user import RequestEvents
from simulator.load.summary import FAILED_RECORD, PUT_RECORDS
from simulator.sinks import KinesisSink

pytestmark = pytest.mark.load


class Events:
    def __init__(self) -> None:
        self.fired: list[dict[str, Any]] = []

    def fire(self, **kwargs: Any) -> None:
        self.fired.append(kwargs)

    def of(self, request_type: str) -> list[dict[str, Any]]:
        return [e for e in self.fired if e["request_type"] == request_type]


class StubKinesis:
    """Refuses the entries whose index is in ``refuse`` on the first call only."""

    def __init__(self, refuse: set[int] = frozenset(), error: Exception | None = None) -> None:
        self.refuse = set(refuse)
        self.error = error
        self.calls: list[list[dict[str, Any]]] = []

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        entries = kwargs["Records"]
        self.calls.append(entries)
        if self.error is not None:
            raise self.error
        refuse, self.refuse = self.refuse, set()
        results = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
            if i in refuse
            else {"ShardId": "shardId-000000000000", "SequenceNumber": str(i)}
            for i in range(len(entries))
        ]
        return {"FailedRecordCount": len(refuse), "Records": results}


def producer(events: Events, stub: StubKinesis, retries: int = 0) -> KinesisProducer:
    return KinesisProducer(
        "s",
        stub,
        backoff=Backoff(max_attempts=1 + retries),
        sleep=lambda _: None,
        on_call=RequestEvents("s", events),
    )


def records(n: int) -> list[Any]:
    return Fleet(devices=5, seed=1).generate(n)


def test_one_event_per_call_with_the_record_count() -> None:
    events = Events()
    producer(events, StubKinesis()).put(records(7))
    (call,) = events.fired
    assert call["request_type"] == PUT_RECORDS
    assert call["name"] == "s"
    assert call["response_length"] == 7
    assert call["exception"] is None
    assert call["response_time"] >= 0


def test_each_refused_record_is_a_failure_with_its_error_code() -> None:
    events = Events()
    outcome = producer(events, StubKinesis(refuse={1, 4})).put(records(5))
    (call,) = events.of(PUT_RECORDS)
    assert call["exception"] is None  # the call itself answered
    failed = events.of(FAILED_RECORD)
    assert len(failed) == 2
    assert {e["exception"] for e in failed} == {"ProvisionedThroughputExceededException"}
    assert (len(outcome.accepted), len(outcome.failed)) == (3, 2)


def test_a_failed_call_fails_every_record() -> None:
    events = Events()
    error = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}},
        "PutRecords",
    )
    outcome = producer(events, StubKinesis(error=error)).put(records(3))
    (call,) = events.of(PUT_RECORDS)
    assert call["exception"].startswith("ProvisionedThroughputExceededException")
    assert call["response_length"] == 3
    assert len(events.of(FAILED_RECORD)) == 3
    assert len(outcome.failed) == 3 and not outcome.accepted


def test_connection_errors_are_named_by_class() -> None:
    events = Events()
    error = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    producer(events, StubKinesis(error=error)).put(records(2))
    assert {e["exception"] for e in events.of(FAILED_RECORD)} == {"EndpointConnectionError"}


@pytest.mark.parametrize(("retries", "failed_events", "calls"), [(0, 2, 1), (2, 2, 2)])
def test_through_the_simulator_sink(retries: int, failed_events: int, calls: int) -> None:
    events = Events()
    stub = StubKinesis(refuse={0, 3})
    sink = KinesisSink("s", client=stub, max_attempts=1 + retries, sleep=lambda _: None)
    sink.producer.on_call = RequestEvents("s", events)
    sink.send(records(10))
    sink.flush()
    assert len(stub.calls) == calls
    assert len(events.of(FAILED_RECORD)) == failed_events
    assert sum(e["response_length"] for e in events.of(PUT_RECORDS)) == 10 + (calls - 1) * 2
    # Without retries the refused records are given up on; with them, re-sent once.
    assert sink.stats.failed == (2 if retries == 0 else 0)
    assert sink.stats.sent == (8 if retries == 0 else 10)
