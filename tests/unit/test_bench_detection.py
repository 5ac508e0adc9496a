"""bench.detection's degradation recall by start day: the buckets cover every
degradation label the scorer counted, with the scorer's own hits (no second
matcher)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import detection


def test_degradation_by_start_day_adds_up_to_the_scorers_figures(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    args = ["--profile", "month", "--devices", "12", "--hours", str(20 * 24), "--seeds", "3"]
    detection.main([*args, "--json", str(out)])
    result = json.loads(out.read_text())
    buckets = result["degradation_by_start_day"]
    assert [(b["from_day"], b["to_day"]) for b in buckets] == [
        (0.0, 7.0),
        (7.0, 14.0),
        (14.0, None),
    ]
    scored = result["score"]["by_scenario"].get("degradation", {"labels": 0, "detected": 0})
    assert scored["labels"] >= 1  # seed 3's fleet of 12 has one, started on day 7-14
    assert sum(b["labels"] for b in buckets) == scored["labels"]
    assert sum(b["detected"] for b in buckets) == scored["detected"]
