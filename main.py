#!/usr/bin/env python3
"""CDKTF app: ``cdktf synth`` (or ``make synth``) writes cdktf.out/stacks/TapStack.

The configuration is read and validated before the provider bindings are imported,
so a bad variable stops synth in well under a second with a message naming it.
Where the Terraform state will live is printed on every synth; a risky choice the
user explicitly accepted (local state for a shared deployment) is printed loudly.
"""

from __future__ import annotations

import os
import sys

from cdktf import App

from lib.config import ConfigError
from lib.read_api_config import deployment_config


def main() -> int:
    app = App()
    try:
        # The stack's and the read API's settings (TAP_API_*): without a certificate
        # synth stops here, naming it.
        config = deployment_config(os.environ, context=app.node.try_get_context)
    except ConfigError as exc:
        print(f"cdktf synth stopped: {exc}", file=sys.stderr)
        return 2
    for warning in config.warnings():
        banner = "!" * 78
        print(f"{banner}\nWARNING: {warning}\n{banner}", file=sys.stderr)
    if config.state_bucket:
        print(f"state: s3://{config.state_bucket}/{config.effective_state_key}", file=sys.stderr)
    else:
        print(f"state: local file {config.local_state_path}", file=sys.stderr)
    from lib.tap_stack import TapStack  # the slow import (provider bindings)

    TapStack(app, config)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
