"""CPU seconds each process of a benchmark's pipeline used, as cores per component.

Why: issue 13's goal load (2,000 readings/s written and 500 requests/s read at the
same time) runs every part of the pipeline on one 2-core machine: the Locust load
generator, kinesalite, the processors, PostgreSQL, Redis, the API. Latencies alone
cannot say whether that load fits on the machine at all; the CPU each part used
during the campaign can. A component that used 0.8 cores while its load was only
reached at 40 % needs about 2 cores at the offered load, whatever the API does.

How: a thread samples, every ``interval_s``, the user + system CPU times of every
descendant of this process (``psutil``; the servers, the processors, the API and
Locust are all started by the benchmark) and of this process itself. A process's
use is its last sample minus its first (zero for a process born during the window),
so a PostgreSQL backend that ends mid-run still counts up to its last sample, and a
process identity is (pid, create time): a reused pid is another process. The
arithmetic is pure (:func:`budget`, unit-tested on given samples); the sampler is the
only I/O.

Components are told apart by command line (:func:`component_of`): PostgreSQL's
postmaster and every backend, ``redis-server``, kinesalite (node), each
``python -m processor`` (numbered by start), ``tap api``, Locust (writers, readers
and stream listeners share its process; with ``--processes N`` its workers too), the
AWS emulator (moto, Secrets Manager), and the benchmark process itself (``tap
bench``: the load sampler, the campaign's supervision). What matches nothing is
"other".
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final


class Component(enum.StrEnum):
    LOCUST = "locust (writers, readers, listeners)"
    KINESALITE = "kinesalite"
    PROCESSOR = "processor"
    POSTGRES = "postgresql (all backends)"
    REDIS = "redis-server"
    API = "tap api"
    MOTO = "moto (secrets)"
    BENCH = "tap bench (this process)"
    OTHER = "other"


#: A component above this share of the machine's cores leaves no room: the goal's
#: load does not fit when the components together use at least this.
SATURATED: Final = 0.9


def component_of(name: str, cmdline: Sequence[str]) -> Component:
    """The component a process belongs to, from its name and command line."""
    text = " ".join(cmdline)
    if name.startswith(("postgres", "postmaster")) or text.startswith("postgres"):
        return Component.POSTGRES
    if name.startswith("redis-server") or "redis-server" in text:
        return Component.REDIS
    if "kinesalite" in text:
        return Component.KINESALITE
    if "locust" in text:
        return Component.LOCUST
    if "-m processor" in text:
        return Component.PROCESSOR
    if "moto.server" in text:
        return Component.MOTO
    if "tap_cli.main api" in text or text.endswith("tap api"):
        return Component.API
    return Component.OTHER


@dataclass(frozen=True, slots=True)
class CpuSample:
    """One process's CPU time (user + system, seconds) at one moment."""

    pid: int
    created: float
    component: Component
    cpu_s: float

    @property
    def key(self) -> tuple[int, float]:
        return (self.pid, self.created)


@dataclass(frozen=True, slots=True)
class ComponentCpu:
    cpu_s: float
    cores: float
    processes: int

    def as_json(self) -> dict[str, float | int]:
        return {
            "cpu_s": round(self.cpu_s, 2),
            "cores": round(self.cores, 3),
            "processes": self.processes,
        }


def budget(
    first: Mapping[tuple[int, float], CpuSample],
    last: Mapping[tuple[int, float], CpuSample],
    wall_s: float,
) -> dict[str, ComponentCpu]:
    """CPU seconds and cores per component over a window of ``wall_s`` seconds.

    ``first``: each process's sample at the window's start; ``last``: each process's
    latest sample (processes that ended keep their last one). Processors are numbered
    ``processor 1``, ``processor 2`` by start time, so each is its own line."""
    if wall_s <= 0:
        raise ValueError(f"the window must last, got {wall_s} s")
    processors = sorted(
        (s for s in last.values() if s.component is Component.PROCESSOR),
        key=lambda s: (s.created, s.pid),
    )
    numbered = {s.key: f"{Component.PROCESSOR.value} {i}" for i, s in enumerate(processors, 1)}
    cpu: dict[str, float] = {}
    count: dict[str, int] = {}
    for key, sample in last.items():
        start = first.get(key)
        used = sample.cpu_s - (start.cpu_s if start is not None else 0.0)
        label = numbered.get(key, sample.component.value)
        cpu[label] = cpu.get(label, 0.0) + max(0.0, used)
        count[label] = count.get(label, 0) + 1
    return {
        label: ComponentCpu(cpu[label], cpu[label] / wall_s, count[label])
        for label in sorted(cpu, key=lambda name: -cpu[name])
    }


#: What drives each component's CPU, for the projection to the offered load.
_WRITE_DRIVEN: Final = (Component.KINESALITE.value, Component.PROCESSOR.value)
_READ_DRIVEN: Final = (Component.API.value,)
#: The harness's own work (sampling, supervising) does not grow with the load.
_LOAD_FREE: Final = (Component.BENCH.value, Component.MOTO.value)


def projected_cores(
    components: Mapping[str, ComponentCpu], write_scale: float, read_scale: float
) -> dict[str, float]:
    """Cores each component would need at the offered load, linearly: its cores times
    offered / reached of the load that drives it (writes: kinesalite, processors;
    reads: the API; both: PostgreSQL, Redis, Locust and the rest, scaled by the larger
    of the two; the benchmark process and moto not at all). A lower bound where a
    component's cost grows faster than its load (queues, contention), so "does not
    fit" is safe to conclude from it, "fits" not."""
    out: dict[str, float] = {}
    for label, c in components.items():
        if label.startswith(_LOAD_FREE):
            scale = 1.0
        elif label.startswith(_WRITE_DRIVEN):
            scale = write_scale
        elif label.startswith(_READ_DRIVEN):
            scale = read_scale
        else:
            scale = max(write_scale, read_scale)
        out[label] = round(c.cores * scale, 3)
    return out


def summary(
    components: Mapping[str, ComponentCpu],
    wall_s: float,
    cores: int,
    *,
    write_scale: float | None = None,
    read_scale: float | None = None,
) -> dict[str, Any]:
    """The JSON document of a budget: per component, the total, whether the
    components together saturated the machine, and (given the offered / reached
    ratios of writes and reads) the cores the offered load would need."""
    total = sum(c.cores for c in components.values())
    out: dict[str, Any] = {
        "wall_s": round(wall_s, 1),
        "machine_cores": cores,
        "total_cores": round(total, 3),
        "saturated": total >= SATURATED * cores,
        "components": {label: c.as_json() for label, c in components.items()},
    }
    if write_scale is not None and read_scale is not None:
        projected = projected_cores(components, write_scale, read_scale)
        out["write_scale"] = round(write_scale, 3)
        out["read_scale"] = round(read_scale, 3)
        out["projected_cores_at_offered_load"] = projected
        out["projected_total_cores"] = round(sum(projected.values()), 3)
        out["fits_machine"] = sum(projected.values()) < SATURATED * cores
    return out


def _samples(processes: Iterable[Any]) -> dict[tuple[int, float], CpuSample]:
    import psutil

    out: dict[tuple[int, float], CpuSample] = {}
    for process in processes:
        try:
            with process.oneshot():
                times = process.cpu_times()
                sample = CpuSample(
                    pid=process.pid,
                    created=process.create_time(),
                    component=(
                        Component.BENCH
                        if process.pid == os.getpid()
                        else component_of(process.name(), process.cmdline())
                    ),
                    cpu_s=times.user + times.system,
                )
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        out[sample.key] = sample
    return out


class CpuBudgetSampler:
    """Samples this process and its descendants every ``interval_s`` in a thread,
    from ``__enter__`` to ``__exit__``; :meth:`as_json` is the budget of that window."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.first: dict[tuple[int, float], CpuSample] = {}
        self.last: dict[tuple[int, float], CpuSample] = {}
        self.wall_s = 0.0
        self._started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-budget", daemon=True)

    def _sample(self) -> dict[tuple[int, float], CpuSample]:
        import psutil

        me = psutil.Process()
        return _samples([me, *me.children(recursive=True)])

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.last.update(self._sample())

    def __enter__(self) -> CpuBudgetSampler:
        self._started = time.monotonic()
        self.first = self._sample()
        self.last = dict(self.first)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.last.update(self._sample())
        self.wall_s = time.monotonic() - self._started

    def as_json(
        self, *, write_scale: float | None = None, read_scale: float | None = None
    ) -> dict[str, Any]:
        cores = os.cpu_count() or 1
        return summary(
            budget(self.first, self.last, self.wall_s),
            self.wall_s,
            cores,
            write_scale=write_scale,
            read_scale=read_scale,
        )
