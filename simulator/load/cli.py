"""``tap load``: a headless Locust campaign against Kinesis, with its report folder.

    tap load --shape ramp --users 20 --duration 5m --report reports/ramp --target fresh

Runs ``locust -f simulator/locustfile.py --headless`` in a subprocess (this process
never imports Locust, so it is never monkey-patched), then writes, beside Locust's
``report.html`` and CSV files, ``summary.json`` (records sent and failed, end-to-end
p50/p95/p99, verdict with reasons) and ``report.png``. Exit codes: 0 pass, 1 a
threshold is broken, 2 bad usage or unreachable target, 3 Locust itself failed.
See docs/LOAD.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Final

from simulator.aws_client import kinesis_client
from simulator.fleet_options import CAMPAIGN_FLEET, add_fleet_arguments, fleet_options
from simulator.load.api_auth import BEARER_ENV, COOKIE_ENV, auth_headers
from simulator.load.read_mix import HEALTH_PATH, ReadMix
from simulator.load.read_summary import ReadThresholds, format_reads, merge_sources, summarize_reads
from simulator.load.shapes import ShapeName, ShapePlan, parse_duration
from simulator.load.summary import Summary, Thresholds, plateau_rates, read_csv, summarize
from simulator.load.target import Target, TargetError, resolve_target

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_LOCUST = 0, 1, 2, 3

LOCUSTFILE: Final = Path(__file__).resolve().parents[1] / "locustfile.py"
CSV_PREFIX: Final = "locust"

#: Starts a throwaway local pipeline and yields its target (``--target fresh``). The
#: harness that can start one lives in ``e2e``, which the simulator may not import
#: (issue 12: the import rules in pyproject.toml), so ``tap load`` (:mod:`tap_cli.load`)
#: passes it in.
FreshPipeline = Callable[..., AbstractContextManager[Target]]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tap load",
        description="Run a headless Locust campaign against Kinesis (docs/LOAD.md).",
    )
    p.add_argument("--shape", choices=[s.value for s in ShapeName], default="ramp")
    p.add_argument("--users", type=int, default=10, help="peak Locust users (default 10)")
    p.add_argument("--duration", default="60s", help="traffic time: 90, 90s, 5m (default 60s)")
    p.add_argument("--report", type=Path, required=True, help="report folder (created)")
    p.add_argument(
        "--target",
        default="local",
        help="local (tap local up, or AWS_ENDPOINT_URL_* + TAP_PG_DSN + TAP_REDIS_URL),"
        " deployed ($TAP_STACK_OUTPUTS), fresh (start a throwaway local pipeline),"
        " or a JSON file (default local)",
    )
    p.add_argument("--stream", help="stream name (overrides the target's)")
    add_fleet_arguments(p, defaults=CAMPAIGN_FLEET)
    p.add_argument("--processes", type=int, default=1, help="Locust processes (default 1)")
    p.add_argument("--steps", type=int, default=5, help="plateaus of --shape step")
    p.add_argument("--drain", default="10s", help="zero-user tail for late samples")
    p.add_argument("--retries", type=int, default=0, help="re-sends of refused records")
    p.add_argument(
        "--batch-interval",
        type=float,
        default=0.1,
        help="seconds a user gathers due readings per PutRecords call (default 0.1)",
    )
    p.add_argument("--max-fail-ratio", type=float, default=0.01)
    p.add_argument("--max-e2e-p99-ms", type=float, default=1000.0)
    p.add_argument("--e2e-sample", type=float, default=0.01, help="share followed (0 = off)")
    p.add_argument("--e2e-timeout", default="30s", help="a sample unseen after this fails")
    reads = p.add_argument_group("the read side (tap api, issue 13; docs/LOAD.md)")
    reads.add_argument("--readers", type=int, default=0, help="read users (default 0: none)")
    reads.add_argument(
        "--read-rate", type=float, default=10.0, help="read requests/s of all readers (default 10)"
    )
    reads.add_argument(
        "--read-mix",
        choices=[m.value for m in ReadMix],
        default=ReadMix.BOARD.value,
        help="board: boards, device pages, history, anomalies; goals: latest and line"
        " boards, cached and ?source=postgres (default board)",
    )
    reads.add_argument(
        "--sse-listeners",
        type=int,
        default=None,
        help="anomaly stream listeners (default 2 with --readers, else 0)",
    )
    reads.add_argument("--read-only", action="store_true", help="readers only, no writers")
    reads.add_argument("--api-url", help="the API's base URL (overrides the target's)")
    reads.add_argument("--max-read-fail-ratio", type=float, default=0.01)
    reads.add_argument(
        "--max-stream-p99-ms",
        type=float,
        default=None,
        help="fail when the anomaly stream's p99 delay is above (default: report only)",
    )
    fresh = p.add_argument_group("--target fresh")
    fresh.add_argument("--shards", type=int, default=4)
    fresh.add_argument("--processors", type=int, default=2, help="processor processes")
    fresh.add_argument("--keep", action="store_true", help="keep the run folder (logs)")
    return p


def main(argv: list[str] | None = None, *, fresh_pipeline: FreshPipeline | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.sse_listeners is None:
        args.sse_listeners = 2 if args.readers > 0 else 0
    if args.read_only:
        args.e2e_sample = 0.0  # nothing is written, nothing to follow
    try:
        _check_args(args)
        plan = ShapePlan(
            ShapeName(args.shape),
            # Read-only: the shape drives the readers.
            users=args.readers if args.read_only else args.users,
            duration_s=parse_duration(args.duration),
            drain_s=parse_duration(args.drain),
            steps=args.steps,
        )
        e2e_timeout_s = parse_duration(args.e2e_timeout)
    except ValueError as exc:
        print(f"tap load: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with _target(args, fresh_pipeline) as target:
            if args.api_url:
                target = dataclasses.replace(target, api_url=args.api_url.rstrip("/"))
            if reads_wanted(args):
                preflight_api(target)
            if not args.read_only:
                preflight(target, e2e=args.e2e_sample > 0)
            return run_campaign(args, plan, target, e2e_timeout_s)
    except (TargetError, RuntimeError, TimeoutError) as exc:
        # RuntimeError/TimeoutError: the fresh local pipeline could not start.
        print(f"tap load: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _check_args(args: argparse.Namespace) -> None:
    if not 0.0 <= args.e2e_sample <= 1.0:
        raise ValueError(f"--e2e-sample must be within [0, 1], got {args.e2e_sample}")
    if args.processes < 1:
        raise ValueError(f"--processes must be at least 1, got {args.processes}")
    if args.devices < args.users:
        raise ValueError(f"--devices ({args.devices}) must be at least --users ({args.users})")
    if not 0.0 <= args.max_fail_ratio <= 1.0:
        raise ValueError("--max-fail-ratio must be within [0, 1]")
    if not 0.0 < args.batch_interval <= 10.0:
        raise ValueError("--batch-interval must be within (0, 10] seconds")
    if args.readers < 0 or args.sse_listeners < 0:
        raise ValueError("--readers and --sse-listeners must not be negative")
    if args.read_only and args.readers < 1:
        raise ValueError("--read-only needs --readers N (N >= 1)")
    if args.readers and args.read_rate <= 0:
        raise ValueError(f"--read-rate must be positive, got {args.read_rate}")
    if not 0.0 <= args.max_read_fail_ratio <= 1.0:
        raise ValueError("--max-read-fail-ratio must be within [0, 1]")


def reads_wanted(args: argparse.Namespace) -> bool:
    return bool(args.readers or args.sse_listeners)


def preflight_api(target: Target) -> None:
    """The read side needs the API: fail fast, naming its URL (and a malformed
    credential variable, :mod:`simulator.load.api_auth`)."""
    import urllib.error
    import urllib.request

    if not target.api_url:
        raise TargetError(
            "--readers/--sse-listeners need the read API: pass --api-url URL, set"
            " TAP_API_URL, or use a target that runs it (tap local up, --target fresh)"
        )
    url = target.api_url + HEALTH_PATH
    try:
        headers = auth_headers(os.environ)
    except ValueError as exc:
        raise TargetError(str(exc)) from None
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - our URL
    # No redirects: behind the load balancer's OIDC, a 302 is the login page, not the API.
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        raise TargetError(f"the API at {target.api_url} is unreachable: {exc}") from None
    if status in (301, 302, 303, 307, 308, 401):
        raise TargetError(
            f"the API at {target.api_url} asks for a login ({url} answered {status}): set"
            f" {COOKIE_ENV} (the load balancer's session cookie) or {BEARER_ENV}"
            " (docs/LOAD.md)"
        )
    if status != 200:
        raise TargetError(f"the API at {target.api_url} is not ready: {url} answered {status}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@contextlib.contextmanager
def _target(args: argparse.Namespace, fresh_pipeline: FreshPipeline | None) -> Iterator[Target]:
    if args.target == "fresh":
        if fresh_pipeline is None:
            raise TargetError("--target fresh starts the local harness: run it as `tap load`")
        with fresh_pipeline(
            shards=args.shards,
            processors=args.processors,
            keep=args.keep,
            log=lambda m: print(f"tap load: {m}", flush=True),
            **({"api": True} if reads_wanted(args) else {}),
        ) as target:
            yield target
        return
    yield resolve_target(args.target, stream=args.stream)


def preflight(target: Target, *, e2e: bool) -> None:
    """Fail fast, naming the endpoint, before Locust starts 100 users against it."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = kinesis_client(
        environ=target.aws_environment | {"AWS_REGION": target.region},
        max_attempts=1,
        read_timeout=10,
    )
    try:
        summary = client.describe_stream_summary(StreamName=target.stream_name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise TargetError(
            f"Kinesis at {target.kinesis_endpoint}: stream {target.stream_name!r}: {code}"
        ) from None
    except BotoCoreError as exc:
        raise TargetError(
            f"Kinesis endpoint {target.kinesis_endpoint} unreachable: {exc}"
        ) from None
    status = summary["StreamDescriptionSummary"]["StreamStatus"]
    if status not in {"ACTIVE", "UPDATING"}:
        raise TargetError(f"stream {target.stream_name!r} is {status}, not ACTIVE")
    if not e2e:
        return
    described = target.describe()
    if not target.has_stores:
        raise TargetError(
            "the end-to-end listener needs PostgreSQL and Redis in the target"
            " (TAP_PG_DSN and TAP_REDIS_URL for a local target), or pass --e2e-sample 0"
        )
    try:
        import psycopg

        psycopg.connect(target.pg_dsn or "", connect_timeout=5).close()
    except Exception as exc:
        raise TargetError(f"PostgreSQL {described['postgres']} unreachable: {exc}") from None
    try:
        import redis

        kwargs: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 5}
        if target.redis_ca and (target.redis_url or "").startswith("rediss://"):
            kwargs["ssl_ca_certs"] = target.redis_ca
        client_r = redis.Redis.from_url(target.redis_url or "", **kwargs)
        client_r.ping()
        client_r.close()
    except Exception as exc:
        raise TargetError(f"Redis {described['redis']} unreachable: {exc}") from None


def locust_argv(
    args: argparse.Namespace, plan: ShapePlan, report: Path, e2e_timeout_s: float
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--csv",
        str(report / CSV_PREFIX),
        "--csv-full-history",
        "--html",
        str(report / "report.html"),
        # The log keeps the final table only; progress lines come from this process.
        "--only-summary",
        # The verdict is ours (records, not requests); Locust must not fail the run.
        "--exit-code-on-error",
        "0",
        "--stop-timeout",
        "5",
        "--tap-shape",
        plan.name.value,
        "--tap-users",
        str(plan.users),
        "--tap-duration",
        str(plan.duration_s),
        "--tap-drain",
        str(plan.drain_s),
        "--tap-steps",
        str(plan.steps),
        *fleet_options(args).argv(prefix="tap-"),
        "--tap-e2e-sample",
        str(args.e2e_sample),
        "--tap-e2e-timeout",
        str(e2e_timeout_s),
        "--tap-workers",
        str(args.processes),
        "--tap-retries",
        str(args.retries),
        "--tap-batch-interval",
        str(args.batch_interval),
    ]
    argv += [
        "--tap-readers",
        str(args.readers),
        "--tap-read-rate",
        str(args.read_rate),
        "--tap-read-mix",
        args.read_mix,
        "--tap-sse-listeners",
        str(args.sse_listeners),
    ]
    if args.read_only:
        argv.append("--tap-read-only")
    if args.processes > 1:
        argv += ["--processes", str(args.processes)]
    # The user classes to run (Locust runs every class of the locustfile otherwise).
    if not args.read_only:
        argv.append("FleetUser")
    if args.readers:
        argv.append("ReaderUser")
    return argv


def run_campaign(
    args: argparse.Namespace, plan: ShapePlan, target: Target, e2e_timeout_s: float
) -> int:
    report: Path = args.report
    report.mkdir(parents=True, exist_ok=True)
    argv = locust_argv(args, plan, report, e2e_timeout_s)
    # Locust gets the AWS variables and the target; nothing secret goes to disk.
    env = os.environ | target.process_environment()
    # The load tests set this so importing Locust in pytest does not patch pytest;
    # the campaign itself needs gevent's patching (boto3 sockets in greenlets).
    env.pop("LOCUST_SKIP_MONKEY_PATCH", None)
    log_path = report / "locust.log"
    print(
        f"tap load: {plan.name} to {plan.users} users for {plan.duration_s:g} s"
        f" (+{plan.drain_s:g} s drain) on {target.stream_name} at {target.kinesis_endpoint};"
        f" Locust log: {log_path}",
        flush=True,
    )
    started = time.monotonic()
    with log_path.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            # The shape ends the run; the deadline is a safety net (Locust ignores
            # --run-time when a shape class is present).
            _follow_progress(process, report, started, deadline_s=plan.total_s + 120)
        except KeyboardInterrupt:
            pass
        finally:
            if process.poll() is None:
                process.terminate()  # Locust writes its reports on SIGTERM
                process.wait(timeout=60)
    if process.returncode != 0 or not (report / f"{CSV_PREFIX}_stats.csv").exists():
        print(
            f"tap load: Locust exited with {process.returncode}; see {log_path}:\n"
            + _tail(log_path),
            file=sys.stderr,
        )
        return EXIT_LOCUST
    summary = write_summary(args, plan, target, report)
    _print_summary(summary, report)
    if reads_wanted(args):
        body = json.loads((report / "summary.json").read_text())
        print(format_reads(body["reads"]), flush=True)
    return EXIT_PASS if summary.passed else EXIT_FAIL


def _follow_progress(
    process: subprocess.Popen[bytes], report: Path, started: float, *, deadline_s: float
) -> None:
    """One line every 15 s from Locust's stats CSV, so a long campaign shows life."""
    last = 0.0
    while process.poll() is None:
        time.sleep(1)
        now = time.monotonic()
        if now - started > deadline_s:
            print(f"tap load: Locust still running after {deadline_s:.0f} s; stopping it")
            return
        if now - last < 15:
            continue
        last = now
        rows = read_csv(report / f"{CSV_PREFIX}_stats.csv")
        puts = next((r for r in rows if r.get("Type") == "PutRecords"), None)
        if puts:
            rps = float(puts.get("Requests/s") or 0) * float(puts.get("Average Content Size") or 0)
            print(
                f"tap load: {now - started:5.0f} s  {int(float(puts['Request Count']))} calls,"
                f" ~{rps:,.0f} records/s on average so far",
                flush=True,
            )


def write_summary(
    args: argparse.Namespace, plan: ShapePlan, target: Target, report: Path
) -> Summary:
    stats = read_csv(report / f"{CSV_PREFIX}_stats.csv")
    failures = read_csv(report / f"{CSV_PREFIX}_failures.csv")
    summary = summarize(
        stats,
        failures,
        duration_s=plan.duration_s,
        thresholds=Thresholds(args.max_fail_ratio, args.max_e2e_p99_ms),
        e2e_expected=args.e2e_sample > 0,
    )
    if args.read_only:
        summary.reasons = [r for r in summary.reasons if r != "no record was sent"]
    reads: dict[str, Any] | None = None
    if reads_wanted(args):
        reads, read_reasons = summarize_reads(
            stats,
            duration_s=plan.duration_s,
            sources=merge_sources(sorted(report.glob(f"{CSV_PREFIX}_read_sources*.json"))),
            thresholds=ReadThresholds(args.max_read_fail_ratio, args.max_stream_p99_ms),
        )
        if args.readers == 0:  # listeners only: no request to judge
            read_reasons = [r for r in read_reasons if not r.startswith("reads:")]
        summary.reasons += read_reasons
    history = read_csv(report / f"{CSV_PREFIX}_stats_history.csv")
    plateaus = plateau_rates(history, plan.step_bounds())
    body = summary.as_dict() | {
        "campaign": {
            "shape": plan.name.value,
            "users": plan.users,
            "duration_s": plan.duration_s,
            "drain_s": plan.drain_s,
            "devices": args.devices,
            "rate_per_device": args.rate,
            "offered_records_per_s": args.devices * args.rate,
            "processes": args.processes,
            "batch_interval_s": args.batch_interval,
            "e2e_sample": args.e2e_sample,
            "seed": args.seed,
            "readers": args.readers,
            "read_rate": args.read_rate,
            "read_mix": args.read_mix,
            "sse_listeners": args.sse_listeners,
            "read_only": args.read_only,
        },
        "thresholds": {
            "max_fail_ratio": args.max_fail_ratio,
            "max_e2e_p99_ms": args.max_e2e_p99_ms,
        },
        "target": target.describe(),
        # Step campaigns: accepted records/s per plateau; the highest plateau that
        # kept up with its offered load is the sustained rate (docs/LOAD.md).
        "plateaus": [
            p | {"offered_records_per_s": args.devices * args.rate * p["users"] / plan.users}
            for p in plateaus
        ],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if reads is not None:
        body["reads"] = reads
        body["verdict"] = "pass" if summary.passed else "fail"
        body["reasons"] = summary.reasons
    (report / "summary.json").write_text(json.dumps(body, indent=2) + "\n")
    try:
        from simulator.load.report import write_png

        write_png(
            history,
            report / "report.png",
            title=f"tap load: {plan.name} to {plan.users} users, {args.devices} devices"
            f" x {args.rate:g}/s, {target.stream_name}",
        )
    except Exception as exc:  # a missing plot must not hide the verdict
        print(f"tap load: report.png not written: {exc}", file=sys.stderr)
    return summary


def _print_summary(summary: Summary, report: Path) -> None:
    pg = summary.e2e["event->postgres"]
    rd = summary.e2e["event->redis"]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    print(
        f"tap load: sent {summary.records_sent} records, failed {summary.records_failed}"
        f" ({summary.fail_ratio:.3%}), {summary.records_per_s:,.0f} records/s average\n"
        f"  e2e event->postgres p50/p95/p99 {fmt(pg.p50_ms)}/{fmt(pg.p95_ms)}/{fmt(pg.p99_ms)}"
        f" ms ({pg.count} followed, {pg.failures} unseen)\n"
        f"  e2e event->redis    p50/p95/p99 {fmt(rd.p50_ms)}/{fmt(rd.p95_ms)}/{fmt(rd.p99_ms)}"
        f" ms ({rd.count} followed, {rd.failures} unseen)\n"
        f"  verdict: {'PASS' if summary.passed else 'FAIL'}"
        + "".join(f"\n    - {reason}" for reason in summary.reasons)
        + f"\n  report: {report / 'report.html'}, {report / 'report.png'},"
        f" {report / 'summary.json'}",
        flush=True,
    )


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


if __name__ == "__main__":
    raise SystemExit(main())
