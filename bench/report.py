"""The short table ``tap bench`` prints after its JSON: one line per figure, its
reference or goal, and whether the goal is met."""

from __future__ import annotations

import sys
from typing import IO, Any

from rich.console import Console
from rich.table import Table


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text}{unit}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, reference / goal, verdict) for every figure present."""
    out: list[tuple[str, str, str, str]] = []
    t = results.get("throughput")
    if t and "error" not in t:
        out += [
            ("throughput records/s", _num(t["records_per_s"]), "", ""),
            (
                "  vs COPY limit",
                _num(t["ratio_vs_copy"], "x"),
                f"COPY {_num(t['copy_limit_records_per_s'])}/s; goal >= 0.5x",
                _verdict(t["ratio_vs_copy"] >= t["goal_ratio_vs_copy"]),
            ),
            (
                "  vs naive",
                _num(t["ratio_vs_naive"], "x"),
                f"naive {_num(t['naive_records_per_s'])}/s; goal >= 20x",
                _verdict(t["ratio_vs_naive"] >= t["goal_ratio_vs_naive"]),
            ),
        ]
    lat = results.get("latency")
    if lat and "error" not in lat:
        for step in lat["steps"]:
            pg, rd = step["event_to_postgres"], step["event_to_redis"]
            out.append(
                (
                    f"latency @ {_num(step['offered_records_per_s'])}/s",
                    f"PG p50/p95/p99 {_num(pg['p50_ms'])}/{_num(pg['p95_ms'])}/"
                    f"{_num(pg['p99_ms'])} ms",
                    f"Redis p50/p99 {_num(rd['p50_ms'])}/{_num(rd['p99_ms'])} ms; goal p99 <= 1 s",
                    "broken" if step["broken"] else "held",
                )
            )
    h = results.get("handoff")
    if h and "error" not in h:
        out += [
            (
                "SIGTERM handoff",
                _num(h["sigterm_handoff_s"], " s"),
                f"max {_num(h['sigterm_handoff_max_s'])} s; goal < 1 s",
                _verdict(h["sigterm_handoff_max_s"] < h["goal_sigterm_s"]),
            ),
            (
                "kill -9 takeover",
                _num(h["kill_takeover_s"], " s"),
                f"max {_num(h['kill_takeover_max_s'])} s; goal <= {_num(h['goal_kill_s'])} s",
                _verdict(h["kill_takeover_max_s"] <= h["goal_kill_s"]),
            ),
        ]
    s = results.get("scale")
    if s and "error" not in s:
        out.append(
            (
                "scale records/s (1 -> 2 processes)",
                f"{_num(s['records_per_s_1_process'])} -> {_num(s['records_per_s_2_processes'])}",
                f"x{_num(s['speedup_2_vs_1'])} on {results['machine']['nproc']} cores",
                "",
            )
        )
    tool = results.get("tooling")
    if tool and "error" not in tool:
        labels = {"synth_s": "synth", "unit_suite_s": "unit suite", "make_test_s": "make test"}
        for key, label in labels.items():
            if key in tool:
                out.append((label, _num(tool[key], " s"), "", ""))
    r = results.get("reads")
    if r and "error" not in r:
        g = r["goals"]
        out += [
            (
                "reads: load reached",
                f"{_num(r['writes_per_s'])} w/s, {_num(r['reads_per_s'])} r/s",
                f"offered {_num(r['offered_writes_per_s'])} w/s, "
                f"{_num(r['offered_reads_per_s'])} r/s",
                "",
            ),
            (
                "  latest p50/p99 (cache)",
                f"{_num(r['latest_p50_ms'])}/{_num(r['latest_p99_ms'])} ms",
                f"postgres {_num(r['latest_postgres_p50_ms'])}/{_num(r['latest_postgres_p99_ms'])}"
                f" ms (x{_num(r['latest_ratio_p99'])}); goal p99 <= {_num(g['latest_p99_ms'])} ms",
                _verdict(
                    r["latest_p99_ms"] is not None and r["latest_p99_ms"] <= g["latest_p99_ms"]
                ),
            ),
            (
                "  line board p50/p99 (cache)",
                f"{_num(r['board_p50_ms'])}/{_num(r['board_p99_ms'])} ms",
                f"postgres {_num(r['board_postgres_p50_ms'])}/{_num(r['board_postgres_p99_ms'])}"
                f" ms (x{_num(r['board_ratio_p99'])}); goal p99 <= {_num(g['board_p99_ms'])} ms",
                _verdict(r["board_p99_ms"] is not None and r["board_p99_ms"] <= g["board_p99_ms"]),
            ),
            (
                "  anomaly -> stream p50/p99",
                f"{_num(r['stream_p50_ms'])}/{_num(r['stream_p99_ms'])} ms",
                f"{r['stream_events']} events; goal p99 <= {_num(g['stream_p99_ms'])} ms",
                # Reads alone write no anomaly: the stream goal does not apply.
                "n/a (reads alone)"
                if r["offered_writes_per_s"] == 0
                else _verdict(
                    r["stream_p99_ms"] is not None and r["stream_p99_ms"] <= g["stream_p99_ms"]
                ),
            ),
        ]
        if "latest_api_cpu_ms" in r:
            out += [
                (
                    "  API CPU per request: latest",
                    f"{_num(r['latest_api_cpu_ms'])} ms",
                    f"postgres {_num(r['latest_postgres_api_cpu_ms'])} ms (sequential, after)",
                    "",
                ),
                (
                    "  API CPU per request: line board",
                    f"{_num(r['board_api_cpu_ms'])} ms",
                    f"postgres {_num(r['board_postgres_api_cpu_ms'])} ms (sequential, after)",
                    "",
                ),
            ]
        out += _cpu_budget_rows(r.get("cpu_budget"))
    for name in ("throughput", "latency", "handoff", "scale", "tooling", "reads"):
        r = results.get(name)
        if r and "error" in r:
            out.append((name, "ERROR", r["error"][:60], ""))
    return out


def _cpu_budget_rows(cpu: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """The reads benchmark's CPU budget (bench/cpu_budget.py): cores per component."""
    if not cpu:
        return []
    projected = cpu.get("projected_cores_at_offered_load", {})
    out = [
        (
            "  CPU budget: cores used, all components",
            f"{_num(cpu['total_cores'])} of {cpu['machine_cores']}",
            f"over {_num(cpu['wall_s'])} s"
            + (f"; offered load needs ~{_num(cpu['projected_total_cores'])}" if projected else ""),
            ("fits" if cpu["fits_machine"] else "DOES NOT FIT") if projected else "",
        )
    ]
    for label, c in cpu["components"].items():
        needs = f"at offered load ~{_num(projected[label])} cores" if label in projected else ""
        out.append((f"    {label}", f"{_num(c['cores'])} cores", needs, ""))
    return out


def print_table(results: dict[str, Any], file: IO[str] | None = None) -> None:
    machine = results["machine"]
    table = Table(
        title=f"tap bench — {machine['nproc']} cores, {machine['cpu_model']}, "
        f"load {machine['load_at_start']} -> {results.get('load_at_end')}"
        + (" (smoke: numbers mean nothing)" if results.get("smoke") else ""),
    )
    for column in ("figure", "value", "reference / goal", "verdict"):
        table.add_column(column)
    for row in rows(results):
        table.add_row(*row)
    Console(file=file, width=140).print(table)


def _pct(p: dict[str, Any]) -> str:
    return f"{_num(p['p50_ms'])} / {_num(p['p95_ms'])} / {_num(p['p99_ms'])}"


def markdown(results: dict[str, Any]) -> str:
    """The figures as Markdown tables (what docs/BENCHMARKS.md quotes), with the load
    average around each measurement."""
    lines: list[str] = []
    t = results.get("throughput")
    if t and "error" not in t:
        lines += [
            "| throughput (one process) | records/s | load (start → end) |",
            "|---|---|---|",
            f"| pipeline (decode, validate, detect, commit, Redis) | **{_num(t['records_per_s'])}**"
            f" | {t['load_start']} → {t['load_end']} |",
            f"| COPY limit (same rows, same table) | {_num(t['copy_limit_records_per_s'])} | |",
            f"| naive (INSERT + SET per record) | {_num(t['naive_records_per_s'])} | |",
            f"| ratio vs COPY (goal ≥ 0.5) | **{t['ratio_vs_copy']:.2f}** | |",
            f"| ratio vs naive (goal ≥ 20) | **{t['ratio_vs_naive']:.1f}** | |",
            f"| processor CPU per record | {t['client_cpu_us_per_record']:.0f} µs | |",
            f"| simulator generation (per CPU second) | {_num(t['generator_records_per_cpu_s'])}"
            " | |",
            "",
            "Rounds (pipeline / COPY records/s): "
            + "; ".join(
                f"{_num(r['pipeline_records_per_s'])} / {_num(r['copy_records_per_s'])}"
                for r in t["rounds"]
            )
            + f". Durable PostgreSQL: {t['postgres_durable']}.",
            "",
        ]
    lat = results.get("latency")
    if lat and "error" not in lat:
        lines += [
            "| offered records/s | sent/s | event→PG commit p50/p95/p99 ms "
            "| event→Redis p50/p95/p99 ms | event→Kinesis arrival p50/p99 ms "
            "| arrival→PG p50/p99 ms | verdict | load |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in lat["steps"]:
            arrival = s["event_to_kinesis_arrival"]
            inside = s.get("kinesis_arrival_to_postgres", arrival)
            lines.append(
                f"| {_num(s['offered_records_per_s'])} | {_num(s['sent_records_per_s'])}"
                f" | {_pct(s['event_to_postgres'])} | {_pct(s['event_to_redis'])}"
                f" | {_num(arrival['p50_ms'])} / {_num(arrival['p99_ms'])}"
                f" | {_num(inside['p50_ms'])} / {_num(inside['p99_ms'])}"
                f" | {'broken' if s['broken'] else 'held'}"
                f" | {s['load_start']} → {s['load_end']} |"
            )
        lines.append("")
    h = results.get("handoff")
    if h and "error" not in h:
        runs_sigterm = ", ".join(f"{v:.2f}" for v in h["sigterm_runs_s"])
        runs_kill = ", ".join(f"{v:.2f}" for v in h["kill_runs_s"])
        lines += [
            "| handoff | median | runs (s) | goal | load |",
            "|---|---|---|---|---|",
            f"| SIGTERM → peer reads | **{h['sigterm_handoff_s']:.2f} s** | {runs_sigterm}"
            f" | < {h['goal_sigterm_s']:g} s | {h['load_start']} → {h['load_end']} |",
            f"| kill -9 → takeover (lease {h['lease_s']:g} s) | **{h['kill_takeover_s']:.2f} s**"
            f" | {runs_kill} | ≤ {h['goal_kill_s']:g} s | |",
            "",
        ]
    s = results.get("scale")
    if s and "error" not in s:
        lines += [
            "| processes (4 shards) | records/s | drain s | wall s (with start-up) | load |",
            "|---|---|---|---|---|",
        ]
        for r in s["runs"]:
            lines.append(
                f"| {r['processes']} | **{_num(r['records_per_s'])}** | {r['drain_s']:.1f}"
                f" | {r['wall_s']:.1f} | {r['load_start']} → {r['load_end']} |"
            )
        lines.append("")
    tool = results.get("tooling")
    if tool and "error" not in tool:
        lines += ["| tool | seconds | load |", "|---|---|---|"]
        for key in ("synth", "unit_suite", "make_test"):
            if key in tool:
                r = tool[key]
                lines.append(
                    f"| `{r['command'].replace(sys.executable, 'python')}` | {r['seconds']:.1f}"
                    f" | {r['load_start']} → {r['load_end']} |"
                )
        lines.append("")
    return "\n".join(lines)
