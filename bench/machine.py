"""Facts about the machine that go beside every figure: cores, CPU model, load.

The project machine is shared (several engineers run suites at once), so the
1-minute load average is sampled around each benchmark and printed with its figure:
a rate measured at load 5 on 2 cores is not the rate of a quiet machine.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any


def load_average() -> float:
    """The 1-minute load average (0.0 where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0.0
    return round(pages * size / 2**30, 1)


@dataclass(frozen=True, slots=True)
class Machine:
    nproc: int
    cpu_model: str
    memory_gib: float
    python: str
    started_at: str
    load_at_start: float

    @classmethod
    def describe(cls) -> Machine:
        return cls(
            nproc=os.cpu_count() or 0,
            cpu_model=_cpu_model(),
            memory_gib=_memory_gib(),
            python=platform.python_version(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            load_at_start=load_average(),
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class LoadWindow:
    """The load average at the start and end of a measurement (``with`` block)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.end = 0.0

    def __enter__(self) -> LoadWindow:
        self.start = load_average()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = load_average()

    def as_json(self) -> dict[str, float]:
        return {"load_start": self.start, "load_end": self.end}
