"""The read API task's environment (``tap api``, issue 13): every variable named once.

The API shares the data stores' variables with the processor (host, port, TLS, CA
bundle, region): those are the processor's own :class:`EnvVar` definitions, reused
here, not retyped. Its credentials are its own read-only logins, fetched from
Secrets Manager at run time by ARN, like the processor's. A bad or missing value
stops start-up with :class:`SettingsError` naming every offending variable.

Lives in the contract (not in ``api/``) so that the stack can build the API's task
definition from :data:`API_VARIABLES`, as it does the processor's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

from processor.contract.environment import (
    VARIABLES_BY_NAME,
    EnvVar,
    _float_between,
    _int_between,
    _ip_address,
    _secret_arn,
    read_variables,
)

_SHARED: Final = (
    "AWS_REGION",
    "TAP_ENVIRONMENT",
    "TAP_DB_HOST",
    "TAP_DB_PORT",
    "TAP_DB_NAME",
    "TAP_DB_SSLMODE",
    "TAP_DB_CA_BUNDLE",
    "TAP_REDIS_HOST",
    "TAP_REDIS_PORT",
    "TAP_REDIS_TLS",
    "TAP_REDIS_CA_BUNDLE",
    "TAP_LOG_LEVEL",
)

#: Every variable the API reads, in documentation order.
API_VARIABLES: Final[tuple[EnvVar, ...]] = (
    *(VARIABLES_BY_NAME[name] for name in _SHARED),
    EnvVar(
        "TAP_API_DB_SECRET_ARN",
        "db_secret_arn",
        "Secrets Manager ARN of the API's read-only PostgreSQL login (JSON with "
        "username and password; a member of tap_api_reader, never the processor's).",
        _secret_arn,
        stack_provided=True,
    ),
    EnvVar(
        "TAP_API_REDIS_SECRET_ARN",
        "redis_secret_arn",
        "Secrets Manager ARN of the API's read-only Redis ACL user (JSON with "
        "username and auth_token).",
        _secret_arn,
        stack_provided=True,
    ),
    EnvVar(
        "TAP_API_HOST",
        "api_host",
        "Address the API binds (0.0.0.0 behind a load balancer).",
        _ip_address,
        default="127.0.0.1",
    ),
    EnvVar(
        "TAP_API_PORT",
        "api_port",
        "Port of the API and the board.",
        _int_between(1, 65535),
        default="8000",
        stack_provided=True,
    ),
    EnvVar(
        "TAP_API_CACHE_MAX_AGE_S",
        "cache_max_age_s",
        "A latest reading in Redis older than this (by its Kinesis arrival) is checked "
        "against PostgreSQL, which may hold a newer one written while Redis was out.",
        _float_between(1, 86_400),
        default="30",
    ),
    EnvVar(
        "TAP_API_REDIS_RETRY_S",
        "redis_retry_s",
        "After a Redis failure the API answers from PostgreSQL for this long before "
        "trying Redis again (a dead cache costs one failed call per period, not per "
        "request).",
        _float_between(0.1, 300),
        default="2",
    ),
)

API_VARIABLES_BY_NAME: Final = {var.name: var for var in API_VARIABLES}


@dataclass(frozen=True, slots=True)
class ApiSettings:
    aws_region: str
    environment: str
    db_host: str
    db_port: int
    db_name: str
    db_sslmode: str
    db_ca_bundle: str
    redis_host: str
    redis_port: int
    redis_tls: bool
    redis_ca_bundle: str
    log_level: str
    db_secret_arn: str
    redis_secret_arn: str
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    cache_max_age_s: float = 30.0
    redis_retry_s: float = 2.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        """Read and validate every variable; report all problems at once."""
        return cls(
            **read_variables(API_VARIABLES, os.environ if environ is None else environ, "API")
        )

    def as_environment(self) -> dict[str, str]:
        """The inverse of :meth:`from_environ` (for starting a local API)."""
        by_attribute = {var.attribute: var for var in API_VARIABLES}
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[by_attribute[f.name].name] = (
                ("true" if value else "false") if isinstance(value, bool) else str(value)
            )
        return out
