"""Per-device and per-type detector settings a plant changes without a deploy.

Rows of the ``tap.detector_overrides`` table (``processor/migrations``; read at run
time by :mod:`processor.detector_overrides`) say "for these devices, this setting
has this value". This module validates them and resolves the settings of one
device, most specific first:

    ``device`` (exact device id)  >  ``prefix`` (longest matching device-id
    prefix)  >  ``sensor_type``  >  the processor's defaults.

A setting is either a field of the device's sensor-type limits
(:class:`~processor.core.detection.AnalogLimits`: ``warning_high``,
``hysteresis``, ``min_scale``, ...; a NULL value disables a limit) or a scalar of
:class:`~processor.core.detection.DetectorConfig` (``z_warning``,
``stuck_min_count``, ``drift_h``, ...). ``silence_after_seconds`` is not
overridable here (silence is judged per shard, not per device config). A
limit setting may name its sensor type, ``temperature.warning_high``: it then
applies only to devices of that type (a ``prefix`` row for a production line
covers its temperature *and* pressure sensors).

Pure: no I/O. A row that is not valid is refused with a message naming the row
and the field, and the other rows still apply (one typo must not switch a
plant's overrides off).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from processor.contract.record import SensorType
from processor.core.detection import AnalogLimits, DetectorConfig


class Scope(enum.StrEnum):
    DEVICE = "device"
    PREFIX = "prefix"
    SENSOR_TYPE = "sensor_type"


#: DetectorConfig fields that are not per-device settings.
_NOT_OVERRIDABLE: Final = frozenset({"temperature", "pressure", "silence_after_seconds"})
_LIMIT_FIELDS: Final = {f.name: f for f in dataclasses.fields(AnalogLimits)}
_CONFIG_FIELDS: Final = {
    f.name: f for f in dataclasses.fields(DetectorConfig) if f.name not in _NOT_OVERRIDABLE
}
#: Every setting name a row may carry.
SETTINGS: Final = frozenset(_LIMIT_FIELDS) | frozenset(_CONFIG_FIELDS)


@dataclass(frozen=True, slots=True)
class OverrideRow:
    """One row as stored; ``row_id`` names it in error messages."""

    scope: str
    match: str
    setting: str
    value: float | None
    row_id: str = ""


@dataclass(frozen=True, slots=True)
class _Valid:
    scope: Scope
    match: str
    setting: str
    value: Any


def _validate(row: OverrideRow) -> _Valid | str:
    name = row.row_id or f"({row.scope}, {row.match}, {row.setting})"
    try:
        scope = Scope(row.scope)
    except ValueError:
        return f"row {name}: scope {row.scope!r} is not one of {', '.join(Scope)}"
    if not row.match:
        return f"row {name}: match is empty"
    if scope is Scope.SENSOR_TYPE and row.match not in (
        SensorType.TEMPERATURE.value,
        SensorType.PRESSURE.value,
    ):
        return f"row {name}: match {row.match!r} is not an analog sensor type"
    typed, _, leaf = row.setting.rpartition(".")
    if typed and (typed not in ("temperature", "pressure") or leaf not in _LIMIT_FIELDS):
        return (
            f"row {name}: setting {row.setting!r} is unknown (a typed setting is "
            f"temperature.<limit> or pressure.<limit>)"
        )
    if leaf not in SETTINGS:
        known = ", ".join(sorted(SETTINGS))
        return f"row {name}: setting {row.setting!r} is unknown (known: {known})"
    spec = _LIMIT_FIELDS.get(leaf) or _CONFIG_FIELDS[leaf]
    value = row.value
    nullable = leaf in _LIMIT_FIELDS and "None" in str(spec.type)
    if value is None:
        if not nullable:
            return f"row {name}: value of {row.setting} must not be NULL"
        return _Valid(scope, row.match, row.setting, None)
    if not math.isfinite(value):
        return f"row {name}: value of {row.setting} is {value!r}, not a finite number"
    kind = str(spec.type)
    if kind == "bool":
        if value not in (0.0, 1.0):
            return f"row {name}: value of {row.setting} must be 0 or 1, got {value:g}"
        return _Valid(scope, row.match, row.setting, bool(value))
    if kind == "int":
        if value != int(value) or value < 1:
            return f"row {name}: value of {row.setting} must be a whole number >= 1, got {value:g}"
        return _Valid(scope, row.match, row.setting, int(value))
    if value < 0 and row.setting not in ("warning_low", "critical_low"):
        return f"row {name}: value of {row.setting} must not be negative, got {value:g}"
    return _Valid(scope, row.match, row.setting, float(value))


def _apply(merged: dict[str, Any], values: Mapping[str, Any], sensor_type: str) -> None:
    """Untyped settings, then the ones typed for this sensor type (more specific)."""
    typed_prefix = sensor_type + "."
    for key, value in values.items():
        if "." not in key:
            merged[key] = value
    for key, value in values.items():
        if key.startswith(typed_prefix):
            merged[key[len(typed_prefix) :]] = value


@dataclass(frozen=True)
class DetectorOverrides:
    """A validated set of overrides; resolves (and caches) a device's config."""

    base: DetectorConfig = field(default_factory=DetectorConfig)
    _device: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    _prefix: tuple[tuple[str, dict[str, Any]], ...] = ()
    _type: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    #: Messages for the rows refused (each names its row and field).
    errors: tuple[str, ...] = ()
    _cache: dict[tuple[str, str], DetectorConfig] = field(default_factory=dict, compare=False)

    @classmethod
    def from_rows(
        cls, rows: Iterable[OverrideRow], base: DetectorConfig | None = None
    ) -> DetectorOverrides:
        device: dict[str, dict[str, Any]] = {}
        prefix: dict[str, dict[str, Any]] = {}
        by_type: dict[str, dict[str, Any]] = {}
        errors: list[str] = []
        for row in rows:
            valid = _validate(row)
            if isinstance(valid, str):
                errors.append(valid)
                continue
            target = {Scope.DEVICE: device, Scope.PREFIX: prefix, Scope.SENSOR_TYPE: by_type}[
                valid.scope
            ]
            target.setdefault(valid.match, {})[valid.setting] = valid.value
        # Longest prefix first, so the first match is the most specific.
        ordered = tuple(sorted(prefix.items(), key=lambda kv: (-len(kv[0]), kv[0])))
        return cls(base or DetectorConfig(), device, ordered, by_type, tuple(errors))

    def __bool__(self) -> bool:
        return bool(self._device or self._prefix or self._type)

    def settings_for(self, device_id: str, sensor_type: str) -> dict[str, Any]:
        """The overridden settings of a device, most specific winning."""
        merged: dict[str, Any] = {}
        _apply(merged, self._type.get(sensor_type, {}), sensor_type)
        for text, values in reversed(self._prefix):  # least specific first
            if device_id.startswith(text):
                _apply(merged, values, sensor_type)
        _apply(merged, self._device.get(device_id, {}), sensor_type)
        return merged

    def config_for(self, device_id: str, sensor_type: str) -> DetectorConfig:
        """The :class:`DetectorConfig` the detectors use for this device."""
        key = (device_id, sensor_type)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        settings = self.settings_for(device_id, sensor_type)
        config = self.base
        if settings:
            limits_values = {k: v for k, v in settings.items() if k in _LIMIT_FIELDS}
            config_values = {k: v for k, v in settings.items() if k in _CONFIG_FIELDS}
            if limits_values and sensor_type in ("temperature", "pressure"):
                limits: AnalogLimits = getattr(config, sensor_type)
                replaced: dict[str, Any] = {
                    sensor_type: dataclasses.replace(limits, **limits_values)
                }
                config = dataclasses.replace(config, **replaced)
            if config_values:
                config = dataclasses.replace(config, **config_values)
        self._cache[key] = config
        return config
