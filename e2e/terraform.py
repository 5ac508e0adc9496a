"""Run the Terraform CLI on a synthesized stack: offline provider mirror, logs, timeouts.

Shared by the deploy smoke (:mod:`e2e.deploy_smoke`) and meant for anything else that
runs ``terraform`` on ``cdktf.out`` (e.g. the stack tests' ``terraform validate``), so
the mirror discovery and the CLI configuration exist once.

Offline installation: this machine kind has no route to registry.terraform.io but a
filesystem mirror of ``hashicorp/aws`` (see ../shared/notes/environment.md). A CLI
configuration whose ``provider_installation`` prefers that mirror is generated into
the run's folder and passed through ``TF_CLI_CONFIG_FILE``; nothing depends on a
fixed path or on the user's ``~/.terraformrc``. Without a mirror, plain
``terraform init`` (with internet) is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

#: Overrides the mirror search (a folder holding ``registry.terraform.io``).
MIRROR_ENV: Final = "TAP_TF_PLUGIN_MIRROR"
#: Where provider mirrors are usually installed; the first holding hashicorp/aws wins.
MIRROR_CANDIDATES: Final[tuple[str, ...]] = (
    "/opt/tf-plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)
_AWS_PROVIDER_DIR: Final = Path("registry.terraform.io", "hashicorp", "aws")


class TerraformError(RuntimeError):
    """A terraform command failed or timed out; the message names its log file."""


def terraform_binary() -> str | None:
    """The ``terraform`` executable on PATH (``TAP_TERRAFORM`` overrides), or None."""
    explicit = os.environ.get("TAP_TERRAFORM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("terraform")


def find_provider_mirror(candidates: Sequence[str] | None = None) -> Path | None:
    """The filesystem mirror root holding ``registry.terraform.io/hashicorp/aws``."""
    explicit = os.environ.get(MIRROR_ENV)
    search = [explicit] if explicit else list(candidates or MIRROR_CANDIDATES)
    for candidate in search:
        root = Path(candidate).expanduser()
        provider = root / _AWS_PROVIDER_DIR
        # A version folder with at least one platform folder in it: an empty tree
        # would make `terraform init` fail offline with a confusing message.
        if provider.is_dir() and any(p.is_dir() for p in provider.glob("*/*")):
            return root
    return None


def cli_config_text(mirror: Path) -> str:
    """HCL of a CLI configuration installing ``hashicorp/*`` from ``mirror`` only.

    ``direct`` excludes the same providers so a missing version fails fast instead
    of hanging on a registry that cannot be reached.
    """
    return (
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(mirror))}\n"
        '    include = ["registry.terraform.io/hashicorp/*"]\n'
        "  }\n"
        "  direct {\n"
        '    exclude = ["registry.terraform.io/hashicorp/*"]\n'
        "  }\n"
        "}\n"
    )


def write_cli_config(folder: Path, mirror: Path) -> Path:
    path = folder / "terraform.rc"
    path.write_text(cli_config_text(mirror), encoding="utf-8")
    return path


def terraform_environment(
    cli_config: Path | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The process environment for terraform: non-interactive, no checkpoint calls.

    ``TF_CLI_CONFIG_FILE`` is always set when a mirror is used: an inherited value
    (e.g. a user's ~/.terraformrc) would otherwise decide where providers come from.
    """
    env = dict(os.environ)
    env.update(
        {
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",  # no version check call to HashiCorp
        }
    )
    if cli_config is not None:
        env["TF_CLI_CONFIG_FILE"] = str(cli_config)
    if extra:
        env.update(extra)
    return env


@dataclass
class StepResult:
    """One terraform command: its arguments, exit code, wall time and log file."""

    name: str
    argv: list[str]
    returncode: int
    seconds: float
    log: Path
    #: Where stdout went (the log itself unless the step asked for a separate file).
    stdout: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "argv": self.argv,
            "returncode": self.returncode,
            "seconds": round(self.seconds, 2),
            "log": str(self.log),
        }


@dataclass
class Terraform:
    """``terraform -chdir=<working_dir>`` with one log file per step under ``log_dir``."""

    working_dir: Path
    log_dir: Path
    binary: str
    env: dict[str, str] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)

    def run(
        self, name: str, *args: str, timeout: float, separate_stdout: bool = False
    ) -> StepResult:
        """Run one command; raise :class:`TerraformError` on failure or timeout.

        Output goes to ``<log_dir>/terraform-<name>.log`` (not to a pipe: nothing
        large sits in memory). With ``separate_stdout`` stdout goes to
        ``terraform-<name>.stdout`` instead (machine-readable output, e.g. JSON).
        When ``TF_LOG`` is set, each step's debug log goes to its own
        ``terraform-<name>.debug.log`` (``TF_LOG_PATH``) so it never mixes with output.
        """
        argv = [self.binary, f"-chdir={self.working_dir}", *args]
        log = self.log_dir / f"terraform-{name}.log"
        stdout_path = self.log_dir / f"terraform-{name}.stdout" if separate_stdout else log
        env = dict(self.env or os.environ)
        if env.get("TF_LOG"):
            env["TF_LOG_PATH"] = str(self.log_dir / f"terraform-{name}.debug.log")
        started = time.perf_counter()
        with contextlib.ExitStack() as files:
            err = files.enter_context(log.open("wb"))
            out = files.enter_context(stdout_path.open("wb")) if separate_stdout else err
            process = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
            try:
                returncode = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # SIGINT first: terraform then stops gracefully and writes its state,
                # so a following destroy still knows what was created.
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                self.steps.append(
                    StepResult(name, argv, -1, time.perf_counter() - started, log, stdout_path)
                )
                raise TerraformError(
                    f"terraform {name} did not finish within {timeout:.0f} s; see {log}"
                ) from None
        step = StepResult(name, argv, returncode, time.perf_counter() - started, log, stdout_path)
        self.steps.append(step)
        if returncode != 0:
            raise TerraformError(
                f"terraform {name} exited {returncode}; last lines of {log}:\n{tail(log)}"
            )
        return step

    def init(self, timeout: float = 120) -> StepResult:
        return self.run("init", "init", "-input=false", "-no-color", timeout=timeout)

    def validate(self, timeout: float = 60) -> StepResult:
        return self.run("validate", "validate", "-no-color", timeout=timeout)

    def apply(self, parallelism: int = 10, timeout: float = 480) -> StepResult:
        return self.run(
            "apply",
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            f"-parallelism={parallelism}",
            timeout=timeout,
        )

    def output_json(self, timeout: float = 60) -> dict[str, Any]:
        """``terraform output -json``: name -> ``{"value", "type", "sensitive"}``."""
        step = self.run(
            "output", "output", "-json", "-no-color", timeout=timeout, separate_stdout=True
        )
        outputs: dict[str, Any] = json.loads(step.stdout.read_text(encoding="utf-8"))
        return outputs

    def destroy(self, parallelism: int = 10, timeout: float = 480) -> StepResult:
        return self.run(
            "destroy",
            "destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            f"-parallelism={parallelism}",
            timeout=timeout,
        )

    def state_resources(self, timeout: float = 60) -> list[str]:
        """Addresses still in the state (``terraform state list``); empty when none."""
        step = self.run(
            "state-list", "state", "list", "-no-color", timeout=timeout, separate_stdout=True
        )
        return [line for line in step.stdout.read_text(encoding="utf-8").splitlines() if line]


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
