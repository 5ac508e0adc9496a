"""The whole pipeline on one machine: the local servers, the synthesized stack's
stream and secrets, and N processor processes started with the synthesized task
environment (through :class:`local_pipeline.verify.ProcessorCluster`, the one class
that starts processors). The e2e suite and ``tap demo`` drive it.

Usage::

    with LocalPipeline(run_dir, processors=2) as pipeline:   # up, leases spread
        sent = pipeline.send(records)                         # PutRecords, honest keys
        pipeline.wait_stored(sent.keys, timeout=30)
        pipeline.processors["processor-1"].kill()             # chaos
        pipeline.view.stored_keys()                           # read back

Verification helpers (send, wait, compare) live in :mod:`local_pipeline.verify`; this
module owns only the lifecycle of a local pipeline. Moved here from
``e2e/scenarios.py`` (issue 12): the local pipeline is one package, ``e2e/`` keeps
the end-to-end suite.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from local_pipeline.services.local_stack import LocalServices
from local_pipeline.stack_resources import (
    LocalStackResources,
    StackResources,
    processor_names,
    synthesize,
)
from local_pipeline.verify import (
    ProcessorCluster,
    ProcessorProcess,
    Record,
    SendResult,
    StoreView,
    put_records,
    wait_until,
)


class LocalPipeline:
    """Local servers + the synthesized stack's resources + N processors."""

    def __init__(
        self,
        run_dir: Path,
        *,
        processors: int = 2,
        services: LocalServices | None = None,
        stack: StackResources | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.processor_count = processors
        self._own_services = services is None
        self.services = services or LocalServices(run_dir)
        self.stack = stack
        self.log = log or (lambda message: None)
        self.resources: LocalStackResources | None = None
        #: The processors, started from the synthesized task environment.
        self.cluster: ProcessorCluster | None = None
        self.view: StoreView | None = None
        self.timings: dict[str, float] = {}
        self._atexit_registered = False

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, *, wait_for_leases: float = 60) -> LocalPipeline:
        began = time.monotonic()
        # Synth (a subprocess; ~10-100 s when the cache is cold) overlaps the servers'
        # start-up: both are mostly waiting.
        synth: dict[str, Any] = {}

        def run_synth() -> None:
            try:
                synth["path"] = synthesize(log=self.log)
            except BaseException as exc:
                synth["error"] = exc
            synth["seconds"] = time.monotonic() - began

        thread = threading.Thread(target=run_synth, name="synth", daemon=True)
        if self.stack is None:
            thread.start()
        self.log(f"starting PostgreSQL, Redis, moto and kinesalite in {self.run_dir}")
        self.services.start()
        self.timings["services_s"] = time.monotonic() - began
        if self.stack is None:
            thread.join()
            if "error" in synth:
                raise synth["error"]
            self.stack = StackResources.load(synth["path"])
            self.timings["synth_s"] = synth["seconds"]
        self.resources = LocalStackResources.create(self.services, self.stack)
        self.cluster = self.resources.processors(self.logs_dir)
        self.view = self.cluster.view
        began = time.monotonic()
        for name in processor_names(self.processor_count):
            self.start_processor(name)
        self.log(
            f"{self.processor_count} processor(s) on {self.stack.stream_name} "
            f"({self.stack.shard_count} shards), environment from {self.stack.stack_path}"
        )
        if wait_for_leases:
            self.wait_all_shards_owned(timeout=wait_for_leases)
        self.timings["processors_s"] = time.monotonic() - began
        return self

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop_processes(timeout=30)
        if self.view is not None:
            with contextlib.suppress(Exception):
                self.view.close()
        if self._own_services:
            self.services.stop()

    def __enter__(self) -> LocalPipeline:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- processors --------------------------------------------------------------------

    @property
    def logs_dir(self) -> Path:
        return self.services.logs_dir

    @property
    def processors(self) -> dict[str, ProcessorProcess]:
        """The processor processes by name (the cluster's)."""
        return self.cluster.processes if self.cluster is not None else {}

    def start_processor(self, name: str) -> ProcessorProcess:
        """Start (or restart) ``name`` through :class:`ProcessorCluster`."""
        assert self.cluster is not None, "start() first"
        process = self.cluster.start(name)
        if not self._atexit_registered:
            # Processors are plain children (no PDEATHSIG): an exception or Ctrl-C
            # that skips stop() must not leave them consuming the stream.
            atexit.register(self.stop)
            self._atexit_registered = True
        return process

    def alive(self) -> list[str]:
        return self.cluster.alive() if self.cluster is not None else []

    def ensure_processors(self, count: int | None = None, *, timeout: float = 60) -> None:
        """Bring back every processor a scenario stopped, then wait for the shards
        to be owned again (tests call this between scenarios)."""
        for name in processor_names(count or self.processor_count):
            process = self.processors.get(name)
            if process is None or not process.alive():
                self.start_processor(name)
        self.wait_all_shards_owned(timeout=timeout)
        # A restarted processor gets its share back one lease move at a time; a
        # scenario that stops "a processor holding shards" needs the spread back.
        self.wait_balanced(timeout=timeout)

    def shard_ids(self) -> list[str]:
        """Open shards of the stream (those without an ending sequence number)."""
        client = self.services.kinesis_client()
        shards = client.list_shards(StreamName=self.stream_name)["Shards"]
        return [
            s["ShardId"] for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]
        ]

    def wait_all_shards_owned(self, *, timeout: float) -> dict[str, str | None]:
        assert self.view is not None
        wanted = set(self.shard_ids())
        owners: dict[str, str | None] = {}

        def owned() -> bool:
            nonlocal owners
            owners = self.view.owners() if self.view is not None else {}
            live = set(self.alive())
            return wanted <= {s for s, o in owners.items() if o in live}

        if not wait_until(owned, timeout=timeout, interval=0.2):
            raise TimeoutError(
                f"shards {sorted(wanted)} not all owned after {timeout:.0f} s: {owners}\n"
                + self.tail_logs()
            )
        return owners

    def wait_balanced(self, *, timeout: float) -> dict[str, list[str]]:
        """Wait until the live processors hold shard counts that differ by at most 1."""
        assert self.view is not None
        held: dict[str, list[str]] = {}

        def balanced() -> bool:
            nonlocal held
            assert self.view is not None
            owners = self.view.owners()
            live = self.alive()
            held = {n: sorted(s for s, o in owners.items() if o == n) for n in live}
            counts = [len(v) for v in held.values()]
            return (
                bool(counts)
                and sum(counts) >= len(self.shard_ids())
                and (max(counts) - min(counts) <= 1)
            )

        wait_until(balanced, timeout=timeout, interval=0.2)
        return held

    def tail_logs(self, lines: int = 20) -> str:
        return self.cluster.logs(lines) if self.cluster is not None else ""

    # --- data --------------------------------------------------------------------------

    @property
    def stream_name(self) -> str:
        assert self.stack is not None
        return self.stack.stream_name

    def kinesis_client(self) -> Any:
        return self.services.kinesis_client()

    def redis_client(self) -> Any:
        return self.services.redis.client()

    def send(self, records: Sequence[Record]) -> SendResult:
        return put_records(self.kinesis_client(), self.stream_name, records)

    def changed_variables(self) -> list[str]:
        """The task variables the local processors run with a local value (the
        documented overrides), from the first processor's environment."""
        from local_pipeline.stack_resources import changed_variables

        assert self.cluster is not None and self.stack is not None
        return changed_variables(self.stack, self.cluster.env("probe", health_port=1))
