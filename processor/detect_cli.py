"""``tap detect``: run the processor's anomaly detectors offline over a CSV.

Back-test thresholds on historical data with exactly the code the processor runs::

    tap detect --input line2.csv --sensor-type temperature
    tap detect --input valve.csv --sensor-type equipment_status --column state
    tap detect --input p.csv --sensor-type pressure --set pressure.warning_high=8.5 --output -

The CSV has a header row; the timestamp column holds ISO-8601 times (a time
without an offset is taken as UTC) or epoch seconds, and the value column a
number (for ``equipment_status``: RUNNING, IDLE, MAINTENANCE or FAULT). Rows are
fed in file order with ``seq`` = the data row number, and gaps between rows are
checked for silence by the processor's silence detector
(:mod:`processor.core.silence`), with the next row's time as the shard's progress:
the cadence is inferred from the rows (median of the recent gaps), so a 5-minute
series is silent only after about five missing readings, a multi-hour hole is one
anomaly. One JSON object per anomaly is written per line. A row the pipeline would
dead-letter (NaN, outside the physical range) is skipped with a warning; a row that
cannot be parsed stops the run with its line number. Exit status: 0 on success, 2 on
bad usage or input.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

from processor.contract.record import (
    DEVICE_ID_PATTERN,
    PHYSICAL_RANGE,
    SCHEMA_VERSION,
    UNITS,
    EquipmentStatus,
    Reading,
    SensorType,
)
from processor.core.detection import AnalogLimits, DetectorBank, DetectorConfig
from processor.core.model import Anomaly
from processor.core.silence import SilenceTracker


class InputError(Exception):
    """The input cannot be processed; the message names the file, line and column."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tap detect",
        description="Run the pipeline's anomaly detectors over a CSV of timestamp,value rows "
        "and write one JSON line per anomaly.",
    )
    p.add_argument("--input", required=True, help="CSV file with a header row ('-' for stdin)")
    p.add_argument(
        "--sensor-type",
        required=True,
        choices=[t.value for t in SensorType],
        help="what the values are (temperature in C, pressure in bar, equipment_status)",
    )
    p.add_argument(
        "--column", help="value column (default: 'value', or 'status' for equipment_status)"
    )
    p.add_argument("--timestamp-column", default="timestamp", help="default: timestamp")
    p.add_argument("--device-id", default="csv-device", help="device id used in the output")
    p.add_argument("--output", default="-", help="file to write, or '-' for stdout (default)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a detector setting, e.g. warmup=50, z_warning=3.5, "
        "temperature.warning_high=85 (repeatable)",
    )
    return p


def _config(overrides: Sequence[str]) -> DetectorConfig:
    """Apply ``NAME=VALUE`` overrides to the default :class:`DetectorConfig`."""
    config = DetectorConfig()
    for item in overrides:
        name, sep, raw = item.partition("=")
        if not sep:
            raise InputError(f"--set {item!r}: expected NAME=VALUE")
        group, _, leaf = name.strip().rpartition(".")
        target: Any = getattr(config, group) if group in ("temperature", "pressure") else config
        if group not in ("", "temperature", "pressure"):
            raise InputError(f"--set {name}: unknown group {group!r}")
        known = {f.name: f for f in dataclasses.fields(target)}
        if leaf not in known:
            raise InputError(f"--set {name}: unknown setting (known: {', '.join(sorted(known))})")
        current = getattr(target, leaf)
        try:
            if raw.strip().lower() == "none" and isinstance(target, AnalogLimits):
                value: Any = None
            elif isinstance(current, int) and not isinstance(current, bool):
                value = int(raw)
            else:
                value = float(raw)
        except ValueError:
            raise InputError(f"--set {name}: {raw!r} is not a number") from None
        replaced = dataclasses.replace(target, **{leaf: value})
        config = replaced if target is config else dataclasses.replace(config, **{group: replaced})
    return config


def _parse_ts(raw: str) -> datetime:
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        ts = datetime.fromisoformat(text)  # raises ValueError with a clear message
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp {text!r} is not finite")
    return datetime.fromtimestamp(seconds, UTC)


@contextmanager
def _open_in(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin
    else:
        with open(path, newline="", encoding="utf-8") as handle:
            yield handle


@contextmanager
def _open_out(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
    else:
        with open(path, "w", encoding="utf-8") as handle:
            yield handle


def _readings(
    handle: IO[str], sensor_type: SensorType, column: str, ts_column: str, device_id: str
) -> Iterator[tuple[int, Reading | None]]:
    """(line number, reading); ``None`` for a row the pipeline would dead-letter."""
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    missing = [c for c in (ts_column, column) if c not in header]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"the header has {', '.join(repr(c) for c in header) or 'nothing'}"
        )
    status_type = sensor_type is SensorType.EQUIPMENT_STATUS
    seq = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"line {reader.line_num}: {exc}") from None
        seq += 1
        line = reader.line_num
        raw_ts, raw_value = row.get(ts_column), row.get(column)
        if raw_ts is None or raw_value is None:
            raise InputError(f"line {line}: too few fields")
        try:
            ts = _parse_ts(raw_ts)
        except (ValueError, OverflowError, OSError) as exc:
            raise InputError(f"line {line}: bad timestamp {raw_ts!r} ({exc})") from None
        value: float | None = None
        status: EquipmentStatus | None = None
        if status_type:
            try:
                status = EquipmentStatus(raw_value.strip().upper())
            except ValueError:
                allowed = ", ".join(s.value for s in EquipmentStatus)
                raise InputError(
                    f"line {line}: status {raw_value!r} is not one of {allowed}"
                ) from None
        else:
            try:
                value = float(raw_value)
            except ValueError:
                raise InputError(f"line {line}: value {raw_value!r} is not a number") from None
            low, high = PHYSICAL_RANGE[sensor_type]
            if not (math.isfinite(value) and low <= value <= high):
                print(
                    f"tap detect: line {line}: skipped value {raw_value.strip()} outside "
                    f"the physical range [{low:g}, {high:g}] (the pipeline dead-letters it)",
                    file=sys.stderr,
                )
                yield line, None
                continue
        yield (
            line,
            Reading(
                device_id=device_id,
                facility="csv",
                line="csv",
                sensor_type=sensor_type,
                unit=UNITS[sensor_type],
                ts=ts,
                seq=seq,
                schema_version=SCHEMA_VERSION,
                value=value,
                status=status,
            ),
        )


def _line(anomaly: Anomaly) -> str:
    return json.dumps(
        {
            "timestamp": anomaly.ts.isoformat().replace("+00:00", "Z"),
            "type": anomaly.anomaly_type.value,
            "severity": anomaly.severity.value,
            "score": anomaly.score,
            "explanation": anomaly.explanation,
            "device_id": anomaly.device_id,
            "seq": anomaly.seq,
            "value": anomaly.value,
        }
    )


def run(
    input_path: str,
    sensor_type: SensorType,
    column: str,
    ts_column: str,
    device_id: str,
    output_path: str,
    config: DetectorConfig,
) -> int:
    """Feed the CSV through a :class:`DetectorBank`; returns the anomaly count."""
    bank = DetectorBank(config)
    silence = SilenceTracker()
    count = 0
    with _open_in(input_path) as src, _open_out(output_path) as out:
        for _, reading in _readings(src, sensor_type, column, ts_column, device_id):
            if reading is None:
                continue
            # Offline the next row's time is how far the "shard" has been read.
            t = reading.ts.timestamp()
            silence.advance(t)
            found = silence.check()
            silence.observe(reading.device_id, reading.seq, t, sensor_type.value)
            for anomaly in [*found, *bank.observe(reading)]:
                out.write(_line(anomaly) + "\n")
                count += 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error (or --help)
        return 0 if exc.code in (0, None) else 2
    sensor_type = SensorType(args.sensor_type)
    column = args.column or ("status" if sensor_type is SensorType.EQUIPMENT_STATUS else "value")
    if not DEVICE_ID_PATTERN.fullmatch(args.device_id):
        print(
            f"tap detect: --device-id {args.device_id!r} must match {DEVICE_ID_PATTERN.pattern}",
            file=sys.stderr,
        )
        return 2
    try:
        config = _config(args.overrides)
    except InputError as exc:
        print(f"tap detect: {exc}", file=sys.stderr)
        return 2
    try:
        count = run(
            args.input,
            sensor_type,
            column,
            args.timestamp_column,
            args.device_id,
            args.output,
            config,
        )
    except InputError as exc:
        print(f"tap detect: {args.input}: {exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"tap detect: {args.input}: not UTF-8 text ({exc.reason})", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tap detect: {exc}", file=sys.stderr)
        return 2
    print(f"tap detect: {count} anomal{'y' if count == 1 else 'ies'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
