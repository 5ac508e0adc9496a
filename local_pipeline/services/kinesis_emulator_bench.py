"""Measure the Kinesis emulators: PutRecords and GetRecords rates as data accumulates,
and where records land after a SplitShard. The figures behind the choice of
kinesalite (docs/BENCHMARKS.md, "Kinesis emulator choice").

    python -m local_pipeline.services.kinesis_emulator_bench [--records 50000] [--shards 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from local_pipeline.services.aws_emulator import HttpEmulator, MotoServer, emulator_client
from local_pipeline.services.kinesis_emulator import Kinesalite

BATCH = 500  # PutRecords' maximum records per call


def _records(count: int, start: int) -> Iterator[dict[str, Any]]:
    for seq in range(start, start + count):
        # About the size of a real reading (~200 bytes), spread over 500 devices.
        body = {
            "device_id": f"dev-{seq % 500:04d}",
            "facility": "plant-1",
            "line": "line-3",
            "sensor_type": "temperature",
            "value": 21.5 + (seq % 100) / 10,
            "unit": "C",
            "ts": "2026-01-01T00:00:00.000000Z",
            "seq": seq,
            "schema_version": 1,
        }
        yield {"Data": json.dumps(body).encode(), "PartitionKey": body["device_id"]}


def _put_rates(client: Any, stream: str, total: int, windows: int) -> list[float]:
    """records/s for each consecutive window of ``total / windows`` records."""
    per_window = total // windows
    rates = []
    sent = 0
    for _ in range(windows):
        started = time.perf_counter()
        for offset in range(0, per_window, BATCH):
            batch = list(_records(min(BATCH, per_window - offset), sent + offset))
            response = client.put_records(StreamName=stream, Records=batch)
            assert response["FailedRecordCount"] == 0, response
        sent += per_window
        rates.append(per_window / (time.perf_counter() - started))
    return rates


def _get_rate(client: Any, stream: str) -> tuple[int, float]:
    started = time.perf_counter()
    count = 0
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            count += len(response["Records"])
            if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                break
            iterator = response.get("NextShardIterator")
    return count, count / (time.perf_counter() - started)


def _split_routes_to_children(client: Any, stream: str) -> bool:
    """Split shard 0 of a fresh stream; do new records land in the children?"""
    client.create_stream(StreamName=stream, ShardCount=1)
    _wait_active(client, stream)
    parent = client.list_shards(StreamName=stream)["Shards"][0]
    top = int(parent["HashKeyRange"]["EndingHashKey"])
    client.split_shard(
        StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str((top + 1) // 2)
    )
    _wait_active(client, stream)
    landed = client.put_record(
        StreamName=stream, Data=b"x", PartitionKey="p", ExplicitHashKey="10"
    )["ShardId"]
    return bool(landed != parent["ShardId"])


def _wait_active(client: Any, stream: str) -> None:
    for _ in range(600):
        status = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if status["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    raise TimeoutError(stream)


def measure(emulator: HttpEmulator, records: int, shards: int, windows: int) -> dict[str, Any]:
    emulator.start()
    try:
        client = emulator_client("kinesis", emulator.endpoint_url, timeout=120)
        client.create_stream(StreamName="bench", ShardCount=shards)
        _wait_active(client, "bench")
        put = _put_rates(client, "bench", records, windows)
        rss_mb = _rss_mb(emulator.pid)
        read, get_rate = _get_rate(client, "bench")
        return {
            "put_records_per_s": [round(r) for r in put],
            "rss_mb_after_put": rss_mb,
            "get_records_per_s": round(get_rate),
            "read": read,
            "split_routes_to_children": _split_routes_to_children(client, "split"),
        }
    finally:
        emulator.stop()


def _rss_mb(pid: int | None) -> int | None:
    """Resident memory of the emulator (both keep every record in memory)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--only", choices=["kinesalite", "moto"])
    args = parser.parse_args(argv)
    import os

    logs = Path(tempfile.mkdtemp(prefix="tap-kinesis-bench-"))
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "records": args.records,
        # Other work on the machine skews the rates: record how busy it was.
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "shards": args.shards,
    }
    emulators: dict[str, HttpEmulator] = {
        "kinesalite": Kinesalite(logs / "kinesalite.log"),
        "moto": MotoServer(logs / "moto.log"),
    }
    for name, emulator in emulators.items():
        if args.only in (None, name):
            results[name] = measure(emulator, args.records, args.shards, args.windows)
            print(name, json.dumps(results[name]), flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
