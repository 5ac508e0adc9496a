"""``tap bench --only reads --smoke``: the read benchmark still runs end to end (a
throwaway pipeline with the API, writers and read users in one campaign) and
reports every figure. No figure is judged: speed is measured by ``tap bench``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cli

pytestmark = [pytest.mark.bench, pytest.mark.slow]

FIGURES = (
    "writes_per_s",
    "reads_per_s",
    "latest_p50_ms",
    "latest_p99_ms",
    "latest_postgres_p99_ms",
    "latest_ratio_p99",
    "board_p50_ms",
    "board_p99_ms",
    "board_postgres_p99_ms",
    "board_ratio_p99",
    "latest_api_cpu_ms",
    "latest_postgres_api_cpu_ms",
    "board_api_cpu_ms",
    "board_postgres_api_cpu_ms",
)


@pytest.mark.timeout(400)
def test_reads_smoke_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    report = tmp_path / "campaign"

    code = cli.main(
        ["--only", "reads", "--smoke", "--json", str(out), "--reads-report", str(report)]
    )

    results = json.loads(out.read_text())
    reads = results["reads"]
    assert code == 0, reads
    for key in FIGURES:
        value = reads[key]
        assert isinstance(value, int | float) and value > 0, f"reads.{key} = {value!r}"
    assert reads["read_failures"] == 0
    # Cached and bypassed answers were both made, in the same run.
    answered = reads["answered_from"]
    assert answered["/devices/{id}/latest"].get("redis/hit", 0) > 0, answered
    assert set(answered["/devices/{id}/latest?source=postgres"]) == {"postgres/bypassed"}
    assert set(answered["/devices?facility&line&source=postgres"]) == {"postgres/bypassed"}
    assert reads["load_average_during"]["samples"] > 0
    # The CPU budget saw every part of the pipeline working during the campaign.
    cpu = reads["cpu_budget"]
    for component in (
        "tap api",
        "postgresql (all backends)",
        "redis-server",
        "kinesalite",
        "processor 1",
        "locust (writers, readers, listeners)",
    ):
        assert cpu["components"][component]["cpu_s"] > 0, (component, cpu)
    assert cpu["total_cores"] > 0 and "projected_cores_at_offered_load" in cpu
    assert isinstance(reads["goals_missed"], list)
    assert (report / "summary.json").exists()
