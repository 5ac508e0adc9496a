"""``bench.spot_detection`` refuses settings SPOT cannot be fitted with, by name,
before it needs libspot (not a project dependency)."""

from __future__ import annotations

import pytest

from bench import spot_detection


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--fit", "100"], "--fit 100"),  # 0.2 % of 100 values: no tail to fit
        (["--q", "0.01"], "--q 0.01"),  # not rarer than the tail quantile
        (["--level", "1.5"], "--level 1.5"),
    ],
)
def test_a_setting_spot_cannot_use_is_refused_by_name(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        spot_detection.main(argv)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
