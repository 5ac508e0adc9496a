"""``tap api``: serve the read API and the live plant board with uvicorn.

Configuration is the environment (:mod:`processor.contract.api_environment`), as in
the task; ``--host``/``--port`` override the bind address for local use. A bad
variable stops start-up with a message naming it (exit status 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from processor.contract.api_environment import API_VARIABLES, ApiSettings
from processor.contract.environment import SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tap api",
        description="Serve the read-only API (OpenAPI at /docs) and the live plant board "
        "(/board/). Configured by the environment: " + ", ".join(v.name for v in API_VARIABLES),
    )
    parser.add_argument("--host", help="bind address (default TAP_API_HOST)")
    parser.add_argument("--port", type=int, help="port (default TAP_API_PORT)")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if args.host:
        environ["TAP_API_HOST"] = args.host
    if args.port is not None:
        environ["TAP_API_PORT"] = str(args.port)
    try:
        settings = ApiSettings.from_environ(environ)
    except SettingsError as exc:
        print(f"tap api: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")

    import uvicorn

    from api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        # Open event streams must not hold a deploy's stop for the ECS stop timeout.
        timeout_graceful_shutdown=2,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
