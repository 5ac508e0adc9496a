"""``tap local`` used from a terminal as a new user would, with the public CLI only:
``up --processors N`` (the synthesized stack's stream and secrets and N supervised
processors), ``status --json`` and ``env`` giving every endpoint a client needs,
``rotate-db-password`` with ``status`` staying truthful, the run folder remembered
after ``up``, a loud warning when a TLS path is not exercised, and ``down``."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from local_pipeline.state import pid_alive, read_state


def _tap_local(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local_pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def _isolated_environment(home: Path) -> dict[str, str]:
    """The caller's environment with a private state folder (where ``up`` remembers
    the run folder), so the test neither reads nor moves a developer's pointer."""
    env = dict(os.environ)
    env["XDG_STATE_HOME"] = str(home / "state")
    env.pop("TAP_LOCAL_RUN_DIR", None)
    return env


def _allowed_overrides(state: dict[str, Any]) -> set[str]:
    """:data:`LOCAL_OVERRIDES`, plus each conditional override whose condition this
    run's servers meet (a server without TLS), never more."""
    from local_pipeline.stack_resources import LOCAL_OVERRIDES

    allowed = set(LOCAL_OVERRIDES)
    services = state["services"]
    if not services["redis"]["tls"]:
        allowed.add("TAP_REDIS_TLS")
    if not services["postgres"]["tls"]:
        allowed.add("TAP_DB_SSLMODE")
    if services["postgres"]["source"] == "external":
        allowed.add("TAP_DB_NAME")
    return allowed


def _secret(endpoint_url: str, arn: str) -> dict[str, Any]:
    from local_pipeline.services.aws_emulator import emulator_client

    client = emulator_client("secretsmanager", endpoint_url)
    value: dict[str, Any] = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    return value


def _exports(text: str) -> dict[str, str]:
    """``export NAME=value`` lines, parsed as a POSIX shell would."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export "):
            ((name, value),) = [shlex.split(line.removeprefix("export "))[0].split("=", 1)]
            values[name] = value
    return values


@pytest.mark.timeout(420)
def test_up_with_processors_status_env_rotate_down() -> None:
    import httpx
    import psycopg
    import redis

    home = Path(tempfile.mkdtemp(prefix="tap-local-cli-"))
    home.chmod(0o755)  # PostgreSQL (as ``postgres`` when we are root) must enter it
    run_dir = home / "run"
    env = _isolated_environment(home)
    pid = None
    try:
        up = _tap_local("up", "--run-dir", str(run_dir), "--processors", "1", "--detach", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        state = read_state(run_dir)
        assert state is not None
        redis_tls = state["services"]["redis"]["tls"]
        if not redis_tls:
            # The fallback Redis (no TLS) must be impossible to miss.
            assert "WARNING" in up.stderr and "WITHOUT TLS" in up.stderr, up.stderr

        # No --run-dir from here on: `up` remembered the run folder.
        status = _tap_local("status", "--json", env=env, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["run_dir"] == str(run_dir.resolve())
        assert report["services"]["processor-1"]["healthy"], report
        assert report["services"]["stack"]["healthy"], report
        # The read API runs beside the processors (issue 13 item 4) and serves the board.
        assert report["services"]["api"]["healthy"], report
        board = httpx.get(report["endpoints"]["api"]["board_url"], timeout=10)
        assert board.status_code == 200 and "Plant board" in board.text
        assert any("WITHOUT TLS" in w for w in report["warnings"]) == (not redis_tls), report

        processor = state["components"]["processor-1"]
        # Only documented overrides differ from the synthesized task environment.
        assert set(processor["changed_variables"]) <= _allowed_overrides(state)
        pid = processor["pid"]

        endpoints = report["endpoints"]
        # Secrets are referenced, not printed.
        assert state["services"]["postgres"]["app_password"] not in status.stdout
        assert state["services"]["redis"]["token"] not in status.stdout

        # PostgreSQL: the DSN (with its CA) plus the password from the named secret.
        pg = endpoints["postgres"]
        sm_url = endpoints["secretsmanager"]["endpoint_url"]
        db_secret = _secret(sm_url, pg["password_secret_arn"])
        with psycopg.connect(pg["dsn"], password=db_secret["password"], connect_timeout=5) as c:
            assert c.execute("SELECT current_user").fetchone() == (pg["user"],)
        if pg["tls"]:
            assert f"sslrootcert={pg['ca_path']}" in pg["dsn"] and Path(pg["ca_path"]).is_file()

        # Redis: the URL, its CA and the token from the named secret.
        cache = endpoints["redis"]
        token = _secret(sm_url, cache["auth_secret_arn"])["auth_token"]
        extra = {"ssl_ca_certs": cache["ca_path"]} if cache["tls"] else {}
        client = redis.from_url(cache["url"], password=token, socket_timeout=5, **extra)
        assert client.ping()
        client.close()

        # Kinesis: the stream exists at the given endpoint.
        from local_pipeline.services.aws_emulator import emulator_client

        kinesis = emulator_client("kinesis", endpoints["kinesis"]["endpoint_url"])
        summary = kinesis.describe_stream_summary(StreamName=endpoints["kinesis"]["stream_name"])
        assert summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"

        # Processors: pid and health URLs that answer.
        (proc,) = endpoints["processors"].values()
        assert proc["pid"] == pid and pid_alive(pid)
        for url in (proc["health_url"], proc["live_url"]):
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
                assert response.status == 200

        # `tap local env`: shell exports a client can eval (no secrets by default).
        shell = _tap_local("env", env=env, timeout=60)
        assert shell.returncode == 0, shell.stderr
        exported = _exports(shell.stdout)
        assert exported["AWS_ENDPOINT_URL_KINESIS"] == endpoints["kinesis"]["endpoint_url"]
        assert exported["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == sm_url
        assert exported["TAP_LOCAL_STREAM_NAME"] == endpoints["kinesis"]["stream_name"]
        assert exported["TAP_LOCAL_DB_SECRET_ARN"] == pg["password_secret_arn"]
        assert exported["PGPORT"] == str(pg["port"]) and exported["PGUSER"] == pg["user"]
        assert exported["TAP_LOCAL_REDIS_URL"] == cache["url"]
        assert "PGPASSWORD" not in exported
        with_secrets = _exports(_tap_local("env", "--with-secrets", env=env).stdout)
        assert with_secrets["PGPASSWORD"] == db_secret["password"]
        assert with_secrets["REDISCLI_AUTH"] == token

        # Rotation: the secret and the role change together; status stays truthful.
        old = db_secret["password"]
        rotate = _tap_local("rotate-db-password", env=env, timeout=60)
        assert rotate.returncode == 0, rotate.stdout + rotate.stderr
        new = _secret(sm_url, pg["password_secret_arn"])["password"]
        assert new != old
        assert new not in rotate.stdout + rotate.stderr
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg["dsn"], password=old, connect_timeout=5).close()
        psycopg.connect(pg["dsn"], password=new, connect_timeout=5).close()
        after = _tap_local("status", "--json", env=env, timeout=60)
        assert after.returncode == 0, after.stdout + after.stderr
        assert json.loads(after.stdout)["services"]["postgres"]["healthy"], after.stdout
    finally:
        down = _tap_local("down", env=env, timeout=90)
        left = read_state(run_dir)
        if down.returncode != 0 or (left and pid_alive(left.get("supervisor_pid"))):
            # Never leave a stack running, even when `down` without --run-dir failed.
            _tap_local("down", "--run-dir", str(run_dir), env=env, timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert pid is None or not pid_alive(pid)
    shutil.rmtree(home, ignore_errors=True)


def test_commands_use_the_remembered_run_folder(tmp_path: Path) -> None:
    """Without ``--run-dir``: ``TAP_LOCAL_RUN_DIR``, else the folder the last ``up``
    recorded in the user's state folder; a missing stack is named, not guessed."""
    env = _isolated_environment(tmp_path)
    remembered = tmp_path / "remembered-run"
    pointer = tmp_path / "state" / "tap-iot-pipeline" / "local-run-dir"
    pointer.parent.mkdir(parents=True)
    pointer.write_text(f"{remembered}\n")
    status = _tap_local("status", env=env, timeout=60)
    assert status.returncode == 3, status.stdout + status.stderr
    assert str(remembered) in status.stderr

    chosen = tmp_path / "from-env"
    status = _tap_local("status", env=env | {"TAP_LOCAL_RUN_DIR": str(chosen)}, timeout=60)
    assert status.returncode == 3 and str(chosen) in status.stderr


def test_rotation_without_a_running_stack_is_refused(tmp_path: Path) -> None:
    env = _isolated_environment(tmp_path)
    rotate = _tap_local("rotate-db-password", "--run-dir", str(tmp_path / "none"), env=env)
    assert rotate.returncode == 3
    assert "no local stack" in rotate.stderr
