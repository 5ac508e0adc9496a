"""How long the developer loop takes: synth, the unit suite, ``make test``.

Each is a subprocess from the repository root, timed on the wall clock, run as a
developer runs it (the same interpreter as ``tap bench``, so the same venv).

* **synth**: ``python main.py`` with ``CDKTF_OUTDIR`` pointed at a temporary folder,
  so the benchmark never rewrites the ``cdktf.out/`` other tools read. Most of it is
  importing the provider bindings (about 10 s, docs/environment notes).
* **unit suite**: ``pytest tests/unit -q -p no:cacheprovider`` (``--smoke``: one
  small file, to keep the smoke run short).
* **make test**: only with ``--make-test`` (it runs every tox environment; minutes).
  "Warm" means the venv and Node packages are already bootstrapped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.machine import LoadWindow

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
#: The smoke run's stand-in for the unit suite: small, pure, no servers.
SMOKE_UNIT_TARGET: Final = "tests/unit/test_record.py"


@dataclass(frozen=True, slots=True)
class ToolingOptions:
    synth: bool = True
    unit_target: str = "tests/unit"
    make_test: bool = False


def _timed(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    with LoadWindow() as load:
        started = time.perf_counter()
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
    return {
        "command": " ".join(command),
        "seconds": seconds,
        "exit_code": done.returncode,
        # The last lines say why when it failed (and the pytest summary when not).
        "tail": done.stdout.strip().splitlines()[-1:] + done.stderr.strip().splitlines()[-3:]
        if done.returncode
        else done.stdout.strip().splitlines()[-1:],
        **load.as_json(),
    }


def run(options: ToolingOptions) -> dict[str, Any]:
    python = sys.executable
    out: dict[str, Any] = {}
    if options.synth:
        with tempfile.TemporaryDirectory(prefix="tap-bench-synth-") as outdir:
            env = os.environ | {
                "CDKTF_OUTDIR": outdir,
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            }
            synth = _timed([python, "main.py"], env)
        out["synth_s"] = synth["seconds"]
        out["synth"] = synth
    unit = _timed(
        [python, "-m", "pytest", options.unit_target, "-q", "-p", "no:cacheprovider"],
        os.environ | {"PYTHONDONTWRITEBYTECODE": "1"},
    )
    out["unit_suite_s"] = unit["seconds"]
    out["unit_suite"] = unit
    if options.make_test:
        make = _timed(["make", "test"])
        out["make_test_s"] = make["seconds"]
        out["make_test"] = make
    return out
