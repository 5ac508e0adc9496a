"""What every e2e scenario asserts, scoped to the devices the scenario sent (a
deployed database is shared by every scenario and every night's earlier runs):
zero loss and zero duplicates by (device, seq), and the latency targets."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from e2e.report import latency_summary, postgres_latencies
from local_pipeline.verify import Key, SendResult, StoreView, wait_until
from processor.postgres import reads

#: The issue's target: p99 event -> PostgreSQL commit <= 1 s. A shared CI runner
#: may relax it with TAP_E2E_P99_MS (the value used is printed with each result).
P99_TARGET_MS: Final = float(os.environ.get("TAP_E2E_P99_MS", "1000"))


@dataclass(frozen=True)
class Delivery:
    sent: int
    stored: int
    lost: frozenset[Key]
    unexpected: frozenset[Key]
    duplicated: tuple[tuple[str, int, int], ...]
    latency_ms: dict[str, Any]
    drain_s: float

    @property
    def ok(self) -> bool:
        return not self.lost and not self.unexpected and not self.duplicated

    def summary(self) -> str:
        few = sorted(self.lost)[:5]
        return (
            f"sent {self.sent}, stored {self.stored}, lost {len(self.lost)} {few}, "
            f"unexpected {len(self.unexpected)}, duplicated {len(self.duplicated)} "
            f"{list(self.duplicated[:5])}; latency {self.latency_ms}; drain {self.drain_s:.1f} s"
        )


def _stored(view: StoreView, device_ids: Sequence[str]) -> set[Key]:
    if not view.schema_ready():
        return set()
    return set(view._run(lambda c: reads.stored_keys(c, device_ids)))


def delivery(
    view: StoreView, sent: SendResult, device_ids: Sequence[str], *, timeout: float
) -> Delivery:
    """Wait until every sent key of these devices is stored (or ``timeout``), then
    compare: lost, stored-but-never-sent, duplicated (table-wide: any duplicate is a
    bug), and event -> PostgreSQL latency of these devices' readings."""
    began = time.monotonic()
    stored: set[Key] = set()

    def done() -> bool:
        nonlocal stored
        stored = _stored(view, device_ids)
        return sent.keys <= stored

    wait_until(done, timeout=timeout, interval=0.2)
    drain_s = time.monotonic() - began
    latencies = [ms for _, ms in view._run(lambda c: postgres_latencies(c, device_ids))]
    return Delivery(
        sent=len(sent.keys),
        stored=len(stored),
        lost=frozenset(sent.keys - stored),
        unexpected=frozenset(stored - sent.keys),
        duplicated=tuple(view.duplicate_keys()),
        latency_ms=latency_summary(latencies),
        drain_s=drain_s,
    )


def assert_exact(result: Delivery, logs: str = "") -> None:
    assert result.ok, result.summary() + ("\n" + logs if logs else "")


def assert_latency(result: Delivery, target_ms: float = P99_TARGET_MS) -> None:
    p99 = result.latency_ms["p99"]
    assert p99 is not None and p99 <= target_ms, (
        f"p99 event -> PostgreSQL {p99} ms > target {target_ms:.0f} ms ({result.latency_ms})"
    )


def dead_letters_of(view: StoreView, device_ids: Sequence[str]) -> dict[str, int]:
    """Dead letters by reason whose partition key is one of ``device_ids``."""
    wanted = set(device_ids)
    counts: dict[str, int] = {}
    for letter in view._run(reads.dead_letters):
        if letter.partition_key in wanted:
            counts[letter.reason] = counts.get(letter.reason, 0) + 1
    return counts
