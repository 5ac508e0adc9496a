"""Supervisors for the local stack's servers, one module per server.

- :mod:`~local_pipeline.services.postgres`: real PostgreSQL (TLS, ``tap`` database,
  ``tap_app`` role)
- :mod:`~local_pipeline.services.redis`: real Redis (TLS, AUTH token)
- :mod:`~local_pipeline.services.aws_emulator`: moto server (Secrets Manager, control plane)
- :mod:`~local_pipeline.services.kinesis_emulator`: kinesalite (or moto's Kinesis on request)
- :mod:`~local_pipeline.services.local_stack`: :class:`LocalServices`, the four together

Usage docs: docs/LOCAL-STACK.md. Imports stay light here: nothing starts or imports a
driver until a server is used.
"""

from __future__ import annotations

from local_pipeline.services.aws_emulator import REGION, MotoServer
from local_pipeline.services.kinesis_emulator import Kinesalite, KinesisEmulatorKind
from local_pipeline.services.local_stack import SERVICE_NAMES, LocalServices
from local_pipeline.services.postgres import PostgresServer, PostgresSource, RestartNotSupported
from local_pipeline.services.process import ServiceStartError
from local_pipeline.services.redis import RedisServer, RedisSource
from local_pipeline.services.tls import RunCertificates

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
