"""Resident memory of a processor under device churn, with and without idle eviction
(issue 10 item 9).

Two real ``python -m processor`` processes run side by side on the local stack
(kinesalite, PostgreSQL, Redis, moto), each on a one-shard stream and a database of
its own, fed the same traffic shape: ``new_per_s`` new device ids appear every
second, each reports every ``period_s`` seconds for ``lifetime_s`` seconds and then
goes quiet for good (replaced units, renamed devices). The ``evicting`` process runs
with ``TAP_DETECTOR_IDLE_EVICT_S=idle_evict_s``; the ``reference`` with the largest
accepted value (a week), which keeps every device of the run, as the processor did
before the eviction. Every ``sample_s`` seconds the VmRSS of both (``/proc``) is
written as one JSON line; the summary at the end gives the first and last samples.

    .venv/bin/python -m bench.memory_churn --minutes 30 --out /tmp/rss.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from local_pipeline.services.local_stack import LocalServices
from local_pipeline.verify import ProcessorCluster, ProcessorProcess, Record, put_records
from processor.contract.record import Reading, SensorType, encode_reading

#: The largest TAP_DETECTOR_IDLE_EVICT_S accepted: no device idles that long in a run.
NEVER_S = 7 * 86_400


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _metric_total(metrics_path: Path, name: str) -> int:
    """Sum of one counter over a processor's EMF metric lines."""
    total = 0
    for line in metrics_path.read_text().splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        value = document.get(name) if isinstance(document, dict) else None
        if isinstance(value, int | float):
            total += int(value)
    return total


def _reading(device: str, seq: int, ts: datetime) -> Record:
    reading = Reading(
        device_id=device,
        facility="fac1",
        line="l01",
        sensor_type=SensorType.TEMPERATURE,
        unit="C",
        ts=ts,
        seq=seq,
        schema_version=1,
        value=round(65.0 + (seq % 20) * 0.1, 2),
    )
    return Record(encode_reading(reading), device, (device, seq))


def _produce(
    services: LocalServices,
    streams: dict[str, str],
    args: argparse.Namespace,
    stop: threading.Event,
    sent: dict[str, int],
) -> None:
    """Each second: the new devices' first reading and every live device's due one."""
    client = services.kinesis_client()
    started = time.monotonic()
    second = 0
    while not stop.is_set():
        now = datetime.now(UTC)
        for label, stream in streams.items():
            records = []
            first_new = max(0, second - args.lifetime_s) * args.new_per_s
            for index in range(first_new, (second + 1) * args.new_per_s):
                born = index // args.new_per_s
                age = second - born
                if age % args.period_s == 0 and age < args.lifetime_s:
                    records.append(_reading(f"{label}-{index:07d}", age // args.period_s, now))
            if records:
                put_records(client, stream, records)
                sent[label] = sent.get(label, 0) + len(records)
        second += 1
        stop.wait(max(0.0, started + second - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.memory_churn", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--new-per-s", type=int, default=10)
    parser.add_argument("--period-s", type=int, default=2)
    parser.add_argument("--lifetime-s", type=int, default=30)
    parser.add_argument("--idle-evict-s", type=float, default=120.0)
    parser.add_argument("--silence-after-s", type=float, default=60.0)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    run_dir = Path(tempfile.mkdtemp(prefix="tap-rss-"))
    run_dir.chmod(0o755)  # PostgreSQL may run as another user (see e2e.fixtures)
    services = LocalServices(run_dir).start()
    processes: dict[str, ProcessorProcess] = {}
    clusters: list[ProcessorCluster] = []
    stop = threading.Event()
    sent: dict[str, int] = {}
    try:
        db_arn = services.create_db_secret()
        redis_arn = services.create_redis_secret()
        streams: dict[str, str] = {}
        for label, idle in (("evicting", args.idle_evict_s), ("reference", NEVER_S)):
            stream = f"tap-rss-{label}"
            services.create_stream(stream, 1)
            database = f"tap_rss_{label}"
            services.postgres.create_database(database)
            cluster = ProcessorCluster(
                services,
                stream,
                database,
                db_arn,
                redis_arn,
                run_dir,
                defaults={"silence_after_s": args.silence_after_s, "detector_idle_evict_s": idle},
            )
            clusters.append(cluster)
            processes[label] = cluster.start(label)
            streams[label] = stream
        for process in processes.values():
            process.wait_ready(timeout=90)
        producer = threading.Thread(
            target=_produce, args=(services, streams, args, stop, sent), daemon=True
        )
        producer.start()
        started = time.monotonic()
        deadline = started + timedelta(minutes=args.minutes).total_seconds()
        samples: list[dict[str, Any]] = []
        with args.out.open("w") as out:
            while True:
                sample: dict[str, Any] = {
                    "t_s": round(time.monotonic() - started, 1),
                    "utc": datetime.now(UTC).isoformat(timespec="seconds"),
                    "devices_created": int((time.monotonic() - started) * args.new_per_s),
                    "records_sent": dict(sent),
                }
                for label, process in processes.items():
                    sample[f"{label}_rss_mib"] = round(vm_rss_kib(process.pid) / 1024, 1)
                samples.append(sample)
                out.write(json.dumps(sample) + "\n")
                out.flush()
                if time.monotonic() >= deadline:
                    break
                if not producer.is_alive():
                    raise RuntimeError("the producer thread died; see the traceback above")
                time.sleep(min(args.sample_s, max(0.0, deadline - time.monotonic())))
        stop.set()
        producer.join(timeout=10)
        summary = {
            "command_args": vars(args) | {"out": str(args.out)},
            "first": samples[0],
            "last": samples[-1],
            "evicting_states_evicted": _metric_total(
                run_dir / "evicting.metrics", "DetectorStatesEvicted"
            ),
        }
        print(json.dumps(summary, indent=2))
        return 0
    finally:
        stop.set()
        for cluster in clusters:
            cluster.stop_all()
        services.stop()


if __name__ == "__main__":
    raise SystemExit(main())
