"""The bank-throughput benchmark's verdict: a drop over the goal fails the command."""

from __future__ import annotations

from typing import Any

import pytest

from bench import bank_throughput


def _result(ref_rate: float, new_rate: float, ref_cpu: float, new_cpu: float) -> dict[str, Any]:
    def bank(rate: float, cpu: float) -> dict[str, Any]:
        return {
            "records_per_s": rate,
            "cpu_us_per_record": cpu,
            "rounds": [{"records_per_s": rate, "cpu_us_per_record": cpu}],
        }

    return {
        "records_per_round": 59_000,
        "devices": 500,
        "batch_records": 1_000,
        "rounds_per_bank": 1,
        "postgres_durable": True,
        "banks": {"reference": bank(ref_rate, ref_cpu), "current": bank(new_rate, new_cpu)},
        "rate_drop": 1 - new_rate / ref_rate,
        "cpu_drop": 1 - ref_cpu / new_cpu,
        "goal_max_drop": bank_throughput.GOAL_MAX_DROP,
        "load_start": 1.0,
        "load_end": 1.0,
    }


def test_a_drop_within_the_goal_is_not_a_miss() -> None:
    _, missed = bank_throughput.report(_result(10_000, 9_500, 50.0, 52.0))

    assert missed == []


def test_a_rate_drop_over_the_goal_is_a_miss() -> None:
    _, missed = bank_throughput.report(_result(10_000, 8_500, 50.0, 52.0))

    assert [m.split(":")[0] for m in missed] == ["MISSED"]
    assert "throughput drop 15.0%" in missed[0]


def test_a_cpu_drop_over_the_goal_is_a_miss_too() -> None:
    _, missed = bank_throughput.report(_result(10_000, 9_900, 50.0, 60.0))

    assert len(missed) == 1 and "CPU per record 16.7%" in missed[0]


def test_the_command_exits_1_on_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bank_throughput, "run", lambda **_: _result(10_000, 5_000, 50.0, 100.0))

    assert bank_throughput.main([]) == 1


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--records", "10"]])
def test_bad_parameters_are_refused_with_their_name(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        bank_throughput.main(argv)

    assert argv[0] in capsys.readouterr().err
