"""``terraform init`` + ``terraform validate`` of the synthesized stacks, offline.

The provider comes from a filesystem mirror (TF_PLUGIN_MIRROR, or a known path that
holds ``registry.terraform.io/hashicorp/aws``) through a CLI config generated in a
temporary folder. Without terraform or a mirror the test skips with the reason,
except under CI (``CI`` set), where it fails: CI here has both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from stack_support import Synth

KNOWN_MIRRORS = (
    "/opt/tf-plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)


def find_mirror() -> Path | None:
    candidates = [os.environ.get("TF_PLUGIN_MIRROR", ""), *KNOWN_MIRRORS]
    for candidate in filter(None, candidates):
        root = Path(candidate).expanduser()
        if (root / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return root
    return None


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run terraform validate)")
    print(f"SKIP terraform validate: {reason}")
    pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.parametrize("stack_name", ["TapStack", "TapStackProd"])
def test_terraform_validate_offline(synth: Synth, stack_name: str, tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        skip_or_fail("terraform is not on PATH")
    mirror = find_mirror()
    if mirror is None:
        skip_or_fail("no provider mirror found (set TF_PLUGIN_MIRROR)")
    cli_config = tmp_path / "terraform.rc"
    cli_config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n'
    )
    workdir = tmp_path / stack_name
    shutil.copytree(synth.outdir / "stacks" / stack_name, workdir)
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(cli_config),
        "TF_IN_AUTOMATION": "1",
        "TF_PLUGIN_CACHE_DIR": "",
        "CHECKPOINT_DISABLE": "1",
    }
    init = subprocess.run(
        [str(terraform), "init", "-backend=false", "-input=false", "-no-color"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert init.returncode == 0, init.stdout + init.stderr
    validate = subprocess.run(
        [str(terraform), "validate", "-json", "-no-color"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    result = json.loads(validate.stdout)
    assert result["valid"] is True, json.dumps(result["diagnostics"], indent=1)
    assert result["error_count"] == 0
