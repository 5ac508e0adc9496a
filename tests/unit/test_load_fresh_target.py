"""``tap load --target fresh`` is composed at the CLI (issue 12 item 2): the simulator's
campaign gets the throwaway pipeline from :mod:`tap_cli.load` and never imports the
harness itself. Response handling only: the pipeline here is an in-process stand-in
yielding a target whose Kinesis endpoint refuses connections, so the campaign stops
at its preflight (exit 2) without starting Locust or any server."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.load import cli
from simulator.load.target import Target
from tap_cli import main as tap_main


def test_without_a_pipeline_fresh_says_to_run_tap_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--target", "fresh", "--report", str(tmp_path / "r")])
    assert code == cli.EXIT_USAGE
    assert "run it as `tap load`" in capsys.readouterr().err


def test_the_cli_passes_the_fresh_options_to_the_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def pipeline(**options: Any) -> Iterator[Target]:
        calls.append(options)
        yield Target(
            kind="local",
            stream_name="s",
            region="eu-west-2",
            aws_environment={
                "AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:9",
                "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "x",
            },
        )

    argv = ["--target", "fresh", "--shards", "3", "--processors", "1", "--keep"]
    code = cli.main([*argv, "--report", str(tmp_path / "r")], fresh_pipeline=pipeline)
    assert code == cli.EXIT_USAGE
    assert "unreachable" in capsys.readouterr().err
    assert len(calls) == 1
    assert {k: calls[0][k] for k in ("shards", "processors", "keep")} == {
        "shards": 3,
        "processors": 1,
        "keep": True,
    }


def test_tap_load_is_the_composing_module() -> None:
    assert tap_main.COMMANDS["load"][0] == "tap_cli.load"
    # The simulator's modules import no harness or local-pipeline module
    # (import-linter checks it too).
    code = (
        "import sys, simulator.load.cli;"
        " assert not [m for m in sys.modules"
        " if m.split('.')[0] in ('e2e', 'local_pipeline')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
