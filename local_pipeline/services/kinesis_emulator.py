"""The Kinesis emulator: kinesalite by default, moto's Kinesis on request.

Chosen by measurement (docs/BENCHMARKS.md, "Kinesis emulator choice"): kinesalite
takes PutRecords several times faster than moto, does not slow down as data
accumulates, and routes records to the child shards after a SplitShard (moto keeps
writing to the closed parent). It lacks UpdateShardCount and StartStreamEncryption;
set ``TAP_KINESIS_EMULATOR=moto`` for a test that needs those, and accept moto's
slowness and split routing there.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from enum import StrEnum
from pathlib import Path
from typing import Final

from local_pipeline.services.aws_emulator import HttpEmulator, emulator_client
from local_pipeline.services.process import ServiceStartError

KINESIS_EMULATOR_ENV: Final = "TAP_KINESIS_EMULATOR"
#: The npm project that pins kinesalite (``make bootstrap`` installs it).
NODE_PROJECT: Final = Path(__file__).resolve().parents[1] / "node"
_LAUNCHER: Final = Path(__file__).resolve().with_name("kinesalite_launcher.js")


class KinesisEmulatorKind(StrEnum):
    KINESALITE = "kinesalite"
    MOTO = "moto"


def ensure_node_modules(project: Path = NODE_PROJECT) -> Path:
    """``npm install`` the emulator once if ``node_modules`` is missing.

    A file lock keeps parallel pytest-xdist workers from installing at the same time.
    """
    modules = project / "node_modules"
    if (modules / "kinesalite" / "package.json").exists():
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise ServiceStartError("kinesalite needs Node.js and npm (run `make bootstrap`)")
    with (project / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (modules / "kinesalite" / "package.json").exists():
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=project,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if result.returncode != 0:
                raise ServiceStartError(f"npm install failed in {project}:\n{result.stderr}")
    return modules


class Kinesalite(HttpEmulator):
    """kinesalite, in memory, with no artificial delays (streams are ACTIVE at once)."""

    name = "kinesalite"
    kind = KinesisEmulatorKind.KINESALITE

    def __init__(self, log_path: Path, *, port: int | None = None, shard_limit: int = 100) -> None:
        super().__init__(log_path, port=port)
        self.shard_limit = shard_limit

    def argv(self) -> list[str]:
        node = shutil.which("node")
        if node is None:
            raise ServiceStartError("kinesalite needs Node.js (`node` on PATH)")
        modules = ensure_node_modules()
        options = {
            "shardLimit": self.shard_limit,
            "createStreamMs": 0,
            "deleteStreamMs": 0,
            "updateStreamMs": 0,
        }
        return [
            node,
            # Every record stays in memory (about 1.1 KB each, measured): a 10-minute
            # soak at 2,000 records/s holds 1.2 M records, about 1.3 GB. Give the heap
            # room rather than rely on Node's default limit.
            "--max-old-space-size=4096",
            str(_LAUNCHER),
            str(modules),
            self.host,
            str(self.port),
            json.dumps(options),
        ]

    def healthy(self) -> bool:
        # A real Kinesis call, not just an open port: ListStreams through botocore.
        client = emulator_client("kinesis", self.endpoint_url, timeout=2)
        client.list_streams(Limit=1)
        return True
