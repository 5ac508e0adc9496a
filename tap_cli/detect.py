"""``tap detect``: run the processor's anomaly detectors offline, and score them.

Back-test thresholds on historical data with exactly the code the processor runs::

    tap detect --input line2.csv --sensor-type temperature
    tap detect --input valve.csv --sensor-type equipment_status --column state
    tap detect --input p.csv --sensor-type pressure --set pressure.warning_high=8.5 --output -
    tap detect --input line2.csv --sensor-type temperature --labels failures.csv
    tap simulate --devices 300 --duration 1d --anomaly-rate 0.00002 --scenarios plant \
        --labels labels.jsonl --output day.jsonl
    tap detect --input day.jsonl --labels labels.jsonl --output none --floor 0.9

``--input`` is a CSV of one device (below) or the JSONL readings ``tap simulate
--sink jsonl`` writes (any number of devices, each with its own detector state;
lines the processor would dead-letter are counted and skipped). ``--labels`` is
the simulator's JSONL labels or a CSV of windows ``start,end[,type[,device_id]]``;
the report (recall and time to detect per scenario type, precision per detector,
false alarms per device-day on unlabelled devices; the window slack is defined in
:mod:`simulator.scoring`) goes to stderr and, with ``--score-output``, to a JSON
file. With ``--floor F`` the exit status is 1 when a recall or a precision is
below ``F``.

The CSV has a header row; the timestamp column holds ISO-8601 times (a time
without an offset is taken as UTC) or epoch seconds, and the value column a
number (for ``equipment_status``: RUNNING, IDLE, MAINTENANCE or FAULT). Rows are
fed in file order with ``seq`` = the data row number, and gaps between rows are
checked for silence by the processor's silence detector
(:mod:`processor.core.silence`), with the newest row's time as the shard's progress:
the cadence is inferred per device from its rows (median of the recent gaps), so a
5-minute series is silent only after about five missing readings and a multi-hour
hole is one anomaly. One JSON object per anomaly is written per line (``--output
none``: not written). A row the pipeline would dead-letter (NaN, outside the
physical range) is skipped with a warning; a row that cannot be parsed stops the run
with its line number. Exit status: 0 on success, 1 when ``--floor`` is not met, 2 on
bad usage or input.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import msgspec

from processor.contract.record import (
    DEVICE_ID_PATTERN,
    PHYSICAL_RANGE,
    SCHEMA_VERSION,
    UNITS,
    EquipmentStatus,
    Reading,
    SensorType,
    ValidationLimits,
    decode_reading,
)
from processor.core.detection import AnalogLimits, DetectorBank, DetectorConfig
from processor.core.model import Anomaly
from processor.core.silence import SilenceTracker

if TYPE_CHECKING:
    # Imported when scoring only, so `tap detect` without --labels starts fast.
    from simulator.scoring import ScoreReport


class InputError(Exception):
    """The input cannot be processed; the message names the file, line and column."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tap detect",
        description="Run the pipeline's anomaly detectors over a CSV of timestamp,value rows "
        "and write one JSON line per anomaly.",
    )
    p.add_argument(
        "--input",
        required=True,
        help="CSV file with a header row, or JSONL readings (tap simulate); '-' for stdin",
    )
    p.add_argument(
        "--format",
        choices=("auto", "csv", "jsonl"),
        default="auto",
        help="input format (default: jsonl for *.jsonl / *.ndjson, csv otherwise)",
    )
    p.add_argument(
        "--sensor-type",
        choices=[t.value for t in SensorType],
        help="CSV only (required there): what the values are "
        "(temperature in C, pressure in bar, equipment_status)",
    )
    p.add_argument(
        "--labels",
        help="score the anomalies against these labels: the simulator's JSONL labels "
        "(tap simulate --labels) or a CSV of start,end[,type[,device_id]] windows",
    )
    p.add_argument("--score-output", help="with --labels: also write the score as JSON here")
    p.add_argument(
        "--floor",
        type=float,
        help="with --labels: exit 1 when a scenario's recall or a detector's precision "
        "is below this (e.g. 0.9)",
    )
    p.add_argument(
        "--column", help="value column (default: 'value', or 'status' for equipment_status)"
    )
    p.add_argument("--timestamp-column", default="timestamp", help="default: timestamp")
    p.add_argument("--device-id", default="csv-device", help="device id used in the output")
    p.add_argument(
        "--output",
        default="-",
        help="file to write, '-' for stdout (default), 'none' to write no anomalies",
    )
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
def _open_out(path: str) -> Iterator[IO[str] | None]:
    if path == "none":
        yield None
    elif path == "-":
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


@dataclass(slots=True)
class RunResult:
    """What a run saw: anomalies (for scoring) and the span of each device."""

    anomalies: list[Anomaly] = dataclasses.field(default_factory=list)
    #: device id -> (first ts, last ts, readings), epoch seconds.
    spans: dict[str, tuple[float, float, int]] = dataclasses.field(default_factory=dict)
    skipped: int = 0

    @property
    def count(self) -> int:
        return len(self.anomalies)

    def observed_s(self) -> dict[str, float]:
        return {d: last - first for d, (first, last, _) in self.spans.items()}

    def period_s(self) -> dict[str, float]:
        """Mean reporting interval per device (1 s for a device with one reading)."""
        return {
            d: (last - first) / (n - 1) if n > 1 else 1.0
            for d, (first, last, n) in self.spans.items()
        }


#: Offline there is no arrival time: accept any event time (the processor's
#: future/age checks are about Kinesis arrival, which a file does not have).
_OFFLINE_LIMITS: Final = ValidationLimits(
    max_future=timedelta(days=365_000), max_age=timedelta(days=365_000)
)
_OFFLINE_ARRIVAL: Final = datetime(2000, 1, 1, tzinfo=UTC)
#: Offline silence checks run at most this often in event time, like the
#: processor's timer (a check scans every device: once per reading would make a
#: fleet's back-test quadratic).
_SILENCE_TICK_S: Final = 5.0


def _jsonl_readings(handle: IO[bytes], result: RunResult) -> Iterator[Reading]:
    for line in handle:
        if not line.strip():
            continue
        reading = decode_reading(
            line.rstrip(b"\r\n"), arrival=_OFFLINE_ARRIVAL, limits=_OFFLINE_LIMITS
        )
        if isinstance(reading, Reading):
            yield reading
        else:
            result.skipped += 1


def _detect(
    readings: Iterable[Reading],
    bank: DetectorBank,
    silence: SilenceTracker,
    out: IO[str] | None,
    *,
    tick_s: float,
) -> RunResult:
    """The back-test loop: the bank over every reading; silence judged on an
    event-time tick against the newest reading's time (offline, the "shard" has been
    read up to the row in hand), as the processor judges it on its shard's progress."""
    result = RunResult()
    anomalies = result.anomalies
    spans = result.spans
    next_silence = -math.inf
    for reading in readings:
        t = reading.ts.timestamp()
        before = len(anomalies)
        silence.advance(t)
        if t >= next_silence:
            anomalies.extend(silence.check())
            next_silence = t + tick_s
        silence.observe(reading.device_id, reading.seq, t, reading.sensor_type.value, reading.boot)
        bank.observe_into(reading, anomalies)
        span = spans.get(reading.device_id)
        spans[reading.device_id] = (t, t, 1) if span is None else (span[0], t, span[2] + 1)
        if out is not None:
            for anomaly in anomalies[before:]:
                out.write(_line(anomaly) + "\n")
    return result


def run(
    input_path: str,
    sensor_type: SensorType | None,
    column: str,
    ts_column: str,
    device_id: str,
    output_path: str,
    config: DetectorConfig,
    *,
    input_format: str = "csv",
) -> RunResult:
    """Feed the CSV (one device) or JSONL (a fleet) through a :class:`DetectorBank`."""
    bank = DetectorBank(config)
    silence = SilenceTracker()
    with _open_out(output_path) as out:
        if input_format == "jsonl":
            with _open_in_binary(input_path) as raw:
                holder = RunResult()
                result = _detect(
                    _jsonl_readings(raw, holder), bank, silence, out, tick_s=_SILENCE_TICK_S
                )
                result.skipped = holder.skipped
                return result
        assert sensor_type is not None
        with _open_in(input_path) as src:
            rows = _readings(src, sensor_type, column, ts_column, device_id)
            # One device: check silence before every row, as the processor's timer would.
            return _detect((r for _, r in rows if r is not None), bank, silence, out, tick_s=0.0)


@contextmanager
def _open_in_binary(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
    else:
        with open(path, "rb") as handle:
            yield handle


def _format_of(path: str, requested: str) -> str:
    if requested != "auto":
        return requested
    return "jsonl" if Path(path).suffix.lower() in (".jsonl", ".ndjson") else "csv"


def _score(result: RunResult, labels_path: str) -> ScoreReport:
    """Score the run's anomalies against a labels file (JSONL labels or CSV windows)."""
    from simulator.scoring import read_labels, read_window_labels, score

    labels: list[Any]
    if Path(labels_path).suffix.lower() in (".jsonl", ".ndjson", ".json"):
        labels = list(read_labels(labels_path))
    else:
        labels = list(read_window_labels(labels_path))
    return score(
        result.anomalies, labels, period_s=result.period_s(), observed_s=result.observed_s()
    )


def _print_score(report: ScoreReport, file: IO[str]) -> None:
    data = report.as_dict()
    print("scenario          labels  detected  recall  ttd median/p90 (s)", file=file)
    for name, s in data["by_scenario"].items():
        recall = "-" if s["recall"] is None else f"{s['recall']:.3f}"
        if s.get("quiet"):
            recall = f"quiet: {s['alarmed']} alarmed"
        ttd = s["time_to_detect_s"]
        print(
            f"{name:<16} {s['labels']:>7} {s['detected']:>9}  {recall:<6}  "
            f"{ttd['median']}/{ttd['p90']}"
            + (
                f"  ({s['truncated_missed']} cut off by the run's end)"
                if s["truncated_missed"]
                else ""
            ),
            file=file,
        )
    print("detector          detections  hits  false  incidental  precision", file=file)
    for name, d in data["by_detector"].items():
        if not d["detections"]:
            continue
        precision = "-" if d["precision"] is None else f"{d['precision']:.3f}"
        print(
            f"{name:<16} {d['detections']:>11} {d['true_positives']:>5} "
            f"{d['false_positives']:>6} {d['incidental']:>11}  {precision}",
            file=file,
        )
    h = data["healthy"]
    print(
        f"healthy devices: {h['devices']}, {h['device_days']} device-days, "
        f"{h['false_alarms']} false alarms = {h['per_device_day']} per device-day "
        f"({h['per_device_week']} per device-week)",
        file=file,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error (or --help)
        return 0 if exc.code in (0, None) else 2
    input_format = _format_of(args.input, args.format)
    if input_format == "csv" and args.sensor_type is None:
        print("tap detect: --sensor-type is required for a CSV input", file=sys.stderr)
        return 2
    if args.labels is None and (args.floor is not None or args.score_output):
        print("tap detect: --floor and --score-output need --labels", file=sys.stderr)
        return 2
    sensor_type = SensorType(args.sensor_type) if args.sensor_type else None
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
        result = run(
            args.input,
            sensor_type,
            column,
            args.timestamp_column,
            args.device_id,
            args.output,
            config,
            input_format=input_format,
        )
        report = _score(result, args.labels) if args.labels else None
    except InputError as exc:
        print(f"tap detect: {args.input}: {exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"tap detect: {args.input}: not UTF-8 text ({exc.reason})", file=sys.stderr)
        return 2
    except (ValueError, msgspec.DecodeError) as exc:  # a labels file that is not one
        print(f"tap detect: {args.labels}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tap detect: {exc}", file=sys.stderr)
        return 2
    count = result.count
    skipped = f", {result.skipped} lines skipped (dead letters)" if result.skipped else ""
    print(
        f"tap detect: {count} anomal{'y' if count == 1 else 'ies'} from "
        f"{len(result.spans)} device{'' if len(result.spans) == 1 else 's'}{skipped}",
        file=sys.stderr,
    )
    if report is None:
        return 0
    _print_score(report, sys.stderr)
    if args.score_output:
        Path(args.score_output).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    if args.floor is not None:
        misses = report.misses(args.floor)
        for miss in misses:
            print(f"tap detect: FLOOR MISSED: {miss}", file=sys.stderr)
        return 1 if misses else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
