"""The names of the anomaly types the processor stores, defined once.

The processor's detectors (:mod:`processor.core.detection`) produce them, the
``tap.anomalies.anomaly_type`` column stores them, and the simulator's scorer
(:mod:`simulator.scoring`) maps its injected scenarios onto them. The simulator may
import the contract but not the processor's core (issue 12), so the enum lives
here and :mod:`processor.core.model` re-exports it.
"""

from __future__ import annotations

import enum


class AnomalyType(enum.StrEnum):
    LIMIT = "limit"  # static per-sensor-type limit crossed
    STATISTICAL = "statistical"  # robust z-score against the device's baseline
    SPIKE = "spike"  # rate of change too high
    STUCK = "stuck"  # flat-lined sensor
    FAULT = "fault"  # equipment status FAULT
    FLAPPING = "flapping"  # equipment status changing too often
    SILENT = "silent"  # device stopped reporting
    DRIFT = "drift"  # slow, lasting departure from the device's long-run level (CUSUM)
    SEASONAL = "seasonal"  # departure from the device's usual level at this hour of day


class Severity(enum.StrEnum):
    """How urgent an anomaly is (``tap.anomalies.severity``; the read API filters on
    it, so it lives in the contract beside the types, issue 13)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
