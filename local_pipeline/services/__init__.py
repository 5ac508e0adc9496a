"""Supervisors for the local stack's servers, one module per server.

- :mod:`~e2e.services.postgres`: real PostgreSQL (TLS, ``tap`` database, ``tap_app`` role)
- :mod:`~e2e.services.redis`: real Redis (TLS, AUTH token)
- :mod:`~e2e.services.aws_emulator`: moto server (Secrets Manager, control plane)
- :mod:`~e2e.services.kinesis_emulator`: kinesalite (or moto's Kinesis on request)
- :mod:`~e2e.services.local_stack`: :class:`LocalServices`, the four together

Usage docs: docs/LOCAL-STACK.md. Imports stay light here: nothing starts or imports a
driver until a server is used.
"""

from __future__ import annotations

from e2e.services.aws_emulator import REGION, MotoServer
from e2e.services.kinesis_emulator import Kinesalite, KinesisEmulatorKind
from e2e.services.local_stack import SERVICE_NAMES, LocalServices
from e2e.services.postgres import PostgresServer, PostgresSource, RestartNotSupported
from e2e.services.process import ServiceStartError
from e2e.services.redis import RedisServer, RedisSource
from e2e.services.tls import RunCertificates

__all__ = [
    "REGION",
    "SERVICE_NAMES",
    "Kinesalite",
    "KinesisEmulatorKind",
    "LocalServices",
    "MotoServer",
    "PostgresServer",
    "PostgresSource",
    "RedisServer",
    "RedisSource",
    "RestartNotSupported",
    "RunCertificates",
    "ServiceStartError",
]
