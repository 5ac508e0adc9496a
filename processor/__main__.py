"""``python -m processor`` / ``tap process``: run the processor (the Fargate task's command).

``python -m processor migrate``: apply the schema migrations with the owner's secret
(``TAP_DB_MIGRATION_SECRET_ARN``) and provision the application login named by
``TAP_DB_SECRET_ARN`` (the migrate task's command; see processor/migrate_command.py).

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
    parser = argparse.ArgumentParser(
        prog="python -m processor",
        description="Consume the Kinesis stream into PostgreSQL and Redis (see docs/PROCESSOR.md).",
        epilog=f"configuration is read from the environment:\n{variables}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "migrate"),
        default="run",
        help="run (default): consume the stream; migrate: migrate the schema and "
        "provision the application login, with the owner's secret, then exit",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
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
    if args.command == "migrate":
        return _migrate(settings)
    return run(settings)


def _migrate(settings: ProcessorSettings) -> int:
    """Exit 0 when migrated and provisioned, 1 on a database or secret failure, 2
    when the owner's secret is not configured."""
    import logging

    from processor.migrate_command import migrate_and_provision
    from processor.postgres import DbTarget, RetryPolicy, StoreError, with_pg_retry
    from processor.secrets import SecretsError, SecretsProvider

    if not settings.db_migration_secret_arn:
        print(
            "processor: migrate needs TAP_DB_MIGRATION_SECRET_ARN (the owner's secret)",
            file=sys.stderr,
        )
        return 2
    secrets = SecretsProvider.from_settings(settings)
    try:
        # A database still starting (first deploy) is waited for, a bounded while.
        with_pg_retry(
            lambda: migrate_and_provision(
                DbTarget.from_settings(settings),
                secrets,
                owner_secret_arn=settings.db_migration_secret_arn,
                app_secret_arn=settings.db_secret_arn,
            ),
            policy=RetryPolicy(max_attempts=30),
        )
    except (StoreError, SecretsError) as exc:
        logging.getLogger("processor.migrate").error("migrate failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
