"""The pure resolver of per-device detector settings (processor/core/overrides.py)."""

from __future__ import annotations

import pytest

from processor.core.detection import DetectorConfig
from processor.core.overrides import SETTINGS, DetectorOverrides, OverrideRow


def rows(*items: tuple[str, str, str, float | None]) -> list[OverrideRow]:
    return [OverrideRow(*item, row_id=f"id={i}") for i, item in enumerate(items, start=1)]


def test_most_specific_wins_device_then_longest_prefix_then_type() -> None:
    overrides = DetectorOverrides.from_rows(
        rows(
            ("sensor_type", "temperature", "warning_high", 100.0),
            ("sensor_type", "temperature", "z_warning", 6.0),
            ("prefix", "fac01-", "warning_high", 95.0),
            ("prefix", "fac01-l02-", "temperature.warning_high", 90.0),
            ("device", "fac01-l02-m01-temperature-0", "warning_high", 80.0),
            ("device", "fac01-l02-m01-temperature-0", "critical_high", None),
            ("sensor_type", "pressure", "stuck_min_count", 60.0),
        )
    )
    assert not overrides.errors
    other = overrides.config_for("fac02-l01-m01-temperature-0", "temperature")
    assert other.temperature.warning_high == 100.0 and other.z_warning == 6.0
    assert (
        overrides.config_for("fac01-l01-m01-temperature-0", "temperature").temperature.warning_high
        == 95.0
    )
    assert (
        overrides.config_for("fac01-l02-m03-temperature-0", "temperature").temperature.warning_high
        == 90.0
    )
    device = overrides.config_for("fac01-l02-m01-temperature-0", "temperature")
    assert device.temperature.warning_high == 80.0 and device.temperature.critical_high is None
    assert device.z_warning == 6.0  # the type's row still applies where nothing nearer says
    pressure = overrides.config_for("fac01-l02-m01-pressure-0", "pressure")
    assert pressure.stuck_min_count == 60 and isinstance(pressure.stuck_min_count, int)
    # The untyped "fac01-" row reaches the pressure sensor too; the typed one does not.
    assert pressure.pressure.warning_high == 95.0
    assert pressure.pressure.critical_high == DetectorConfig().pressure.critical_high
    # Cached: the same object for the same device.
    assert overrides.config_for("fac01-l02-m01-pressure-0", "pressure") is pressure


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("zone", "fac01", "warning_high", 1.0), "scope 'zone' is not one of"),
        (("prefix", "", "warning_high", 1.0), "match is empty"),
        (("sensor_type", "humidity", "warning_high", 1.0), "not an analog sensor type"),
        (("device", "d", "warning_hihg", 1.0), "setting 'warning_hihg' is unknown"),
        (("device", "d", "silence_after_seconds", 600.0), "is unknown"),
        (("device", "d", "humidity.warning_high", 1.0), "is unknown"),
        (("device", "d", "pressure.z_warning", 1.0), "is unknown"),
        (("device", "d", "z_warning", None), "must not be NULL"),
        (("device", "d", "stuck_min_count", 2.5), "whole number"),
        (("device", "d", "z_warning", float("nan")), "not a finite number"),
        (("device", "d", "hysteresis", -1.0), "must not be negative"),
        (("device", "d", "statistical", 2.0), "must be 0 or 1"),
    ],
)
def test_a_bad_row_is_refused_naming_the_row_and_field(
    row: tuple[str, str, str, float | None], message: str
) -> None:
    overrides = DetectorOverrides.from_rows(
        [OverrideRow(*row, row_id="id=7"), OverrideRow("device", "d", "z_warning", 6.0, "id=8")]
    )
    (error,) = overrides.errors
    assert error.startswith("row id=7:") and message in error
    assert overrides.config_for("d", "temperature").z_warning == 6.0  # the good row applies


def test_an_untyped_limit_on_a_prefix_applies_to_every_type_under_it() -> None:
    overrides = DetectorOverrides.from_rows(rows(("prefix", "fac01-", "hysteresis", 4.0)))
    assert overrides.config_for("fac01-l01-m01-pressure-0", "pressure").pressure.hysteresis == 4.0
    config = overrides.config_for("fac01-l01-m01-temperature-0", "temperature")
    assert config.temperature.hysteresis == 4.0


def test_settings_are_the_detector_knobs() -> None:
    assert {"warning_high", "hysteresis", "z_warning", "drift_h", "stuck_min_count"} <= SETTINGS
    assert not {"temperature", "pressure", "silence_after_seconds"} & SETTINGS
    assert not DetectorOverrides.from_rows([])
