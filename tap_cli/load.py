"""``tap load``: the simulator's Locust campaign (:mod:`simulator.load.cli`), with
``--target fresh`` composed here.

A fresh target is a throwaway local pipeline: the local servers (local_pipeline.services), a
stream, N ``python -m processor`` processes started by
:class:`local_pipeline.verify.ProcessorCluster` with the synthesized task environment
(as the tests start them), ``tap api`` when the campaign reads (``api=True``: ``--readers`` or
``--sse-listeners``), and the campaign :class:`Target` pointing at it all. It is composed at the CLI
because the simulator may not import the harness (the import rules in pyproject.toml;
this module moved here from ``simulator/load/local_pipeline.py``, issue 12).

Everything is stopped and the run folder removed on exit (kept with ``keep=True``:
logs of the servers and processors are in ``<run_dir>/logs``).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simulator.load.cli import main as load_main
from simulator.load.target import Target


def main(argv: list[str] | None = None) -> int:
    return load_main(argv, fresh_pipeline=fresh_local_pipeline)


@contextlib.contextmanager
def fresh_local_pipeline(
    *,
    shards: int = 4,
    processors: int = 2,
    keep: bool = False,
    log: Any = print,
    api: bool = False,
) -> Iterator[Target]:
    from local_pipeline.services.local_stack import LocalServices
    from local_pipeline.verify import ProcessorCluster

    run_dir = Path(tempfile.mkdtemp(prefix=f"tap-load-{time.strftime('%Y%m%d-%H%M%S')}-"))
    run_dir.chmod(0o755)  # PostgreSQL may run as another user (see e2e.fixtures)
    services = LocalServices(run_dir)
    cluster = None
    api_component = None
    try:
        log(f"starting the local servers in {run_dir}")
        services.start()
        stream = f"tap-load-{uuid.uuid4().hex[:8]}"
        services.create_stream(stream, shards)
        cluster = ProcessorCluster(
            services,
            stream,
            services.postgres.database,
            services.create_db_secret(),
            services.create_redis_secret(),
            run_dir / "logs",
        )
        names = [f"load-p{i + 1}" for i in range(processors)]
        for name in names:
            cluster.start(name)
        if processors:
            log(f"waiting for {processors} processor(s) to hold the {shards} shards")
            held = cluster.wait_balanced(names, _balanced(shards, processors), timeout=90)
            if sum(len(v) for v in held.values()) != shards:
                raise RuntimeError(
                    f"processors did not take the {shards} shards within 90 s (held: {held});"
                    f" see {run_dir / 'logs'}"
                )
        api_url = None
        if api:
            # After the processors: their start migrated the database the API reads.
            from local_pipeline.api_component import ApiComponent

            log("starting the read API (tap api)")
            api_component = ApiComponent(services, run_dir / "logs")
            api_component.start()
            api_url = api_component.url
        redis = services.redis
        yield Target(
            kind="local",
            stream_name=stream,
            region=services.client_environment()["AWS_REGION"],
            aws_environment=services.client_environment(),
            pg_dsn=services.postgres.dsn(),
            redis_url=redis.url(),
            redis_ca=str(redis.ca_path) if redis.ca_path else None,
            source=f"fresh local pipeline in {run_dir}",
            api_url=api_url,
        )
    finally:
        if api_component is not None:
            with contextlib.suppress(Exception):
                api_component.stop()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.stop_all()
        services.stop()
        if keep:
            log(f"run folder kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def _balanced(shards: int, processors: int) -> list[int]:
    """Expected held-shard counts when ``shards`` are spread over ``processors``."""
    base, extra = divmod(shards, processors)
    return [base + (1 if i < extra else 0) for i in range(processors)]
