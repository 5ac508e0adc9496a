"""A deployed stack as the tools that reach it see it, read once from its outputs.

``terraform output -json`` (names in :mod:`processor.contract.stack_outputs`) gives
the stream, the database and Redis endpoints, the secret ARNs and the processor's
task environment. From those, :class:`DeployedStack` says how to reach the stores
the way the processor does: PostgreSQL with ``sslmode=verify-full`` against the RDS
CA bundle, Redis over TLS with the auth token, the region of the task. Both
``tap load --target deployed`` (:mod:`simulator.load.target`) and the e2e suite's
deployed target (``e2e/tests/targets.py``) build on it; where the outputs come from
(a file, or ``terraform output`` run by the suite) is theirs to decide.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from processor.contract import stack_outputs as out
from processor.contract.deployment import RDS_CA_BUNDLE
from simulator.aws_client import aws_region

#: Every stack writes these; a file without one is not a deployed stack's outputs.
REQUIRED: Final = (
    out.STREAM_NAME,
    out.PROCESSOR_TASK_ENVIRONMENT,
    out.DB_ENDPOINT,
    out.DB_PORT,
    out.DB_SECRET_ARN,
    out.REDIS_PRIMARY_ENDPOINT,
    out.REDIS_PORT,
    out.REDIS_AUTH_SECRET_ARN,
)


class DeployedStackError(ValueError):
    """The outputs or a secret cannot describe the stack; the message says what."""


def output_values(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``terraform output -json`` (name -> {"value": ...}) as name -> value; a file
    that already holds plain values passes through."""
    return {
        name: entry["value"] if isinstance(entry, dict) and "value" in entry else entry
        for name, entry in raw.items()
    }


def _optional(values: Mapping[str, Any], name: str) -> str | None:
    value = values.get(name)
    return str(value) if value else None


@dataclass(frozen=True, slots=True)
class DeployedStack:
    stream_name: str
    db_endpoint: str
    db_port: int
    #: The RDS-managed master secret (username, password).
    db_secret_arn: str
    redis_primary_endpoint: str
    redis_port: int
    redis_auth_secret_arn: str
    #: The processor task's environment (region, database name, CA path, lease ...).
    task_environment: dict[str, str] = field(default_factory=dict)
    #: The processors' login, rotated by alternating users (older stacks: None).
    db_app_secret_arn: str | None = None
    ecs_cluster_name: str | None = None
    ecs_service_name: str | None = None
    #: The producer role a gateway, a campaign or the e2e suite writes through.
    producer_role_arn: str | None = None
    source: str = ""

    @classmethod
    def from_outputs(cls, raw: Mapping[str, Any], source: str = "") -> DeployedStack:
        values = output_values(raw)
        missing = [name for name in REQUIRED if values.get(name) in (None, "")]
        if missing:
            where = f"{source}: " if source else ""
            raise DeployedStackError(
                f"{where}output {', '.join(repr(m) for m in missing)} missing"
                " (is the stack deployed?)"
            )
        task_env = values[out.PROCESSOR_TASK_ENVIRONMENT]
        if not isinstance(task_env, dict):
            raise DeployedStackError(f"{source}: {out.PROCESSOR_TASK_ENVIRONMENT} is not a map")
        return cls(
            stream_name=str(values[out.STREAM_NAME]),
            db_endpoint=str(values[out.DB_ENDPOINT]),
            db_port=int(values[out.DB_PORT]),
            db_secret_arn=str(values[out.DB_SECRET_ARN]),
            redis_primary_endpoint=str(values[out.REDIS_PRIMARY_ENDPOINT]),
            redis_port=int(values[out.REDIS_PORT]),
            redis_auth_secret_arn=str(values[out.REDIS_AUTH_SECRET_ARN]),
            task_environment={str(k): str(v) for k, v in task_env.items()},
            db_app_secret_arn=_optional(values, out.DB_APP_SECRET_ARN),
            ecs_cluster_name=_optional(values, out.ECS_CLUSTER_NAME),
            ecs_service_name=_optional(values, out.ECS_SERVICE_NAME),
            producer_role_arn=_optional(values, out.PRODUCER_ROLE_ARN),
            source=source,
        )

    def region(self, environ: Mapping[str, str]) -> str:
        """``AWS_REGION`` of the caller, else the task's, else the usual fallback."""
        return (
            environ.get("AWS_REGION")
            or self.task_environment.get("AWS_REGION")
            or aws_region(environ)
        )

    def db_name(self, environ: Mapping[str, str]) -> str:
        return environ.get("TAP_DB_NAME") or self.task_environment.get("TAP_DB_NAME") or "tap"

    def db_ca_bundle(self, environ: Mapping[str, str]) -> str:
        """The caller's ``TAP_DB_CA_BUNDLE``, else the task's, else the contract's path."""
        return (
            environ.get("TAP_DB_CA_BUNDLE")
            or self.task_environment.get("TAP_DB_CA_BUNDLE")
            or RDS_CA_BUNDLE
        )

    def postgres_dsn(self, secret: Mapping[str, Any], environ: Mapping[str, str]) -> str:
        """A libpq URL with ``secret``'s login, verifying the server as the processor does."""
        return (
            f"postgresql://{quote(str(secret['username']), safe='')}:"
            f"{quote(str(secret['password']), safe='')}@{self.db_endpoint}:{self.db_port}/"
            f"{self.db_name(environ)}"
            f"?sslmode=verify-full&sslrootcert={quote(self.db_ca_bundle(environ))}"
        )

    def redis_url(self, secret: Mapping[str, Any]) -> str:
        """TLS to the primary with the auth token; ElastiCache's certificates chain to
        Amazon's public roots (the system store)."""
        token = quote(str(secret["auth_token"]), safe="")
        return f"rediss://:{token}@{self.redis_primary_endpoint}:{self.redis_port}/0"


def read_secret(client: Any, arn: str) -> dict[str, Any]:
    """A Secrets Manager secret's JSON; the error names the ARN, never the value."""
    try:
        value = client.get_secret_value(SecretId=arn)["SecretString"]
        data = json.loads(value)
    except Exception as exc:
        raise DeployedStackError(f"cannot read secret {arn}: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise DeployedStackError(f"secret {arn} is not a JSON object")
    return data
