"""The simulated fleet's options, defined once for every command that runs a fleet.

``tap simulate`` (:mod:`simulator.cli`), ``tap load`` (:mod:`simulator.load.cli`),
the Locust campaign's ``--tap-*`` options (:mod:`simulator.load.campaign`, which
``tap load`` fills from its own) and ``tap demo`` (:mod:`e2e.demo`) register them
with :func:`add_fleet_arguments` and read them back with :func:`fleet_options`:
one validator and one default per option. A command whose purpose needs another
default says so in one place (``tap demo`` shows anomalies and poison, so its
rates are not zero; a load campaign's fleet is larger), and the same validator
still judges it. A bad value is refused with a message naming the option.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

from simulator.fleet import MAX_RATE_PER_DEVICE, Fleet


def _whole(text: str) -> int:
    try:
        return int(str(text).replace("_", ""))
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {text}")
    return value


def any_int(text: str) -> int:
    return _whole(text)


def rate_per_device(text: str) -> float:
    value = _number(text)
    if not 0.0 < value <= MAX_RATE_PER_DEVICE:
        raise ValueError(
            f"must be in (0, {MAX_RATE_PER_DEVICE:g}] readings/s per device, got {text}"
        )
    return value


def probability(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be within [0, 1], got {text}")
    return value


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """The parameters of :class:`simulator.fleet.Fleet` a command lets one choose."""

    #: Simulated devices.
    devices: int = 500
    #: Readings per second per device.
    rate: float = 1.0
    #: Seed of every device's pseudo-random streams (the same seed, the same fleet).
    seed: int = 7
    #: Probability per reading that an anomaly scenario starts on that device.
    anomaly_rate: float = 0.0
    #: Probability per reading that the device also sends a malformed record.
    poison_rate: float = 0.0

    def __post_init__(self) -> None:
        # Built in code (a test, a campaign) as well as from options: same checks.
        for option in OPTIONS:
            check(option, str(getattr(self, option.field)))

    def fleet(self, start: datetime, **more: Any) -> Fleet:
        """The fleet these options describe (``more``: Fleet's other arguments).
        The fields are named as Fleet's parameters, so an option added here reaches
        the fleet without a second list."""
        return Fleet(**asdict(self), start=start, **more)

    def slice(self, slot: int, slots: int, start: datetime) -> Fleet:
        """``Fleet(..., start=start).slice(slot, slots)`` without building the whole
        fleet first: 10,000 devices take a second or more to build, which would
        stall every user of a gevent process at each step of a ramp. This is the
        constructor call ``Fleet.slice`` itself makes (its ``device_indices``
        argument); a unit test checks both give the same records.
        """
        if not 0 <= slot < slots:
            raise ValueError(f"slot must be in [0, {slots}), got {slot}")
        return self.fleet(start, device_indices=range(self.devices)[slot::slots])

    def argv(self, *, prefix: str = "") -> list[str]:
        """These options as command-line arguments (``tap load`` -> Locust)."""
        out: list[str] = []
        for option in OPTIONS:
            out += [f"--{prefix}{option.flag}", str(getattr(self, option.field))]
        return out


@dataclass(frozen=True, slots=True)
class FleetOption:
    field: str
    parse: Callable[[str], Any]
    help: str

    @property
    def flag(self) -> str:
        return self.field.replace("_", "-")


OPTIONS: Final = (
    FleetOption("devices", positive_int, "fleet size"),
    FleetOption("rate", rate_per_device, "readings per second per device"),
    FleetOption("seed", any_int, "fleet seed: the same seed sends the same readings"),
    FleetOption(
        "anomaly_rate",
        probability,
        "probability per reading that an anomaly scenario starts on that device",
    ),
    FleetOption(
        "poison_rate",
        probability,
        "probability per reading that the device also sends a malformed record",
    ),
)


def check(option: FleetOption, text: str) -> Any:
    """``option``'s value from ``text``, or a ValueError naming the option."""
    try:
        return option.parse(text)
    except ValueError as exc:
        raise ValueError(f"--{option.flag}: {exc}") from None


def _argparse_type(option: FleetOption) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as exc:
            # argparse prefixes "argument --<option>:", so the message names it.
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = option.field  # argparse names a failing type by it
    return parse


def add_fleet_arguments(
    parser: Any, *, prefix: str = "", defaults: FleetOptions | None = None
) -> None:
    """Register the fleet options on an argparse parser or group (Locust's
    configargparse parser too); ``prefix`` as in ``--tap-devices``."""
    defaults = defaults if defaults is not None else FleetOptions()
    for option in OPTIONS:
        default = getattr(defaults, option.field)
        parser.add_argument(
            f"--{prefix}{option.flag}",
            type=_argparse_type(option),
            default=default,
            help=f"{option.help} (default {default:g})"
            if isinstance(default, float)
            else f"{option.help} (default {default})",
        )


def fleet_options(namespace: argparse.Namespace | Any, *, prefix: str = "") -> FleetOptions:
    """The options :func:`add_fleet_arguments` registered, read from parsed args."""
    dest = prefix.replace("-", "_")
    return FleetOptions(**{o.field: getattr(namespace, dest + o.field) for o in OPTIONS})


#: A load campaign's fleet (``tap load`` and its Locust options): larger than a
#: ``tap simulate`` run's, so that a ramp's users each have devices to send.
CAMPAIGN_FLEET: Final = FleetOptions(devices=1000)
