"""Bounds of every API query: page sizes and time ranges (issue 13: "limits on range
and page size; no query can scan the whole readings table").

Each bound says why it is what it is; the HTTP layer refuses anything beyond them
with a 422 naming the parameter.
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Final

from processor.redis_cache import CacheLimits

_CACHE: Final = CacheLimits()

#: How far back a device counts as known: the processor's last-seen horizon (7 days),
#: after which it leaves the cache's device set; PostgreSQL fallbacks use the same
#: horizon, so both sources list the same devices and read at most 8 daily partitions.
DEVICE_HORIZON: Final = timedelta(seconds=_CACHE.last_seen_horizon_s)

#: Devices per page of ``GET /devices``: a plant's line is tens of devices, a board
#: page a few hundred; 1,000 keeps one pipelined Redis call well under a millisecond
#: per device and the JSON under ~300 kB.
DEVICE_PAGE_DEFAULT: Final = 500
DEVICE_PAGE_MAX: Final = 1_000

#: Raw readings per page: a day of a 1 Hz sensor is 86,400 rows; pages of at most
#: 10,000 with a cursor keep one response under ~1 MB.
RAW_PAGE_DEFAULT: Final = 1_000
RAW_PAGE_MAX: Final = 10_000

#: Anomalies per page, and how far back they may be asked for (the table is not
#: partitioned; its event_ts index bounds the scan to the range).
ANOMALY_PAGE_DEFAULT: Final = 200
ANOMALY_PAGE_MAX: Final = 1_000
ANOMALY_LOOKBACK_MAX: Final = timedelta(days=31)
ANOMALY_LOOKBACK_DEFAULT: Final = timedelta(hours=24)

#: Dead-letter summary: hours of the last week (168 rows per reason at most).
DEAD_LETTER_LOOKBACK_MAX: Final = timedelta(days=7)
DEAD_LETTER_LOOKBACK_DEFAULT: Final = timedelta(hours=24)


class Bucket(enum.StrEnum):
    """Width of the time buckets of ``GET /devices/{id}/readings``."""

    MINUTE = "1m"
    HOUR = "1h"
    DAY = "1d"

    @property
    def width(self) -> timedelta:
        return {
            Bucket.MINUTE: timedelta(minutes=1),
            Bucket.HOUR: timedelta(hours=1),
            Bucket.DAY: timedelta(days=1),
        }[self]


#: Longest range per request: raw readings one day (the readings of one daily
#: partition or two); buckets at most ~10,000 points (a week of minutes, a quarter
#: of hours, two years of days), what a chart can draw.
RAW_RANGE_MAX: Final = timedelta(days=1)
BUCKET_RANGE_MAX: Final[dict[Bucket, timedelta]] = {
    Bucket.MINUTE: timedelta(days=7),
    Bucket.HOUR: timedelta(days=92),
    Bucket.DAY: timedelta(days=731),
}
#: Default range when ``from`` is not given.
READINGS_RANGE_DEFAULT: Final = timedelta(hours=1)

#: PostgreSQL connections one API process keeps and uses at most: queries beyond it
#: wait for one (``ReadSide.query``) instead of each opening a connection of its own.
#: A login is a process fork and a TLS handshake on the server; before this bound, 40
#: concurrent readers of a line's board opened 26 new sessions for 120 requests
#: (``tests/integration/test_api.py::test_concurrent_readers_reuse_the_apis_connections``).
#: 8 is the number of idle connections the pool already kept.
POSTGRES_CONNECTIONS: Final = 8
