"""tap local up/down/status/env: the local stack from a terminal.

    tap local up [--run-dir DIR] [--detach] [--processors N]
                                              start, write state.json, supervise; with
                                              N > 0 also the synthesized stack's stream
                                              and secrets, and N processors
    tap local status [--run-dir DIR] [--json] health of every server
    tap local env [--run-dir DIR]             ``export`` lines for AWS clients
    tap local down [--run-dir DIR]            stop the supervisor and its servers

Without ``--run-dir``, ``up`` creates ``runs/<timestamp>/`` and points ``runs/current``
at it; the other commands use ``runs/current``. See docs/LOCAL-STACK.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from e2e.local.health import Health, check_all
from e2e.local.state import (
    DEFAULT_RUNS_DIR,
    StackStatus,
    new_run_dir,
    pid_alive,
    read_state,
    resolve_run_dir,
)
from e2e.services.kinesis_emulator import KinesisEmulatorKind
from e2e.services.local_stack import SERVICE_NAMES

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tap local", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def with_run_dir(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--run-dir", type=Path, help="run folder (default: runs/current)")
        sub.add_argument(
            "--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where runs/<timestamp> go"
        )
        return sub

    up = with_run_dir(commands.add_parser("up", help="start the local stack and supervise it"))
    up.add_argument("--detach", action="store_true", help="run the supervisor in background")
    up.add_argument(
        "--services",
        default=",".join(SERVICE_NAMES),
        help=f"comma-separated subset of {','.join(SERVICE_NAMES)}",
    )
    up.add_argument(
        "--kinesis-emulator",
        choices=[k.value for k in KinesisEmulatorKind],
        help="kinesalite (default; fast, correct split routing) or moto (UpdateShardCount)",
    )
    up.add_argument(
        "--processors",
        type=int,
        default=0,
        metavar="N",
        help="also create the synthesized stack's stream and secrets and run N processors "
        "with its task environment (docs/E2E.md)",
    )
    up.add_argument("--timeout", type=float, default=300, help="--detach: seconds to wait")

    status = with_run_dir(commands.add_parser("status", help="health-check every server"))
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    with_run_dir(commands.add_parser("env", help="print export lines for AWS clients"))

    down = with_run_dir(commands.add_parser("down", help="stop the local stack"))
    down.add_argument("--timeout", type=float, default=60)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    handler = {"up": _up, "status": _status, "env": _env, "down": _down}[args.command]
    result: int = handler(args)
    return result


# --- up ---------------------------------------------------------------------------


def _up(args: argparse.Namespace) -> int:
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    unknown = set(services) - set(SERVICE_NAMES)
    if unknown:
        print(f"tap local up: unknown service(s) {sorted(unknown)}", file=sys.stderr)
        return EXIT_USAGE
    if args.processors < 0 or (args.processors and set(services) != set(SERVICE_NAMES)):
        print("tap local up: --processors needs N >= 0 and every service", file=sys.stderr)
        return EXIT_USAGE
    if args.run_dir is not None:
        run_dir = args.run_dir.resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        state = read_state(run_dir)
        if state and pid_alive(state.get("supervisor_pid")):
            print(f"tap local: already up in {run_dir} (pid {state['supervisor_pid']})")
            return EXIT_USAGE
    else:
        run_dir = new_run_dir(args.runs_dir).resolve()
    if args.detach:
        return _detach(args, run_dir)
    return _run_foreground(run_dir, services, args.kinesis_emulator, args.processors)


def _run_foreground(
    run_dir: Path, services: list[str], kinesis_emulator: str | None, processors: int = 0
) -> int:
    from e2e.local.supervisor import LocalStackSupervisor
    from e2e.services.local_stack import LocalServices

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} tap local: {message}", flush=True)

    local = LocalServices(run_dir, kinesis_emulator=kinesis_emulator)
    components: list[Any] = []
    if processors:
        from e2e.local.stack_resources import processor_components

        components = processor_components(local, processors, log=log)
    supervisor = LocalStackSupervisor(
        local,
        components=components,
        service_names=services,
        log=log,
    )
    # Signals before starting: a Ctrl-C during start-up must still stop what started.
    supervisor.install_signal_handlers()
    log(f"starting {', '.join(services)} in {run_dir}")
    try:
        supervisor.up()
    except Exception as exc:
        log(f"start failed: {exc}")
        return EXIT_UNHEALTHY
    state = supervisor.state()
    _print_table(state, check_all(state) | _check_components(state))
    log("up; Ctrl-C or `tap local down` stops it")
    try:
        supervisor.supervise()
    finally:
        log("stopping")
        supervisor.down()
        log("stopped")
    return EXIT_OK


def _detach(args: argparse.Namespace, run_dir: Path) -> int:
    """Start a supervisor in its own session, wait until it is READY, and return."""
    argv = [sys.executable, "-m", "e2e.local.cli", "up", "--run-dir", str(run_dir)]
    argv += ["--services", args.services, "--processors", str(args.processors)]
    if args.kinesis_emulator:
        argv += ["--kinesis-emulator", args.kinesis_emulator]
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "supervisor.log").open("ab") as out:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path.cwd(),
        )
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = read_state(run_dir)
        status = state.get("status") if state else None
        if state and status == StackStatus.READY and state.get("supervisor_pid") == child.pid:
            _print_table(state, check_all(state) | _check_components(state))
            print(f"supervisor pid {child.pid}; logs in {logs}; stop with `tap local down`")
            return EXIT_OK
        if child.poll() is not None or status == StackStatus.FAILED:
            print(f"tap local up failed; see {logs / 'supervisor.log'}", file=sys.stderr)
            return EXIT_UNHEALTHY
        time.sleep(0.2)
    print(f"tap local up: not ready after {args.timeout:.0f} s", file=sys.stderr)
    return EXIT_UNHEALTHY


# --- status, env, down ------------------------------------------------------------


def _load(args: argparse.Namespace) -> tuple[Path, dict[str, Any] | None]:
    run_dir = resolve_run_dir(args.run_dir, args.runs_dir)
    return run_dir, read_state(run_dir)


def _status(args: argparse.Namespace) -> int:
    run_dir, state = _load(args)
    if state is None:
        print(f"tap local: no local stack in {run_dir} (run `tap local up`)", file=sys.stderr)
        return EXIT_NOT_RUNNING
    running = pid_alive(state.get("supervisor_pid"))
    health = check_all(state) if running else {}
    health |= _check_components(state) if running else {}
    if args.json:
        report = {
            "run_dir": str(run_dir),
            "status": state.get("status") if running else "stopped",
            "supervisor_pid": state.get("supervisor_pid") if running else None,
            "services": {
                name: {"healthy": h.ok, "detail": h.detail, "latency_ms": round(h.latency_ms, 1)}
                for name, h in health.items()
            },
        }
        print(json.dumps(report, indent=2))
    else:
        _print_table(state, health)
        if not running:
            print(f"supervisor not running (last status: {state.get('status')})")
    if not running:
        return EXIT_NOT_RUNNING
    return EXIT_OK if all(h.ok for h in health.values()) else EXIT_UNHEALTHY


def _env(args: argparse.Namespace) -> int:
    run_dir, state = _load(args)
    if state is None or "client_environment" not in state:
        print(f"tap local: no running stack with AWS emulators in {run_dir}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    for name, value in state["client_environment"].items():
        print(f"export {name}={shlex.quote(value)}")
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    run_dir, state = _load(args)
    if state is None:
        print(f"tap local: no local stack in {run_dir}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    pid = state.get("supervisor_pid")
    if not pid_alive(pid):
        _stop_orphans(state)
        print(f"tap local: not running in {run_dir}")
        return EXIT_OK
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        print(f"tap local: supervisor {pid} did not stop in {args.timeout:.0f} s", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(f"tap local: stopped ({run_dir})")
    return EXIT_OK


def _stop_orphans(state: dict[str, Any]) -> None:
    """A supervisor killed with -9 on a system without PDEATHSIG may leave servers:
    stop those whose pid still runs the command we started (pids get reused)."""
    processes = [*state.get("services", {}).values(), *state.get("components", {}).values()]
    for facts in processes:
        pid = facts.get("pid")
        if not pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if (
                state.get("run_dir", "\0") in cmdline
                or "kinesalite" in cmdline
                or (facts.get("kind") == "processor" and "-m processor" in cmdline)
            ):
                os.kill(pid, signal.SIGTERM)


def _check_components(state: dict[str, Any]) -> dict[str, Health]:
    """Processors answer on their health port; the stack component is healthy when
    its stream exists in the Kinesis emulator."""
    import urllib.error
    import urllib.request

    results: dict[str, Health] = {}
    for name, facts in state.get("components", {}).items():
        started = time.perf_counter()
        try:
            if facts.get("kind") == "processor":
                url = str(facts["endpoint_url"])
                try:
                    with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback
                        detail = f"HTTP {response.status} ready"
                        ok = True
                except urllib.error.HTTPError as exc:
                    detail, ok = f"HTTP {exc.code} not ready", False
            else:
                kinesis = state["services"]["kinesis"]
                from e2e.services.aws_emulator import emulator_client

                client = emulator_client("kinesis", kinesis["endpoint_url"], timeout=3)
                summary = client.describe_stream_summary(StreamName=facts["stream_name"])
                shards = summary["StreamDescriptionSummary"]["OpenShardCount"]
                detail = f"{facts['stream_name']} {shards} shards, 2 secrets"
                ok = True
        except Exception as exc:
            detail, ok = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}", False
        results[name] = Health(ok, detail, (time.perf_counter() - started) * 1000)
    return results


# --- output -------------------------------------------------------------------------


def _endpoint(facts: dict[str, Any]) -> str:
    if "stream_name" in facts:
        return str(facts["stream_name"])
    if "endpoint_url" in facts:
        return str(facts["endpoint_url"])
    return f"{facts.get('host', '?')}:{facts.get('port', '?')}"


def _print_table(state: dict[str, Any], health: dict[str, Health]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"local stack: {state.get('run_dir')} ({state.get('status')})")
    for column in ("service", "source", "endpoint", "TLS", "pid", "health"):
        table.add_column(column)
    # Components (stack resources, processors) are shown as rows after the servers.
    services: dict[str, Any] = state.get("services", {}) | state.get("components", {})
    # Start order first (postgres, redis, moto, kinesis), then later components.
    ordered = [n for n in SERVICE_NAMES if n in services] + sorted(
        n for n in services if n not in SERVICE_NAMES
    )
    running = pid_alive(state.get("supervisor_pid"))
    for name in ordered:
        facts = services[name]
        result = health.get(name)
        shown = (
            "[dim]not checked[/]"
            if result is None
            else f"[green]ok[/] {result.detail}"
            if result.ok
            else f"[red]FAIL[/] {result.detail}"
        )
        tls = facts.get("tls")
        table.add_row(
            name,
            str(facts.get("source") or facts.get("emulator") or facts.get("kind") or name),
            _endpoint(facts),
            "-" if tls is None else ("yes" if tls else "no"),
            str(facts.get("pid") or "-") if running else "-",
            shown,
        )
    Console().print(table)
    if state.get("ca_path"):
        print(f"CA: {state['ca_path']}   logs: {state.get('logs_dir')}")


if __name__ == "__main__":
    raise SystemExit(main())
