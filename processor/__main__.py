"""``python -m processor`` / ``tap process``: run the processor (the Fargate task's command).

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when the worker failed,
2 when the configuration is invalid (every offending variable is named on stderr).
"""

from __future__ import annotations

import argparse
import sys

from processor.contract.environment import TASK_VARIABLES, ProcessorSettings, SettingsError


def _parser() -> argparse.ArgumentParser:
    variables = "\n".join(
        f"  {var.name:<28} {'(required) ' if var.required else ''}{var.description}"
        for var in TASK_VARIABLES
    )
    return argparse.ArgumentParser(
        prog="python -m processor",
        description="Consume the Kinesis stream into PostgreSQL and Redis (see docs/PROCESSOR.md).",
        epilog=f"configuration is read from the environment:\n{variables}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = ProcessorSettings.from_environ()
    except SettingsError as exc:
        print(f"processor: {exc}", file=sys.stderr)
        return 2

    # Imported after the settings check: a configuration error should not pay for
    # (or fail on) importing boto3, psycopg and redis.
    from processor.observability import configure_logging
    from processor.worker import run

    configure_logging(settings.log_level, worker_id=settings.worker_id)
    return run(settings)


if __name__ == "__main__":
    raise SystemExit(main())
