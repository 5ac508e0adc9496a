"""Locust's read user: a FastHttpUser asking ``tap api`` what boards and device pages ask.

Each request is drawn from the campaign's mix (:mod:`simulator.load.read_mix`) and
reported under its kind's name (``/devices/{id}/latest``, ...), so
``locust_stats.csv`` has p50/p95/p99 per endpoint beside the writers' rows. The
user's pace is ``constant_throughput``: ``--read-rate`` requests/s shared by the
``--readers`` users (a user behind its pace does not catch up in bursts).

A request fails (Locust failure event) on a non-2xx answer, on an answer that is
not JSON, and when a board lists a device the fleet does not have (reads must hit
the writers' devices). Which store answered (``source``/``cache`` of the JSON) is
counted per request kind and written by the campaign beside Locust's CSV
(:data:`SOURCES_SUFFIX`), so a report can show the cache served what it should.

Against a deployed API behind the load balancer's OIDC authentication every request
carries the session cookie or bearer token of the environment
(:mod:`simulator.load.api_auth`: ``TAP_API_SESSION_COOKIE``, ``TAP_API_BEARER_TOKEN``).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from typing import Any, ClassVar, Final

from locust import constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

from simulator.load.api_auth import auth_headers
from simulator.load.read_mix import ReadKind, ReadMix, ReadPlanner

#: ``<csv prefix><suffix>``: the answered-from counts of one Locust process.
SOURCES_SUFFIX: Final = "_read_sources{worker}.json"


class ReaderUser(FastHttpUser):
    """Reads of one simulated board user. Configured by the campaign at init (class
    attributes: Locust creates users with the environment only)."""

    #: Requests/s of one user; the campaign sets ``--read-rate / --readers``.
    rate_per_user: ClassVar[float] = 1.0
    devices: ClassVar[int] = 1000
    seed: ClassVar[int] = 7
    mix: ClassVar[ReadMix] = ReadMix.BOARD
    #: (kind, source, cache) -> answers, for this process.
    answered: ClassVar[Counter[tuple[str, str, str]]] = Counter()
    #: Device ids of the fleet the boards showed (a process-wide union).
    devices_seen: ClassVar[set[str]] = set()
    _instances: ClassVar[int] = 0

    # A slow answer is a latency (it counts in the percentiles), a stalled API a
    # failure: generous enough for a loaded 2-core machine, short of a hang.
    connection_timeout = 10.0
    network_timeout = 30.0

    def wait_time(self) -> float:
        return constant_throughput(self.rate_per_user)(self)

    def __init__(self, environment: Any) -> None:
        cls = type(self)
        if cls.default_headers is None:
            # FastHttpUser sends default_headers with every request of its client.
            cls.default_headers = auth_headers(os.environ)
        super().__init__(environment)
        cls._instances += 1
        self.planner = ReadPlanner(
            self.devices, self.seed, self.mix, random.Random(self.seed * 7919 + cls._instances)
        )

    @task
    def read(self) -> None:
        request = self.planner.next()
        # No redirects: behind OIDC a 302 is the login page, a failed read.
        with self.client.get(
            request.url, name=request.name, catch_response=True, allow_redirects=False
        ) as response:
            if response.status_code == 0:  # no answer: timeout, refused, reset
                response.failure(f"no answer: {response.error!r}")
                return
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                body = json.loads(response.text or "")
            except ValueError:
                response.failure("answer is not JSON")
                return
            self._count(request.kind, body)
            if request.kind in (ReadKind.BOARD, ReadKind.BOARD_POSTGRES):
                ids = [d["device_id"] for d in body.get("devices", [])]
                strangers = self.planner.saw(ids)
                self.devices_seen.update(i for i in ids if i not in strangers)
                if strangers:
                    response.failure(f"board lists devices not in the fleet: {strangers[:3]}")
                    return
            response.success()

    def _count(self, kind: ReadKind, body: dict[str, Any]) -> None:
        source = body.get("source")
        if source is not None:
            self.answered[(kind.value, str(source), str(body.get("cache")))] += 1


def sources_document(answered: Counter[tuple[str, str, str]], devices_seen: int) -> dict[str, Any]:
    """What the campaign writes per process: answers per kind, source and cache state."""
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, source, cache), count in sorted(answered.items()):
        by_kind.setdefault(kind, {})[f"{source}/{cache}"] = count
    return {"answered_from": by_kind, "fleet_devices_seen_on_boards": devices_seen}
