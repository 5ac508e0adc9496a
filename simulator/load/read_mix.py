"""What a campaign's read users ask the API (``tap api``), and how often: pure, no Locust.

The read user (:mod:`simulator.load.api_user`) draws each request from a
:class:`ReadPlanner`; this module holds the paths, the request names Locust reports
them under (one place, shared with :mod:`simulator.load.read_summary`), and the mixes.

Mixes (weights per 100 requests; why in the comments of :data:`MIX_WEIGHTS`):

``board``  what an open plant board and its device pages cause: line boards polled
           every few seconds, device tiles refreshed, charts of the last hour and raw
           last minutes, the anomaly list. The SSE stream is extra (long-lived
           listeners, :mod:`simulator.load.sse_listener`), not a request of the mix.
``goals``  the read benchmark's (issue 13 goals): ``/devices/{id}/latest`` and a
           line's board (``/devices?facility&line``), each asked in equal shares from
           the cache and with ``?source=postgres`` (cache bypassed), interleaved by
           the same users, so both are measured in the same run under the same load.

Devices and lines come from the campaign's fleet definition (the writers' devices,
seed and size), so reads hit devices the writers write. A device page is only opened
for a device a board has shown (:meth:`ReadPlanner.saw`): a device the writers have
not reached yet is not on any board, exactly as for a person at the board.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlencode

from simulator.plant import DeviceSpec, build_devices

#: The API paths the read side requests (OpenAPI path templates). A unit test checks
#: each is a GET route of ``api.app`` (the simulator may not import the API).
DEVICES_PATH: Final = "/devices"
LATEST_PATH: Final = "/devices/{device_id}/latest"
READINGS_PATH: Final = "/devices/{device_id}/readings"
ANOMALIES_PATH: Final = "/anomalies"
STREAM_PATH: Final = "/anomalies/stream"
HEALTH_PATH: Final = "/health/ready"
REQUESTED_PATHS: Final = (
    DEVICES_PATH,
    LATEST_PATH,
    READINGS_PATH,
    ANOMALIES_PATH,
    STREAM_PATH,
    HEALTH_PATH,
)
#: Query parameters the read side sends, per path (checked against the schema too).
REQUESTED_PARAMETERS: Final[Mapping[str, frozenset[str]]] = {
    DEVICES_PATH: frozenset({"facility", "line", "limit", "source"}),
    LATEST_PATH: frozenset({"source"}),
    READINGS_PATH: frozenset({"from", "to", "bucket"}),
    ANOMALIES_PATH: frozenset({"facility", "line", "since"}),
}

#: Locust request type of the read users (FastHttpUser's own).
READ_REQUEST_TYPE: Final = "GET"
#: Locust request type and name of the anomaly stream's delay events.
STREAM_REQUEST_TYPE: Final = "SSE"
STREAM_NAME: Final = "anomaly->stream"

#: A line's devices fit one page (12 machines x 3 sensors); the API's page maximum.
BOARD_PAGE: Final = 1_000


class ReadKind(enum.StrEnum):
    """One kind of read request; its value is the name Locust reports it under."""

    BOARD = "/devices?facility&line"
    BOARD_POSTGRES = "/devices?facility&line&source=postgres"
    LATEST = "/devices/{id}/latest"
    LATEST_POSTGRES = "/devices/{id}/latest?source=postgres"
    HISTORY = "/devices/{id}/readings?bucket=1m (1 h)"
    HISTORY_RAW = "/devices/{id}/readings (raw, 5 min)"
    ANOMALIES = "/anomalies?facility&line"

    @property
    def bypasses_cache(self) -> bool:
        return self in (ReadKind.BOARD_POSTGRES, ReadKind.LATEST_POSTGRES)

    @property
    def needs_device(self) -> bool:
        return self not in (ReadKind.BOARD, ReadKind.BOARD_POSTGRES, ReadKind.ANOMALIES)


class ReadMix(enum.StrEnum):
    BOARD = "board"
    GOALS = "goals"


MIX_WEIGHTS: Final[Mapping[ReadMix, Mapping[ReadKind, int]]] = {
    ReadMix.BOARD: {
        # Each open board re-reads its line every few seconds: most of the traffic.
        ReadKind.BOARD: 55,
        # Device tiles and device pages ask one device's latest value.
        ReadKind.LATEST: 20,
        # A device page's chart (last hour, 1-minute buckets) when it is opened.
        ReadKind.HISTORY: 8,
        # Someone looks at the raw readings of the last minutes of a device.
        ReadKind.HISTORY_RAW: 4,
        # The anomaly list of a line (the stream keeps it live; the list on open).
        ReadKind.ANOMALIES: 13,
    },
    ReadMix.GOALS: {
        ReadKind.LATEST: 1,
        ReadKind.LATEST_POSTGRES: 1,
        ReadKind.BOARD: 1,
        ReadKind.BOARD_POSTGRES: 1,
    },
}


@dataclass(frozen=True, slots=True)
class ReadRequest:
    kind: ReadKind
    #: Path with its query string, ready for the HTTP client.
    url: str
    device_id: str | None = None

    @property
    def name(self) -> str:
        return self.kind.value


@dataclass(frozen=True, slots=True)
class Board:
    facility: str
    line: str


def fleet_boards(devices: Iterable[DeviceSpec]) -> tuple[list[Board], frozenset[str]]:
    """The lines (boards) of a fleet and its device ids."""
    boards: dict[tuple[str, str], Board] = {}
    ids: set[str] = set()
    for spec in devices:
        boards.setdefault((spec.facility, spec.line), Board(spec.facility, spec.line))
        ids.add(spec.device_id)
    return list(boards.values()), frozenset(ids)


class ReadPlanner:
    """Draws read requests of a mix over a fleet's lines and the devices seen on them."""

    def __init__(self, devices: int, seed: int, mix: ReadMix, rng: random.Random) -> None:
        specs = build_devices(seed, range(devices))
        self.boards, self.device_ids = fleet_boards(specs)
        self.mix = mix
        self.rng = rng
        weights = MIX_WEIGHTS[mix]
        self._kinds = list(weights)
        self._weights = [weights[k] for k in self._kinds]
        #: Device ids a board answer has shown (only those get a device page).
        self.seen: list[str] = []
        self._seen_set: set[str] = set()

    def saw(self, device_ids: Iterable[str]) -> list[str]:
        """Remember devices a board showed; returns those not in the fleet (a bug)."""
        strangers = []
        for device_id in device_ids:
            if device_id not in self.device_ids:
                strangers.append(device_id)
            elif device_id not in self._seen_set:
                self._seen_set.add(device_id)
                self.seen.append(device_id)
        return strangers

    def next(self, now: datetime | None = None) -> ReadRequest:
        kind = self.rng.choices(self._kinds, self._weights)[0]
        if kind.needs_device and not self.seen:
            # No board has shown a device yet: open a board first.
            kind = ReadKind.BOARD_POSTGRES if kind.bypasses_cache else ReadKind.BOARD
        return self.request(kind, now or datetime.now(UTC))

    def request(self, kind: ReadKind, now: datetime) -> ReadRequest:
        board = self.rng.choice(self.boards)
        if kind in (ReadKind.BOARD, ReadKind.BOARD_POSTGRES):
            query = {"facility": board.facility, "line": board.line, "limit": BOARD_PAGE}
            if kind.bypasses_cache:
                query["source"] = "postgres"
            return ReadRequest(kind, f"{DEVICES_PATH}?{urlencode(query)}")
        if kind is ReadKind.ANOMALIES:
            since = (now - timedelta(hours=1)).isoformat()
            query = {"facility": board.facility, "line": board.line, "since": since}
            return ReadRequest(kind, f"{ANOMALIES_PATH}?{urlencode(query)}")
        device_id = self.rng.choice(self.seen)
        if kind in (ReadKind.LATEST, ReadKind.LATEST_POSTGRES):
            url = LATEST_PATH.format(device_id=device_id)
            if kind.bypasses_cache:
                url += "?source=postgres"
            return ReadRequest(kind, url, device_id)
        span, extra = (
            (timedelta(hours=1), {"bucket": "1m"})
            if kind is ReadKind.HISTORY
            else (timedelta(minutes=5), {})
        )
        query = {"from": (now - span).isoformat(), "to": now.isoformat(), **extra}
        return ReadRequest(
            kind, f"{READINGS_PATH.format(device_id=device_id)}?{urlencode(query)}", device_id
        )
