"""tap local up/down/status/env/rotate-db-password: the local stack from a terminal.

    tap local up [--run-dir DIR] [--detach] [--processors N]
                                              start, write state.json, supervise; with
                                              N > 0 also the synthesized stack's stream
                                              and secrets, and N processors
    tap local status [--json]                 health of every server and every endpoint
                                              a client needs (DSN, URLs, CA, stream,
                                              secrets, processor pids and health URLs)
    tap local env [--with-secrets]            ``export`` lines for clients (AWS SDKs,
                                              psql, redis-cli)
    tap local rotate-db-password              new password for the processors' database
                                              role: ALTER ROLE, then the secret
    tap local down                            stop the supervisor and its servers

Without ``--run-dir``, ``up`` creates ``runs/<timestamp>/`` (and points
``runs/current`` at it). Every ``up`` remembers its run folder in the user's state
folder (``$XDG_STATE_HOME/tap-iot-pipeline/local-run-dir``), so the other commands
need no ``--run-dir``: they use ``--run-dir``, else ``TAP_LOCAL_RUN_DIR``, else the
remembered folder, else ``runs/current``. See docs/LOCAL-STACK.md.

Passwords and tokens are *referenced* (the secret's ARN), not printed, except by
``env --with-secrets``: status output lands in terminals, CI logs and bug reports,
and after a rotation only the secret is current anyway.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from local_pipeline.health import Health, check_all
from local_pipeline.services.kinesis_emulator import KinesisEmulatorKind
from local_pipeline.services.local_stack import SERVICE_NAMES
from local_pipeline.state import (
    DEFAULT_RUNS_DIR,
    StackStatus,
    new_run_dir,
    pid_alive,
    read_state,
    resolve_run_dir,
)

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3

#: Names a run folder for every command without ``--run-dir`` (before the pointer).
RUN_DIR_ENV: Final = "TAP_LOCAL_RUN_DIR"
#: The pointer file ``up`` writes, under the user's state folder.
RUN_DIR_POINTER: Final = Path("tap-iot-pipeline") / "local-run-dir"


# --- the remembered run folder ------------------------------------------------------


def run_dir_pointer(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/tap-iot-pipeline/local-run-dir`` (``~/.local/state/...``):
    per user, not per clone, so it works from any folder; the XDG state folder is
    where a program keeps what should survive a restart but is no user data."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / RUN_DIR_POINTER


def remember_run_dir(run_dir: Path) -> None:
    pointer = run_dir_pointer()
    try:
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text(f"{run_dir.resolve()}\n")
    except OSError as exc:  # a read-only home must not stop the stack
        print(f"tap local: cannot remember the run folder in {pointer}: {exc}", file=sys.stderr)


def chosen_run_dir(run_dir: Path | None, runs_dir: Path) -> Path:
    """``--run-dir``, else ``TAP_LOCAL_RUN_DIR``, else the folder the last ``up``
    remembered, else ``runs/current``."""
    if run_dir is not None:
        return run_dir.resolve()
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV]).resolve()
    with contextlib.suppress(OSError):
        remembered = run_dir_pointer().read_text().strip()
        if remembered:
            return Path(remembered)
    return resolve_run_dir(None, runs_dir)


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

    env = with_run_dir(
        commands.add_parser("env", help="print export lines for clients (AWS, psql, redis-cli)")
    )
    env.add_argument(
        "--with-secrets",
        action="store_true",
        help="also export PGPASSWORD and REDISCLI_AUTH (current values, from the secrets)",
    )

    with_run_dir(
        commands.add_parser(
            "rotate-db-password",
            help="rotate the processors' database password (ALTER ROLE, then the secret)",
        )
    )

    down = with_run_dir(commands.add_parser("down", help="stop the local stack"))
    down.add_argument("--timeout", type=float, default=60)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    handler = {
        "up": _up,
        "status": _status,
        "env": _env,
        "down": _down,
        "rotate-db-password": _rotate_db_password,
    }[args.command]
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
    remember_run_dir(run_dir)
    if args.detach:
        return _detach(args, run_dir)
    return _run_foreground(run_dir, services, args.kinesis_emulator, args.processors)


def _run_foreground(
    run_dir: Path, services: list[str], kinesis_emulator: str | None, processors: int = 0
) -> int:
    from local_pipeline.services.local_stack import LocalServices
    from local_pipeline.supervisor import LocalStackSupervisor

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} tap local: {message}", flush=True)

    local = LocalServices(run_dir, kinesis_emulator=kinesis_emulator)
    components: list[Any] = []
    if processors:
        from local_pipeline.stack_resources import processor_components

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
    _print_warnings(state)
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
    argv = [sys.executable, "-m", "local_pipeline.cli", "up", "--run-dir", str(run_dir)]
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
            _print_warnings(state)
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
    run_dir = chosen_run_dir(args.run_dir, args.runs_dir)
    return run_dir, read_state(run_dir)


def _status(args: argparse.Namespace) -> int:
    run_dir, state = _load(args)
    if state is None:
        print(f"tap local: no local stack in {run_dir} (run `tap local up`)", file=sys.stderr)
        return EXIT_NOT_RUNNING
    running = pid_alive(state.get("supervisor_pid"))
    health: dict[str, Health] = {}
    if running:
        # Log in as the processors do now (the secret), not with the password of `up`.
        health = check_all(_with_current_db_login(state)) | _check_components(state)
    warnings = tls_warnings(state)
    if args.json:
        report = {
            "run_dir": str(run_dir),
            "status": state.get("status") if running else "stopped",
            "supervisor_pid": state.get("supervisor_pid") if running else None,
            "services": {
                name: {"healthy": h.ok, "detail": h.detail, "latency_ms": round(h.latency_ms, 1)}
                for name, h in health.items()
            },
            "endpoints": endpoints(state) if running else {},
            "warnings": warnings,
        }
        print(json.dumps(report, indent=2))
        _print_warnings(state)
    else:
        _print_table(state, health)
        _print_warnings(state)
        if not running:
            print(f"supervisor not running (last status: {state.get('status')})")
        else:
            print("endpoints for clients: `tap local status --json` or `tap local env`")
    if not running:
        return EXIT_NOT_RUNNING
    return EXIT_OK if all(h.ok for h in health.values()) else EXIT_UNHEALTHY


def _env(args: argparse.Namespace) -> int:
    run_dir, state = _load(args)
    if state is None or not pid_alive(state.get("supervisor_pid")):
        print(f"tap local: no running local stack in {run_dir}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    for name, value in environment_exports(state, with_secrets=args.with_secrets).items():
        print(f"export {name}={shlex.quote(value)}")
    _print_warnings(state)
    return EXIT_OK


def _rotate_db_password(args: argparse.Namespace) -> int:
    """ALTER ROLE first, then the secret: the order of RDS's managed rotation
    (setSecret, then finishSecret), so a processor that reads the secret always gets
    a password the server accepts; processors log in again with it when their next
    connection is made (their open connections stay valid)."""
    run_dir, state = _load(args)
    if state is None or not pid_alive(state.get("supervisor_pid")):
        print(f"tap local: no local stack running in {run_dir}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    pg = state.get("services", {}).get("postgres")
    secret_arn = _db_secret_arn(state)
    if pg is None or secret_arn is None or "moto" not in state.get("services", {}):
        print(
            "tap local rotate-db-password: this run has no database secret; start it with "
            "`tap local up --processors N` (the processors' secret is what a rotation changes)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if pg.get("source") == "external":
        print(
            "tap local rotate-db-password: TAP_PG_DSN names a server we do not run", file=sys.stderr
        )
        return EXIT_USAGE
    import psycopg
    from psycopg import sql

    client = _secrets_client(state)
    current = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
    role = str(current["username"])
    new = secrets.token_urlsafe(24)
    admin = _dsn(pg, user=pg["admin_user"], password=pg["admin_password"], database="postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(new))
        )
    client.put_secret_value(
        SecretId=secret_arn, SecretString=json.dumps(current | {"password": new})
    )
    print(f"tap local: new password for role {role}; secret {secret_arn} updated (AWSCURRENT)")
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
            if facts.get("kind") in ("processor", "api"):
                url = str(facts["endpoint_url"])
                try:
                    with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback
                        detail = f"HTTP {response.status} ready"
                        ok = True
                except urllib.error.HTTPError as exc:
                    detail, ok = f"HTTP {exc.code} not ready", False
            else:
                kinesis = state["services"]["kinesis"]
                from local_pipeline.services.aws_emulator import emulator_client

                client = emulator_client("kinesis", kinesis["endpoint_url"], timeout=3)
                summary = client.describe_stream_summary(StreamName=facts["stream_name"])
                shards = summary["StreamDescriptionSummary"]["OpenShardCount"]
                detail = f"{facts['stream_name']} {shards} shards, 2 secrets"
                ok = True
        except Exception as exc:
            detail, ok = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}", False
        results[name] = Health(ok, detail, (time.perf_counter() - started) * 1000)
    return results


# --- endpoints for clients -----------------------------------------------------------


def _db_secret_arn(state: Mapping[str, Any]) -> str | None:
    arn = state.get("components", {}).get("stack", {}).get("db_secret", {}).get("arn")
    return str(arn) if arn else None


def _redis_secret_arn(state: Mapping[str, Any]) -> str | None:
    arn = state.get("components", {}).get("stack", {}).get("redis_secret", {}).get("arn")
    return str(arn) if arn else None


def _secrets_client(state: Mapping[str, Any]) -> Any:
    from local_pipeline.services.aws_emulator import emulator_client

    return emulator_client("secretsmanager", state["services"]["moto"]["endpoint_url"], timeout=5)


def _dsn(
    pg: Mapping[str, Any], *, user: str, password: str | None, database: str | None = None
) -> str:
    """A DSN for ``user`` on the run's PostgreSQL with the facts' TLS settings; the
    password is left out when None (then it comes from the secret or PGPASSWORD)."""
    if pg.get("source") == "external":
        # Not ours: its DSN is what the user gave, minus the password.
        parts = urlsplit(str(pg["dsn"]))
        netloc = parts.netloc.rsplit("@", 1)[-1]
        auth = user if password is None else f"{user}:{password}"
        return urlunsplit(parts._replace(netloc=f"{auth}@{netloc}"))
    from local_pipeline.services.postgres import build_dsn

    ca = pg.get("ca_path")
    params = {"sslmode": "verify-full", "sslrootcert": str(ca)} if pg.get("tls") and ca else {}
    return build_dsn(
        host=str(pg["host"]),
        port=int(pg["port"]),
        user=user,
        password=password,
        dbname=database or str(pg["database"]),
        params=params or {"sslmode": "disable"},
    )


def current_db_login(state: Mapping[str, Any]) -> tuple[str, str, str]:
    """(user, password, where from): the processors' secret when the run has one
    (current after ``rotate-db-password``), else the app role recorded at ``up``."""
    pg = state["services"]["postgres"]
    arn = _db_secret_arn(state)
    if arn and "moto" in state.get("services", {}):
        value = json.loads(_secrets_client(state).get_secret_value(SecretId=arn)["SecretString"])
        return str(value["username"]), str(value["password"]), f"secret {arn}"
    return str(pg["app_user"]), str(pg["app_password"]), "state.json"


def _with_current_db_login(state: dict[str, Any]) -> dict[str, Any]:
    pg = state.get("services", {}).get("postgres")
    if pg is None:
        return state
    try:
        user, password, _ = current_db_login(state)
    except Exception:
        return state  # the secret is unreadable: check with what `up` recorded
    services = state["services"] | {
        "postgres": pg | {"dsn": _dsn(pg, user=user, password=password)}
    }
    return state | {"services": services}


def _redis_url(facts: Mapping[str, Any]) -> str:
    scheme = "rediss" if facts.get("tls") else "redis"
    return f"{scheme}://{facts['host']}:{facts['port']}/0"


def endpoints(state: Mapping[str, Any]) -> dict[str, Any]:
    """Every endpoint a client needs, without passwords or tokens (each is named by
    the secret that holds it)."""
    services = state.get("services", {})
    components = state.get("components", {})
    stack = components.get("stack", {})
    result: dict[str, Any] = {}
    if "postgres" in services:
        pg = services["postgres"]
        db_arn = _db_secret_arn(state)
        user = str(pg["app_user"])
        with contextlib.suppress(Exception):
            user = current_db_login(state)[0]
        result["postgres"] = {
            "host": pg["host"],
            "port": pg["port"],
            "database": pg["database"],
            "user": user,
            "tls": pg["tls"],
            "sslmode": "verify-full" if pg["tls"] else "disable",
            "ca_path": pg.get("ca_path"),
            "dsn": _dsn(pg, user=user, password=None),
            "password_secret_arn": db_arn,
            "password_from": f"secret {db_arn}" if db_arn else "state.json (app_password)",
        }
    if "redis" in services:
        cache = services["redis"]
        redis_arn = _redis_secret_arn(state)
        result["redis"] = {
            "host": cache["host"],
            "port": cache["port"],
            "tls": cache["tls"],
            "ca_path": cache.get("ca_path"),
            "url": _redis_url(cache),
            "auth_secret_arn": redis_arn,
            "token_from": f"secret {redis_arn}" if redis_arn else "state.json (token)",
        }
    if "kinesis" in services:
        result["kinesis"] = {
            "endpoint_url": services["kinesis"]["endpoint_url"],
            "stream_name": stack.get("stream_name"),
            "stream_arn": stack.get("stream_arn"),
        }
    if "moto" in services:
        result["secretsmanager"] = {"endpoint_url": services["moto"]["endpoint_url"]}
    if state.get("client_environment"):
        result["aws_environment"] = state["client_environment"]
    processors = {
        name: {
            "pid": facts.get("pid"),
            "health_url": facts.get("endpoint_url"),
            "live_url": str(facts["endpoint_url"]).replace("/health/ready", "/health/live")
            if facts.get("endpoint_url")
            else None,
            "log": facts.get("log"),
        }
        for name, facts in components.items()
        if facts.get("kind") == "processor"
    }
    if processors:
        result["processors"] = processors
    api = components.get("api", {})
    if api.get("board_url"):
        # The read API (issue 13): the board, the OpenAPI page and its log.
        result["api"] = {k: api.get(k) for k in ("board_url", "docs_url", "pid", "log")}
    return result


def environment_exports(state: Mapping[str, Any], *, with_secrets: bool) -> dict[str, str]:
    """What ``tap local env`` exports: the AWS SDK's endpoint variables, libpq's
    ``PG*`` (so ``psql`` needs no arguments), and ``TAP_LOCAL_*`` for the rest. Not
    the processor's ``TAP_*`` names: a shell that evaluated this must not change
    what a processor or a test started from it reads."""
    found = endpoints(state)
    exports: dict[str, str] = {RUN_DIR_ENV: str(state.get("run_dir", ""))}
    exports |= found.get("aws_environment", {})
    if "postgres" in found:
        pg = found["postgres"]
        exports |= {
            "PGHOST": str(pg["host"]),
            "PGPORT": str(pg["port"]),
            "PGDATABASE": str(pg["database"]),
            "PGUSER": str(pg["user"]),
            "PGSSLMODE": str(pg["sslmode"]),
            "TAP_LOCAL_DB_DSN": str(pg["dsn"]),
        }
        if pg["ca_path"] and pg["tls"]:
            exports["PGSSLROOTCERT"] = str(pg["ca_path"])
        if pg["password_secret_arn"]:
            exports["TAP_LOCAL_DB_SECRET_ARN"] = str(pg["password_secret_arn"])
        if with_secrets:
            exports["PGPASSWORD"] = current_db_login(state)[1]
    if "redis" in found:
        cache = found["redis"]
        exports["TAP_LOCAL_REDIS_URL"] = str(cache["url"])
        if cache["tls"] and cache["ca_path"]:
            exports["TAP_LOCAL_REDIS_CA"] = str(cache["ca_path"])
        if cache["auth_secret_arn"]:
            exports["TAP_LOCAL_REDIS_SECRET_ARN"] = str(cache["auth_secret_arn"])
        if with_secrets:
            token = str(state["services"]["redis"]["token"])
            if cache["auth_secret_arn"]:
                value = _secrets_client(state).get_secret_value(SecretId=cache["auth_secret_arn"])
                token = str(json.loads(value["SecretString"])["auth_token"])
            # redis-cli reads its AUTH password from REDISCLI_AUTH.
            exports["REDISCLI_AUTH"] = token
    if found.get("kinesis", {}).get("stream_name"):
        exports["TAP_LOCAL_STREAM_NAME"] = str(found["kinesis"]["stream_name"])
    return exports


def tls_warnings(state: Mapping[str, Any]) -> list[str]:
    """One line per local server whose TLS path is not exercised in this run."""
    from local_pipeline.services.redis import REDIS_WITHOUT_TLS

    services = state.get("services", {})
    found: list[str] = []
    cache = services.get("redis")
    if cache is not None and not cache.get("tls"):
        found.append(REDIS_WITHOUT_TLS.format(source=cache.get("source")))
    pg = services.get("postgres")
    if pg is not None and not pg.get("tls"):
        found.append(
            f"PostgreSQL runs WITHOUT TLS ({pg.get('source')}): the processor's verify-full "
            "path to PostgreSQL is NOT exercised. Install the machine's PostgreSQL "
            "(apt-get install postgresql) or start Docker."
        )
    return found


def _print_warnings(state: Mapping[str, Any]) -> None:
    for line in tls_warnings(state):
        print(f"WARNING: {line}", file=sys.stderr)


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
