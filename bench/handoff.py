"""Shard handoff: SIGTERM until a peer reads the shards, ``kill -9`` until takeover.

Two processor processes (``w1``, ``w2``) share a 4-shard stream while readings
flow. One of them is stopped, and the time is taken from the signal to the moment
the *other* worker's first GetRecords on each moved shard returned (its
``shard_first_fetch`` log event); the handoff time is that of the last moved shard.
After each measurement a new worker joins, the shards rebalance 2/2, and the next
repetition stops the worker that has been running longest.

Goals: SIGTERM < 1 s (a stopping worker releases its leases at once, so a rolling
deploy pauses a shard for less than a second); ``kill -9`` <= lease duration + 1 s (a
killed worker releases nothing: its shards wait for the lease to expire, and no longer).

:func:`local_pipeline.verify.measure_sigterm_handoff` and
:func:`local_pipeline.verify.measure_kill_takeover` are the measurement, shared with the
failover integration tests.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.machine import LoadWindow
from bench.stack import BenchStack
from local_pipeline.verify import (
    ProcessorCluster,
    make_readings,
    measure_kill_takeover,
    measure_sigterm_handoff,
    send_paced,
)
from processor.contract.environment import VARIABLES_BY_NAME

SHARDS: Final = 4
SIGTERM_GOAL_S: Final = 1.0
#: kill -9 goal: the lease plus this.
KILL_SLACK_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class HandoffOptions:
    sigterm_repeats: int = 3
    kill_repeats: int = 2
    #: Lease duration of the workers; the contract's default unless set.
    lease_s: float = float(VARIABLES_BY_NAME["TAP_LEASE_DURATION_S"].default or 10)


class _Traffic(threading.Thread):
    """Readings flowing during the measurements (a handoff under load, not idle)."""

    def __init__(self, cluster: ProcessorCluster, seconds: float) -> None:
        super().__init__(name="traffic", daemon=True)
        self.cluster, self.seconds = cluster, seconds
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            # 40 devices at 10 Hz: 400 records/s spread over the shards.
            records = make_readings(40, max(1, int(self.seconds * 10)))
            send_paced(self.cluster.kinesis, self.cluster.stream, records, seconds=self.seconds)
        except BaseException as exc:  # reported, never fatal to the measurement
            self.error = exc


def _balanced(cluster: ProcessorCluster, names: list[str]) -> dict[str, list[str]]:
    held: dict[str, list[str]] = cluster.wait_balanced(names, [2, 2], timeout=60)
    if sorted(len(s) for s in held.values()) != [2, 2]:
        raise RuntimeError(f"workers did not balance 2/2: {held}\n{cluster.logs()}")
    return held


def run(stack: BenchStack, options: HandoffOptions, log_dir: Path) -> dict[str, Any]:
    cluster: ProcessorCluster = stack.cluster(
        SHARDS, "handoff", log_dir, lease_duration_s=options.lease_s
    )
    sigterm: list[float] = []
    kill: list[float] = []
    failures: list[str] = []
    repeats = options.sigterm_repeats + options.kill_repeats
    traffic = _Traffic(cluster, seconds=repeats * (options.lease_s + 15) + 30)
    try:
        names = ["w1", "w2"]
        for name in names:
            cluster.start(name)
        _balanced(cluster, names)
        traffic.start()
        serial = len(names)
        with LoadWindow() as load:
            for i in range(repeats):
                by_kill = i >= options.sigterm_repeats
                leaving_name, staying_name = names
                held = cluster.wait_balanced(names, [2, 2], timeout=1)
                moved = held[leaving_name]
                leaving = cluster.processes[leaving_name]
                survivor = cluster.processes[staying_name]
                if by_kill:
                    took = measure_kill_takeover(
                        leaving, survivor, moved, timeout=options.lease_s + 20
                    )
                else:
                    took = measure_sigterm_handoff(leaving, survivor, moved, timeout=20)
                if took is None:
                    how = "kill -9" if by_kill else "SIGTERM"
                    failures.append(f"{how} #{i + 1}: not taken over")
                else:
                    (kill if by_kill else sigterm).append(took)
                serial += 1
                joining = f"w{serial}"
                cluster.start(joining)
                names = [staying_name, joining]
                _balanced(cluster, names)
    finally:
        cluster.stop_all()
    goal_kill = options.lease_s + KILL_SLACK_S
    return {
        "sigterm_handoff_s": statistics.median(sigterm) if sigterm else 0.0,
        "sigterm_handoff_max_s": max(sigterm) if sigterm else 0.0,
        "kill_takeover_s": statistics.median(kill) if kill else 0.0,
        "kill_takeover_max_s": max(kill) if kill else 0.0,
        "goal_sigterm_s": SIGTERM_GOAL_S,
        "goal_kill_s": goal_kill,
        "lease_s": options.lease_s,
        "sigterm_runs_s": sigterm,
        "kill_runs_s": kill,
        "failures": failures,
        "traffic_error": None if traffic.error is None else repr(traffic.error),
        **load.as_json(),
    }
