"""A certificate authority per run, and the server certificate every local server uses.

Why per run: the processor's TLS path (``verify-full`` to PostgreSQL, ``rediss://``
with certificate verification to Redis) must be the one exercised locally, and a
fresh CA means no test can pass by trusting something left over on the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: Names the server certificate is valid for. Clients connect to 127.0.0.1 (see
#: :data:`local_pipeline.services.network.LOOPBACK`); ``localhost`` is there for humans.
SERVER_NAMES: Final = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class RunCertificates:
    """PEM files of the run's CA and of the server certificate signed by it."""

    directory: Path
    ca_path: Path
    server_cert_path: Path
    server_key_path: Path

    @classmethod
    def create(cls, directory: Path) -> RunCertificates:
        """Generate a CA and a server certificate into ``directory`` (or reuse them).

        Reuse matters for ``tap local up`` on an existing run folder and for restarts:
        clients already hold the CA path.
        """
        directory.mkdir(parents=True, exist_ok=True)
        certs = cls(
            directory=directory,
            ca_path=directory / "ca.pem",
            server_cert_path=directory / "server.crt",
            server_key_path=directory / "server.key",
        )
        if certs.ca_path.exists() and certs.server_cert_path.exists():
            return certs
        # trustme is a test-only dependency (the ``local`` extra); import it only here.
        import trustme

        ca = trustme.CA(organization_name="tap local stack")
        server = ca.issue_cert(*SERVER_NAMES)
        ca.cert_pem.write_to_path(str(certs.ca_path))
        # The chain (leaf first) so servers that send the whole chain can.
        certs.server_cert_path.write_bytes(
            b"".join(blob.bytes() for blob in server.cert_chain_pems)
        )
        server.private_key_pem.write_to_path(str(certs.server_key_path))
        os.chmod(certs.server_key_path, 0o600)
        return certs
