"""kinesalite must outlive a client that vanishes mid-request.

A processor killed with ``kill -9`` while its GetRecords/PutRecords request is on
the wire resets the connection; kinesalite's request handler rethrows the socket's
``aborted`` error, and the uncaught exception ended the emulator. The e2e kill -9
scenario then failed with "connection refused" and every later scenario of that
worker errored (seen 2026-11-30, kinesalite.log: ``Error: aborted ... ECONNRESET``).
A real Kinesis does not go down when one client dies.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from local_pipeline.services.aws_emulator import emulator_client
from local_pipeline.services.kinesis_emulator import Kinesalite


def _abort_mid_request(host: str, port: int) -> None:
    """Send the headers and part of a body, then reset the connection (RST, as the
    kernel does for a process killed with SIGKILL mid-write)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\n"
            + f"Host: {host}:{port}\r\n".encode()
            + b"Content-Type: application/x-amz-json-1.1\r\n"
            + b"X-Amz-Target: Kinesis_20131202.ListStreams\r\n"
            + b"Content-Length: 1000\r\n\r\n"
            + b'{"Limit": 1'
        )
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_kinesalite_survives_a_client_reset_mid_request(tmp_path: Path) -> None:
    emulator = Kinesalite(tmp_path / "kinesalite.log")
    emulator.start()
    try:
        for _ in range(3):
            _abort_mid_request(emulator.host, emulator.port)
        client = emulator_client("kinesis", emulator.endpoint_url, timeout=5)
        assert "StreamNames" in client.list_streams(Limit=1)
        assert emulator.pid is not None
    finally:
        emulator.stop()
