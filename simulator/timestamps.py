"""Event timestamps as the contract writes them, formatted from integer epoch ms.

Readings carry ``ts`` the way ``msgspec`` encodes a UTC ``datetime``:
``2026-11-26T17:00:00.120000Z`` (microseconds, or no fraction at all on a whole
second), so a record built here is byte-identical to
``encode_reading(Reading(...))``. Building a ``datetime`` per reading costs more
than the rest of a reading together; the date-and-time part changes once a
second, so it is cached per second and only the milliseconds are formatted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

_CACHE_LIMIT: Final = 65_536
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)
_second_text: dict[int, str] = {}


def iso_from_epoch_ms(ts_ms: int) -> str:
    """``ts_ms`` (epoch milliseconds, UTC) as the contract's ISO 8601 text."""
    second, millis = divmod(ts_ms, 1000)
    text = _second_text.get(second)
    if text is None:
        if len(_second_text) >= _CACHE_LIMIT:
            _second_text.clear()
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text[second] = text
    if millis:
        return f"{text}.{millis:03d}000Z"
    return text + "Z"


def epoch_ms(moment: datetime) -> int:
    """A tz-aware datetime as epoch milliseconds (sub-millisecond part dropped)."""
    if moment.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return (moment - _EPOCH) // _ONE_MS


def datetime_from_epoch_ms(ts_ms: int) -> datetime:
    """Epoch milliseconds as a tz-aware UTC datetime (exact, no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ts_ms)
