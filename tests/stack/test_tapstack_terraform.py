"""``terraform init`` + ``terraform validate`` of the synthesized stacks, offline.

The provider comes from a filesystem mirror (``e2e.terraform.find_provider_mirror``:
TF_PLUGIN_MIRROR, or a known path that holds ``registry.terraform.io/hashicorp/aws``)
through a CLI config generated in a temporary folder, the same helpers the deploy
smoke uses. Without terraform or a mirror the test skips with the reason, except
under CI (``CI`` set), where it fails: CI here has both.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from stack_support import Synth

from e2e.terraform import (
    Terraform,
    find_provider_mirror,
    terraform_binary,
    terraform_environment,
    write_cli_config,
)


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run terraform validate)")
    print(f"SKIP terraform validate: {reason}")
    pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.parametrize("stack_name", ["TapStack", "TapStackProd"])
def test_terraform_validate_offline(synth: Synth, stack_name: str, tmp_path: Path) -> None:
    binary = terraform_binary()
    if binary is None:
        skip_or_fail("terraform is not on PATH")
    mirror = find_provider_mirror()
    if mirror is None:
        skip_or_fail("no provider mirror found (set TF_PLUGIN_MIRROR)")
    assert binary is not None and mirror is not None
    workdir = tmp_path / stack_name
    shutil.copytree(synth.outdir / "stacks" / stack_name, workdir)
    tf = Terraform(
        working_dir=workdir,
        log_dir=tmp_path,
        binary=binary,
        env=terraform_environment(write_cli_config(tmp_path, mirror), {"TF_PLUGIN_CACHE_DIR": ""}),
    )
    tf.run("init", "init", "-backend=false", "-input=false", "-no-color", timeout=300)
    validate = tf.run(
        "validate", "validate", "-json", "-no-color", timeout=300, separate_stdout=True
    )
    result = json.loads(validate.stdout.read_text(encoding="utf-8"))
    assert result["valid"] is True, json.dumps(result["diagnostics"], indent=1)
    assert result["error_count"] == 0
