"""The API answers raw readings from the Redis window only when the window proves the
answer complete (api/recent_window.py); every other case is left to PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from api.recent_window import WindowReading, parse_members, readings_in_range

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _window(seqs: list[int], boot: int = 0) -> list[WindowReading]:
    return [WindowReading(T0 + timedelta(seconds=s), boot, s, float(s), None) for s in seqs]


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_contiguous_window_covering_the_range_answers_it() -> None:
    window = _window(list(range(10, 20)))
    found = readings_in_range(window, (_at(19), 19), _at(12), _at(15))
    assert found is not None and [r.seq for r in found] == [12, 13, 14]


def test_a_range_reaching_before_the_window_is_not_answered() -> None:
    window = _window(list(range(10, 20)))
    assert readings_in_range(window, (_at(19), 19), _at(10), _at(15)) is None
    assert readings_in_range(window, (_at(19), 19), _at(5), _at(15)) is None


def test_a_missing_seq_anywhere_after_the_start_is_not_answered() -> None:
    """A hole after the range still matters: it shows the window missed readings."""
    window = _window([10, 11, 12, 13, 15, 16])
    assert readings_in_range(window, (_at(16), 16), _at(11), _at(13)) is None


def test_a_window_behind_the_latest_reading_is_not_answered() -> None:
    window = _window(list(range(10, 20)))
    assert readings_in_range(window, (_at(21), 21), _at(12), _at(15)) is None


def test_a_restart_inside_the_window_is_not_answered() -> None:
    window = [
        *_window([10, 11, 12]),
        WindowReading(_at(13), 1, 0, 0.0, None),
        WindowReading(_at(14), 1, 1, 0.0, None),
    ]
    assert readings_in_range(window, (_at(14), 1), _at(11), _at(15)) is None


def test_an_empty_range_inside_a_proven_window_is_an_empty_answer() -> None:
    window = _window(list(range(10, 21)))
    between = _at(15) + timedelta(milliseconds=1)
    assert readings_in_range(window, (_at(20), 20), between, _at(16)) == []


def test_members_parse_in_event_time_order_and_an_old_format_refuses() -> None:
    members = [
        json.dumps({"boot": 0, "seq": 2, "ts": _at(2).isoformat(), "value": 2.0, "status": None}),
        json.dumps({"boot": 0, "seq": 1, "ts": _at(1).isoformat(), "value": None, "status": "ok"}),
    ]
    parsed = parse_members(members)
    assert parsed is not None and [(r.seq, r.value, r.status) for r in parsed] == [
        (1, None, "ok"),
        (2, 2.0, None),
    ]
    without_boot = json.dumps({"seq": 3, "ts": _at(3).isoformat(), "value": 1.0, "status": None})
    assert parse_members([*members, without_boot]) is None
    assert parse_members(["not json"]) is None
