"""``python -m bench.bank_throughput``: both banks still run through the pipeline
round and every figure is reported. No figure is judged here (a tiny run measures
warm-up, not throughput): the goal is judged by the benchmark itself."""

from __future__ import annotations

import pytest

from bench import bank_throughput

pytestmark = [pytest.mark.bench, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_both_banks_run_through_the_pipeline_and_every_figure_is_reported() -> None:
    result = bank_throughput.run(records=3_000, devices=50, rounds=1)

    assert set(result["banks"]) == {"reference", "current"}
    for name, figures in result["banks"].items():
        assert figures["records_per_s"] > 0, name
        assert figures["cpu_us_per_record"] > 0, name
        assert len(figures["rounds"]) == 1, name
    assert result["records_per_round"] == 2_000  # the first batch warms up, untimed
    table, _ = bank_throughput.report(result)
    assert "reference" in table and "current" in table
