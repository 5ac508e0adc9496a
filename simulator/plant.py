"""The simulated plant: facilities, production lines, machines and their sensors.

Every machine carries one sensor of each type (temperature, pressure, equipment
status), so device ``i`` sits on machine ``i // 3`` and has the sensor type
``SENSOR_ORDER[i % 3]``. The layout is fixed (``LINES_PER_FACILITY`` lines of
``MACHINES_PER_LINE`` machines per facility), so a device's id depends only on its
index, never on the fleet size: device 4 is ``fac01-l01-m02-pressure-0`` in a fleet
of 10 and in a fleet of 100,000.

Everything random about a device (its machine's set-points, its reporting phase,
its noise) is seeded from ``(seed, device index)`` or ``(seed, machine index)``,
never from a shared generator, so any slice of the fleet reproduces exactly the
streams those devices have in the whole fleet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from processor.contract.record import DEVICE_ID_PATTERN, SensorType

LINES_PER_FACILITY: Final = 8
MACHINES_PER_LINE: Final = 12
MACHINES_PER_FACILITY: Final = LINES_PER_FACILITY * MACHINES_PER_LINE

#: The sensors of one machine, in device-index order.
SENSOR_ORDER: Final[tuple[SensorType, ...]] = (
    SensorType.TEMPERATURE,
    SensorType.PRESSURE,
    SensorType.EQUIPMENT_STATUS,
)
SENSORS_PER_MACHINE: Final = len(SENSOR_ORDER)


@dataclass(frozen=True, slots=True)
class MachineProfile:
    """The physical constants of one machine, shared by its three sensors."""

    index: int
    facility: str
    line: str
    name: str
    #: Hall temperature around which the day/night cycle swings (°C).
    ambient_c: float
    #: Day/night swing of the hall temperature (°C, half peak-to-peak).
    ambient_swing_c: float
    #: Temperature rise at the sensor when the machine runs at full load (°C).
    heat_rise_c: float
    #: Thermal time constant of the machine body (s).
    thermal_tau_s: float
    #: Hydraulic set-point while the machine runs (bar).
    pressure_setpoint_bar: float
    #: Residual line pressure while it does not (bar).
    pressure_idle_bar: float
    #: Length of one process cycle (press, hold, release), seconds.
    cycle_s: float


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One sensor: its stable identity and the machine it is mounted on."""

    index: int
    device_id: str
    sensor_type: SensorType
    machine: MachineProfile

    @property
    def facility(self) -> str:
        return self.machine.facility

    @property
    def line(self) -> str:
        return self.machine.line


def machine_seed(seed: int, machine_index: int) -> str:
    """Seed of a machine's generators. A string seed is hashed with SHA-512 by
    :class:`random.Random`, so it is stable across processes and ``PYTHONHASHSEED``."""
    return f"tap-sim:{seed}:machine:{machine_index}"


def device_seed(seed: int, device_index: int) -> str:
    """Seed of a device's own generators (see :func:`machine_seed`)."""
    return f"tap-sim:{seed}:device:{device_index}"


def machine_profile(seed: int, machine_index: int) -> MachineProfile:
    """The constants of machine ``machine_index``; deterministic for ``seed``."""
    facility_index, in_facility = divmod(machine_index, MACHINES_PER_FACILITY)
    line_index, machine_in_line = divmod(in_facility, MACHINES_PER_LINE)
    rng = random.Random(machine_seed(seed, machine_index))
    # A facility's halls share a climate: draw the ambient from the facility's seed
    # so that machines of one facility agree, then add a small per-machine offset.
    facility_rng = random.Random(f"tap-sim:{seed}:facility:{facility_index}")
    ambient = facility_rng.uniform(16.0, 24.0) + rng.uniform(-1.0, 1.0)
    return MachineProfile(
        index=machine_index,
        facility=f"fac{facility_index + 1:02d}",
        line=f"l{line_index + 1:02d}",
        name=f"m{machine_in_line + 1:02d}",
        ambient_c=ambient,
        ambient_swing_c=facility_rng.uniform(1.5, 4.0),
        heat_rise_c=rng.uniform(35.0, 55.0),
        thermal_tau_s=rng.uniform(600.0, 2400.0),
        pressure_setpoint_bar=rng.uniform(40.0, 180.0),
        pressure_idle_bar=rng.uniform(1.5, 3.0),
        cycle_s=rng.uniform(20.0, 90.0),
    )


def device_id_for(machine: MachineProfile, sensor_type: SensorType, channel: int = 0) -> str:
    """``fac01-l02-m03-temperature-0``: lowercase, matches the contract's pattern."""
    device_id = f"{machine.facility}-{machine.line}-{machine.name}-{sensor_type.value}-{channel}"
    if not DEVICE_ID_PATTERN.fullmatch(device_id):  # pragma: no cover - layout invariant
        raise ValueError(f"device id {device_id!r} breaks the contract's pattern")
    return device_id


def build_devices(seed: int, indices: range | list[int]) -> list[DeviceSpec]:
    """The devices with the given indices (machines are built once and shared)."""
    machines: dict[int, MachineProfile] = {}
    devices: list[DeviceSpec] = []
    for index in indices:
        machine_index, sensor_slot = divmod(index, SENSORS_PER_MACHINE)
        machine = machines.get(machine_index)
        if machine is None:
            machine = machines[machine_index] = machine_profile(seed, machine_index)
        sensor_type = SENSOR_ORDER[sensor_slot]
        devices.append(
            DeviceSpec(
                index=index,
                device_id=device_id_for(machine, sensor_type),
                sensor_type=sensor_type,
                machine=machine,
            )
        )
    return devices
