"""Long-lived listeners of the API's anomaly stream (``GET /anomalies/stream``, SSE).

Each listener holds one connection, as an open board does, and for every ``anomaly``
event fires one Locust request event ``SSE`` / ``anomaly->stream`` whose response
time is the delay from the anomaly's reading's event time (the event's ``ts``) to
the event's arrival here: the issue 13 goal "an anomaly appears on the board's
stream <= 1 s (p99) after its reading's event time". A dropped connection is one
failure event and the listener reconnects with ``Last-Event-ID`` (nothing skipped).

The delay compares two clocks (the simulator's, which stamps ``ts``, and this
process's): on one machine they are the same clock; against a deployed stack the
load host must be NTP-synchronised, as the writers' end-to-end figures assume too.

Parsing is pure (:func:`parse_events`, :func:`event_delay_ms`); the greenlets use
urllib3 (patched by gevent in the Locust process), not the users' HTTP client, so a
stream never holds a user. They send the same credentials as the read users
(:mod:`simulator.load.api_auth`) to a deployed API behind OIDC.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from simulator.load.api_auth import auth_headers
from simulator.load.read_mix import STREAM_NAME, STREAM_PATH, STREAM_REQUEST_TYPE

log = logging.getLogger(__name__)

#: Seconds between reconnects after a failed connection.
RECONNECT_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None


def parse_events(buffer: str) -> tuple[list[SseEvent], str]:
    """Complete events of ``buffer`` (blocks ended by a blank line) and the rest.

    Comment lines (``: keep-alive``) and ``retry:`` are skipped; an event without an
    ``event:`` field is a ``message`` (the SSE default)."""
    text = buffer.replace("\r\n", "\n")
    *blocks, rest = text.split("\n\n")
    events: list[SseEvent] = []
    for block in blocks:
        name, data, event_id = "message", [], None
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
            elif key == "id":
                event_id = value
        if data:
            events.append(SseEvent(name, "\n".join(data), event_id))
    return events, rest


def event_delay_ms(data: str, arrived_s: float) -> float:
    """Delay (ms) from the anomaly's ``ts`` (its reading's event time) to ``arrived_s``
    (epoch seconds). Raises ValueError for an event without a time-zoned ``ts``."""
    fields: dict[str, Any] = json.loads(data)
    ts = datetime.fromisoformat(str(fields["ts"]))
    if ts.tzinfo is None:
        raise ValueError(f"anomaly event ts without time zone: {fields['ts']!r}")
    return (arrived_s - ts.timestamp()) * 1000.0


@dataclass(slots=True)
class ListenerCounts:
    events: int = 0
    connections: int = 0
    failures: int = 0
    device_ids: set[str] = field(default_factory=set)


class AnomalyStreamListener:
    """``count`` greenlets each holding one SSE connection to ``base_url``."""

    def __init__(
        self,
        request_event: Any,
        base_url: str,
        *,
        count: int,
        clock: Callable[[], float] = time.time,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._event = request_event
        #: Credentials for a deployed API (default: from the environment).
        self.headers = dict(auth_headers(os.environ) if headers is None else headers)
        self.url = base_url.rstrip("/") + STREAM_PATH
        self.count = count
        self.clock = clock
        self.counts = ListenerCounts()
        self._greenlets: list[Any] = []
        self._stopping = False

    def start(self) -> None:
        import gevent

        self._greenlets = [gevent.spawn(self._run, i) for i in range(self.count)]

    def stop(self) -> None:
        import gevent

        self._stopping = True
        gevent.killall(self._greenlets, timeout=5)
        self._greenlets = []

    def _fire(self, ms: float, error: str | None, length: int = 0) -> None:
        self._event.fire(
            request_type=STREAM_REQUEST_TYPE,
            name=STREAM_NAME,
            response_time=ms,
            response_length=length,
            exception=error,
            context={},
        )

    def _run(self, index: int) -> None:
        import gevent
        import urllib3

        http = urllib3.PoolManager(
            num_pools=1, timeout=urllib3.Timeout(connect=5, read=60), retries=False
        )
        last_id: str | None = None
        while not self._stopping:
            headers = {**self.headers, "Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            started = time.perf_counter()
            try:
                # No redirects: behind OIDC, a 302 is the identity provider's login page.
                response = http.request(
                    "GET", self.url, headers=headers, preload_content=False, redirect=False
                )
                if response.status != 200:
                    raise ConnectionError(f"HTTP {response.status}")
                self.counts.connections += 1
                buffer = ""
                for chunk in response.stream(4096):
                    buffer += chunk.decode()
                    events, buffer = parse_events(buffer)
                    arrived = self.clock()
                    for event in events:
                        last_id = event.id or last_id
                        if event.event == "anomaly":
                            self._record(event, arrived)
                    if self._stopping:
                        return
                raise ConnectionError("stream closed by the server")
            except gevent.GreenletExit:
                return
            except Exception as exc:
                if self._stopping:
                    return
                self.counts.failures += 1
                elapsed_ms = (time.perf_counter() - started) * 1000.0
                self._fire(elapsed_ms, f"listener {index}: {type(exc).__name__}: {exc}")
                gevent.sleep(RECONNECT_S)

    def _record(self, event: SseEvent, arrived: float) -> None:
        try:
            delay = event_delay_ms(event.data, arrived)
            device_id = json.loads(event.data).get("device_id")
        except (ValueError, KeyError, TypeError) as exc:
            self._fire(0.0, f"unreadable anomaly event: {exc}")
            return
        self.counts.events += 1
        if device_id:
            self.counts.device_ids.add(str(device_id))
        self._fire(max(0.0, delay), None, len(event.data))
