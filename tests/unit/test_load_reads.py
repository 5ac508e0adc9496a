"""The read side of a campaign without Locust or servers: the mixes, the planner over
the writers' fleet, SSE parsing and the stream delay, the read summary and verdict,
and the Locust command line of read-only and mixed campaigns."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from simulator.load import cli
from simulator.load.read_mix import (
    MIX_WEIGHTS,
    ReadKind,
    ReadMix,
    ReadPlanner,
)
from simulator.load.read_summary import ReadThresholds, merge_sources, summarize_reads
from simulator.load.shapes import ShapeName, ShapePlan
from simulator.load.sse_listener import event_delay_ms, parse_events
from simulator.plant import build_devices

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def planner(mix: ReadMix = ReadMix.BOARD, devices: int = 300) -> ReadPlanner:
    return ReadPlanner(devices, 7, mix, random.Random(1))


def test_boards_are_the_fleets_lines_and_device_pages_wait_for_a_board() -> None:
    p = planner()
    fleet = build_devices(7, range(300))
    assert {(b.facility, b.line) for b in p.boards} == {(d.facility, d.line) for d in fleet}
    # Before any board answered, no device is asked (no device page to open yet).
    first = [p.next(NOW) for _ in range(50)]
    assert {r.kind for r in first} == {ReadKind.BOARD, ReadKind.ANOMALIES}
    assert all(r.device_id is None for r in first)
    for r in first:
        query = parse_qs(urlsplit(r.url).query)
        assert (query["facility"][0], query["line"][0]) in {(b.facility, b.line) for b in p.boards}


def test_device_requests_ask_devices_a_board_showed_and_strangers_are_reported() -> None:
    p = planner()
    shown = [d.device_id for d in build_devices(7, range(0, 30))]
    assert p.saw([*shown, "fac99-l01-m01-temperature-0"]) == ["fac99-l01-m01-temperature-0"]
    requests = [p.next(NOW) for _ in range(2000)]
    with_device = [r for r in requests if r.device_id is not None]
    assert with_device and {r.device_id for r in with_device} <= set(shown)
    counts = Counter(r.kind for r in requests)
    weights = MIX_WEIGHTS[ReadMix.BOARD]
    for kind, weight in weights.items():  # the documented mix, within sampling noise
        share = counts[kind] / len(requests)
        assert abs(share - weight / sum(weights.values())) < 0.04, (kind, share)
    history = next(r for r in requests if r.kind is ReadKind.HISTORY)
    query = parse_qs(urlsplit(history.url).query)
    assert query["bucket"] == ["1m"]
    span = datetime.fromisoformat(query["to"][0]) - datetime.fromisoformat(query["from"][0])
    assert span == timedelta(hours=1)


def test_goals_mix_asks_cache_and_postgres_in_equal_shares() -> None:
    p = planner(ReadMix.GOALS)
    p.saw(d.device_id for d in build_devices(7, range(300)))
    requests = [p.next(NOW) for _ in range(4000)]
    counts = Counter(r.kind for r in requests)
    assert set(counts) == {
        ReadKind.LATEST,
        ReadKind.LATEST_POSTGRES,
        ReadKind.BOARD,
        ReadKind.BOARD_POSTGRES,
    }
    assert all(abs(c / 4000 - 0.25) < 0.03 for c in counts.values()), counts
    for r in requests:
        bypassed = parse_qs(urlsplit(r.url).query).get("source") == ["postgres"]
        assert bypassed == r.kind.bypasses_cache, r


def test_sse_events_are_parsed_across_chunks_and_comments_skipped() -> None:
    data = json.dumps({"device_id": "d1", "ts": "2026-11-30T12:00:00+00:00"})
    stream = f"retry: 2000\n\n: keep-alive\n\nid: 1-0\nevent: anomaly\ndata: {data}\n\nid: 2-0\nev"
    events, rest = parse_events(stream)
    assert [(e.event, e.id) for e in events] == [("anomaly", "1-0")]
    assert json.loads(events[0].data)["device_id"] == "d1"
    more, rest = parse_events(rest + "ent: anomaly\r\ndata: {}\r\n\r\n")
    assert [(e.event, e.id, e.data) for e in more] == [("anomaly", "2-0", "{}")]
    assert rest == ""


def test_stream_delay_is_arrival_minus_the_readings_event_time() -> None:
    data = json.dumps({"ts": "2026-11-30T12:00:00.250000+00:00"})
    arrived = datetime(2026, 11, 30, 12, 0, 1, tzinfo=UTC).timestamp()
    assert event_delay_ms(data, arrived) == pytest.approx(750.0)
    with pytest.raises(ValueError, match="time zone"):
        event_delay_ms(json.dumps({"ts": "2026-11-30T12:00:00"}), arrived)


def stats_row(
    type_: str, name: str, count: int, failures: int = 0, p99: str = "9"
) -> dict[str, str]:
    return {
        "Type": type_,
        "Name": name,
        "Request Count": str(count),
        "Failure Count": str(failures),
        "50%": "2",
        "95%": "5",
        "99%": p99,
        "Max Response Time": "12.5",
    }


def test_read_summary_per_endpoint_and_verdict(tmp_path: Path) -> None:
    for i, counts in enumerate(({"redis/hit": 3}, {"redis/hit": 2, "postgres/bypassed": 4})):
        document = {"answered_from": {"/devices/{id}/latest": counts},
                    "fleet_devices_seen_on_boards": 10 + i}  # fmt: skip
        (tmp_path / f"s{i}.json").write_text(json.dumps(document))
    sources = merge_sources(sorted(tmp_path.glob("*.json")))
    assert sources == {
        "answered_from": {"/devices/{id}/latest": {"redis/hit": 5, "postgres/bypassed": 4}},
        "fleet_devices_seen_on_boards": 11,
    }
    rows = [
        stats_row("PutRecords", "s", 100),
        stats_row("GET", ReadKind.LATEST.value, 90),
        stats_row("GET", ReadKind.BOARD.value, 10, failures=1),
        stats_row("SSE", "anomaly->stream", 4, p99="1500"),
    ]
    reads, reasons = summarize_reads(
        rows, duration_s=10, sources=sources, thresholds=ReadThresholds(0.05, 1000)
    )
    assert reads["requests"] == 100 and reads["failures"] == 1
    assert reads["requests_per_s"] == 10.0
    assert set(reads["endpoints"]) == {ReadKind.LATEST.value, ReadKind.BOARD.value}
    assert reads["endpoints"][ReadKind.LATEST.value]["p99"] == 9.0
    assert reads["stream"]["anomaly->stream"]["count"] == 4
    assert reasons == ["anomaly->stream: p99 1500 ms > 1000 ms"]
    _, reasons = summarize_reads(rows, duration_s=10, sources={}, thresholds=ReadThresholds(0.001))
    assert reasons == ["reads: fail ratio 1.0000% > 0.1000% (1 of 100 requests)"]
    _, reasons = summarize_reads([], duration_s=10, sources={}, thresholds=ReadThresholds())
    assert reasons == ["reads: no read request was made"]


def argv_of(*extra: str) -> list[str]:
    args = cli._parser().parse_args(["--report", "r", *extra])
    if args.sse_listeners is None:
        args.sse_listeners = 2 if args.readers > 0 else 0
    plan = ShapePlan(ShapeName.RAMP, users=2, duration_s=10)
    return cli.locust_argv(args, plan, Path("r"), 30.0)


def test_locust_runs_the_user_classes_of_the_campaign() -> None:
    assert argv_of()[-1] == "FleetUser"
    mixed = argv_of("--readers", "4", "--read-rate", "40", "--read-mix", "goals")
    assert mixed[-2:] == ["FleetUser", "ReaderUser"]
    assert mixed[mixed.index("--tap-read-mix") + 1] == "goals"
    assert mixed[mixed.index("--tap-sse-listeners") + 1] == "2"
    read_only = argv_of("--readers", "4", "--read-only")
    assert read_only[-1] == "ReaderUser" and "FleetUser" not in read_only
    assert "--tap-read-only" in read_only


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--read-only"], "--read-only needs --readers"),
        (["--readers", "2", "--read-rate", "0"], "--read-rate must be positive"),
        (["--readers", "-1"], "must not be negative"),
    ],
)
def test_bad_read_options_are_refused(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--report", str(tmp_path / "r"), *extra]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_readers_without_an_api_url_are_refused_before_locust(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target.json"
    target.write_text(json.dumps({"kind": "local", "stream_name": "s", "region": "eu-west-2"}))
    code = cli.main(["--target", str(target), "--readers", "2", "--report", str(tmp_path / "r")])
    assert code == cli.EXIT_USAGE
    assert "need the read API" in capsys.readouterr().err


def test_report_png_series_include_each_read_endpoint_and_the_stream() -> None:
    from simulator.load.report import history_series

    rows = [
        {"Timestamp": str(t), "Type": type_, "Name": name, "50%": "2", "99%": "9"}
        for t in (100, 101)
        for type_, name in (("GET", ReadKind.LATEST.value), ("SSE", "anomaly->stream"))
    ]
    series = history_series(rows)
    assert series[f"read:{ReadKind.LATEST.value}"].t == [0.0, 1.0]
    assert series["read:anomaly->stream"].values["p99"] == [9.0, 9.0]
