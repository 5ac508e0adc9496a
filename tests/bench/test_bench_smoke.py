"""``tap bench --smoke`` runs every benchmark and reports every figure.

No timing is asserted (speed is measured by ``tap bench``, never by a test): only
that each figure is present and positive, so the benchmark cannot rot unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cli

pytestmark = [pytest.mark.bench, pytest.mark.slow]

#: Every figure of the JSON, by benchmark (docs/BENCHMARKS.md names them).
FIGURES = {
    "throughput": (
        "records_per_s",
        "copy_limit_records_per_s",
        "naive_records_per_s",
        "ratio_vs_copy",
        "ratio_vs_naive",
    ),
    "latency": ("p50_ms", "p95_ms", "p99_ms", "redis_p50_ms", "redis_p95_ms", "redis_p99_ms"),
    "handoff": ("sigterm_handoff_s", "kill_takeover_s"),
    "scale": ("records_per_s_1_process", "records_per_s_2_processes"),
    "tooling": ("unit_suite_s",),
}


@pytest.mark.timeout(600)
def test_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"

    assert cli.main(["--smoke", "--json", str(out)]) == 0

    results = json.loads(out.read_text())
    assert results["machine"]["nproc"] > 0
    for benchmark, keys in FIGURES.items():
        figures = results[benchmark]
        assert "error" not in figures, figures
        for key in keys:
            value = figures[key]
            assert isinstance(value, int | float), f"{benchmark}.{key} = {value!r}"
            assert value > 0, f"{benchmark}.{key} = {value!r}"
    assert results["handoff"]["failures"] == []


def test_unknown_benchmark_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown benchmark"):
        cli.main(["--only", "throughput,nonsense"])
