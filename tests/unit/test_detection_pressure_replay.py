"""Session 7, pressure: the false DRIFTs of the development seeds, replayed one
device at a time from the benchmark's own plant fleet (``bench.detection``'s
profiles, regenerated as a one-device slice: a device's stream and its detector
state do not depend on the rest of the fleet). Each device raised false DRIFTs on
main a2be14d (listed per case); the causes, analysed against each device's clean
twin, are in docs/DETECTION.md ("Session 7: pressure"). The generic causes have
synthetic tests in ``test_detection_regimes.py``; these are the recorded cases,
scored by the benchmark's scorer: no false ``drift`` may remain. Seeds 1-5 only
(6 and 7 are held out)."""

from __future__ import annotations

import pytest

from bench.detection import replay_device
from processor.core.model import AnomalyType


def false_drifts(profile_name: str, seed: int, device_id: str) -> list[tuple[int, float | None]]:
    report = replay_device(profile_name, seed, device_id).report
    return [(d.seq, d.ts) for d in report.false_alarms if d.anomaly_type is AnomalyType.DRIFT]


@pytest.mark.parametrize(
    ("profile_name", "seed", "device_id"),
    [
        # A surge before the line's first stop became the "other regime" (4 false).
        ("day", 4, "fac01-l03-m01-pressure-0"),
        # One reading after a 9-minute silence weighed 1/12 of the running mean.
        ("day", 2, "fac01-l05-m04-pressure-0"),
        # A stuck value (a phase of the cycle, 7 % under the plateau) fed the mean.
        ("day", 5, "fac01-l01-m02-pressure-0"),
        # A stale stopped mean after a span loss was repaired.
        ("day", 1, "fac01-l03-m11-pressure-0"),
        ("day", 1, "fac01-l05-m02-pressure-0"),
        # Surges on a stopped line adopted as the running level over a weekend.
        ("month", 3, "fac01-l02-m01-pressure-0"),
        ("month", 3, "fac01-l03-m03-pressure-0"),
        ("month", 5, "fac01-l02-m01-pressure-0"),
        # Marginal tails at 5 minutes (short runs sample the cycle at random phases;
        # l01-m12 is a healthy device: its clean twin raised the same two).
        ("month", 3, "fac01-l01-m10-pressure-0"),
        ("month", 3, "fac01-l03-m05-pressure-0"),
        ("month", 4, "fac01-l01-m12-pressure-0"),
    ],
)
def test_the_false_drifts_of_the_development_seeds_are_gone(
    profile_name: str, seed: int, device_id: str
) -> None:
    assert false_drifts(profile_name, seed, device_id) == []
