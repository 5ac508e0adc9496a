"""``tap <command> [options]``: dispatches to the module that owns each command.

Commands are imported lazily: ``tap load`` imports Locust, whose gevent
monkey-patching must not happen in a process that also runs the CDKTF synth or
the processor, and ``tap detect`` must start fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Final

#: command -> (module with a ``main(argv) -> int``, one-line help)
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "simulate": ("simulator.cli", "simulate a sensor fleet into Kinesis, a JSONL file or stdout"),
    "load": ("tap_cli.load", "run a headless Locust campaign against Kinesis"),
    "detect": ("tap_cli.detect", "run the anomaly detectors offline over a CSV"),
    "process": ("processor.__main__", "run the processor (what the Fargate task runs)"),
    "api": ("api.cli", "serve the read API (OpenAPI at /docs) and the live plant board"),
    "local": ("local_pipeline.cli", "bring the local stack up, down, or show its status"),
    "demo": ("e2e.demo", "run the whole pipeline locally and verify it"),
    "bench": ("bench.cli", "run the benchmarks"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: tap <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `tap <command> --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"tap: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, _ = COMMANDS[name]
    module = importlib.import_module(module_name)
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
