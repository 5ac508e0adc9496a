"""The processor task's environment: every variable named once, typed, documented.

The CDKTF task definition (``lib/``) builds the container environment from
:data:`TASK_VARIABLES`, and the processor reads it with
:func:`ProcessorSettings.from_environ`, so the two cannot drift. No variable
carries a secret: credentials are fetched from Secrets Manager at run time by ARN
(that is what makes rotation work without a restart).

A bad or missing value stops start-up with :class:`SettingsError`, whose message
names every offending variable and what is wrong with it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

from processor.contract.deployment import DEFAULT_REGION, RDS_CA_BUNDLE


class SettingsError(ValueError):
    """One or more environment variables are missing or invalid; ``subject`` says whose
    configuration (the processor's or the read API's), so an operator looks in the
    right table."""

    def __init__(self, problems: list[str], subject: str = "processor") -> None:
        self.problems = problems
        super().__init__(
            f"invalid {subject} configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false")


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return parse


_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+")


def _secret_arn(raw: str) -> str:
    if not _ARN.fullmatch(raw):
        raise ValueError("must be a Secrets Manager secret ARN (arn:aws:secretsmanager:...)")
    return raw


def _optional_secret_arn(raw: str) -> str:
    return raw if raw == "" else _secret_arn(raw)


def _non_empty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _ip_address(raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise ValueError("must be an IP address (e.g. 127.0.0.1)") from None


def _log_level(raw: str) -> str:
    upper = raw.upper()
    if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return upper


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One environment variable of the processor task."""

    name: str
    attribute: str
    description: str
    parse: Callable[[str], Any]
    default: str | None = None  # None: required
    #: Set by the stack from its resources (stream name, endpoints, ARNs). Variables
    #: that are not stack-provided keep their default unless an operator overrides.
    stack_provided: bool = False

    @property
    def required(self) -> bool:
        return self.default is None


#: Every variable the processor reads, in documentation order.
TASK_VARIABLES: Final[tuple[EnvVar, ...]] = (
    EnvVar(
        "TAP_STREAM_NAME",
        "stream_name",
        "Kinesis stream to consume.",
        _non_empty,
        stack_provided=True,
    ),
    EnvVar(
        "AWS_REGION",
        "aws_region",
        "AWS region of the stream and secrets.",
        _non_empty,
        default=DEFAULT_REGION,
        stack_provided=True,
    ),
    EnvVar(
        "TAP_ENVIRONMENT",
        "environment",
        "Environment name (dev, prod, ...).",
        _non_empty,
        default="dev",
        stack_provided=True,
    ),
    EnvVar("TAP_DB_HOST", "db_host", "PostgreSQL host name.", _non_empty, stack_provided=True),
    EnvVar(
        "TAP_DB_PORT",
        "db_port",
        "PostgreSQL port.",
        _int_between(1, 65535),
        default="5432",
        stack_provided=True,
    ),
    EnvVar("TAP_DB_NAME", "db_name", "PostgreSQL database name.", _non_empty, stack_provided=True),
    EnvVar(
        "TAP_DB_SECRET_ARN",
        "db_secret_arn",
        "Secrets Manager ARN of the DB credentials (JSON with username and password; "
        "the application role's secret, never the master secret).",
        _secret_arn,
        stack_provided=True,
    ),
    EnvVar(
        "TAP_DB_SSLMODE",
        "db_sslmode",
        "libpq sslmode; verify-full in AWS.",
        _one_of("disable", "require", "verify-ca", "verify-full"),
        default="verify-full",
        stack_provided=True,
    ),
    EnvVar(
        "TAP_DB_CA_BUNDLE",
        "db_ca_bundle",
        "CA bundle path for PostgreSQL TLS (the image ships the RDS bundle).",
        _non_empty,
        default=RDS_CA_BUNDLE,
        stack_provided=True,
    ),
    EnvVar(
        "TAP_REDIS_HOST",
        "redis_host",
        "Redis primary endpoint host.",
        _non_empty,
        stack_provided=True,
    ),
    EnvVar(
        "TAP_REDIS_PORT",
        "redis_port",
        "Redis port.",
        _int_between(1, 65535),
        default="6379",
        stack_provided=True,
    ),
    EnvVar(
        "TAP_REDIS_AUTH_SECRET_ARN",
        "redis_auth_secret_arn",
        "Secrets Manager ARN of the Redis AUTH token (JSON with auth_token).",
        _secret_arn,
        stack_provided=True,
    ),
    EnvVar(
        "TAP_REDIS_TLS",
        "redis_tls",
        "Use TLS to Redis (rediss://). Plain TCP only when set to false for local use.",
        _parse_bool,
        default="true",
        stack_provided=True,
    ),
    EnvVar(
        "TAP_REDIS_CA_BUNDLE",
        "redis_ca_bundle",
        "CA bundle for Redis TLS; empty means the system trust store.",
        str,
        default="",
    ),
    EnvVar(
        "TAP_POLL_INTERVAL_MS",
        "poll_interval_ms",
        "GetRecords interval per shard; 200 ms is Kinesis's 5 calls/s/shard limit.",
        _int_between(200, 10_000),
        default="200",
    ),
    EnvVar(
        "TAP_GET_RECORDS_LIMIT",
        "get_records_limit",
        "Max records per GetRecords call.",
        _int_between(1, 10_000),
        default="1000",
    ),
    EnvVar(
        "TAP_LEASE_DURATION_S",
        "lease_duration_s",
        "Shard lease length; a dead worker's shards are taken over after it.",
        _float_between(2, 300),
        default="10",
    ),
    EnvVar(
        "TAP_INITIAL_POSITION",
        "initial_position",
        "Where a shard with no checkpoint starts.",
        _one_of("TRIM_HORIZON", "LATEST"),
        default="TRIM_HORIZON",
    ),
    EnvVar(
        "TAP_SILENCE_AFTER_S",
        "silence_after_s",
        "Minimum silence: a device is 'silent' after max(this, 5 x its learned reporting "
        "interval) without a reading, measured on the shard's progress (not the wall clock).",
        _float_between(5, 86_400),
        default="60",
    ),
    EnvVar(
        "TAP_WORKER_ID",
        "worker_id",
        "Lease owner name; defaults to host name and process id.",
        str,
        default="",
    ),
    EnvVar(
        "TAP_HEALTH_PORT",
        "health_port",
        "Local port of /health/live and /health/ready.",
        _int_between(1, 65535),
        default="8080",
        stack_provided=True,
    ),
    EnvVar(
        "TAP_METRICS_NAMESPACE",
        "metrics_namespace",
        "CloudWatch namespace of the embedded-metric-format metrics.",
        _non_empty,
        default="TapPipeline",
        stack_provided=True,
    ),
    EnvVar("TAP_LOG_LEVEL", "log_level", "Log level.", _log_level, default="INFO"),
    # -- issue 10 item 9: bounded detector memory ---------------------------------------
    EnvVar(
        "TAP_DETECTOR_IDLE_EVICT_S",
        "detector_idle_evict_s",
        "A device whose last reading is this much older than the shard's newest "
        "leaves the worker's detector memory; its state stays in Redis (7-day TTL) and "
        "is reloaded when it reports again (silence has its own per-shard registry).",
        _float_between(60, 7 * 86_400),
        default="900",
    ),
    # -- processor hardening (issue 10: stalled shards, health) ------------------------
    EnvVar(
        "TAP_SHARD_STALL_S",
        "shard_stall_s",
        "/health/live fails when a shard has had records waiting this long without a "
        "commit while PostgreSQL answers (a wedged runner; a restart frees the shard).",
        _float_between(30, 86_400),
        default="300",
    ),
    # --- issue 11 item 2, the application role: migrations with the owner's secret ---
    EnvVar(
        "TAP_DB_MIGRATION_SECRET_ARN",
        "db_migration_secret_arn",
        "Secrets Manager ARN of the database owner's credentials (the RDS master "
        "secret), read only by `python -m processor migrate` (the migrate task); "
        "empty in the service, whose role cannot read it.",
        _optional_secret_arn,
        default="",
    ),
    EnvVar(
        "TAP_HEALTH_HOST",
        "health_host",
        "Address the health endpoint binds. Loopback: the ECS container health check "
        "runs inside the task; set 0.0.0.0 only for a probe from outside (none today).",
        _ip_address,
        default="127.0.0.1",
    ),
    # -- detector overrides (issue 9) --
    EnvVar(
        "TAP_DETECTOR_OVERRIDES_REFRESH_S",
        "detector_overrides_refresh_s",
        "How often the tap.detector_overrides table is re-read (per-device detector settings).",
        _float_between(5, 3600),
        default="30",
    ),
    # -- issue 10 item 9: the silence registry's bound ----------------------------------
    EnvVar(
        "TAP_SILENCE_FORGET_AFTER_S",
        "silence_forget_after_s",
        "A device silent this long (shard progress) leaves the shard's silence registry "
        "in Redis; the worker's memory drops it as soon as its silence is reported and "
        "saved. Bounds the registry under device churn; at least 2 days (above "
        "TAP_SILENCE_AFTER_S and the 1 h unknown-cadence limit). A device whose own "
        "limit (5 x its interval) exceeds it is forgotten by Redis before it is due.",
        _float_between(2 * 86_400, 366 * 86_400),
        default="604800",
    ),
    # -- issue 13 item 3, the read API in the stack: its login, provisioned by migrate --
    EnvVar(
        "TAP_DB_API_SECRET_ARN",
        "db_api_secret_arn",
        "Secrets Manager ARN of the read API's PostgreSQL login (role tap_api_reader); "
        "`python -m processor migrate` gives it a password and makes the role a login. "
        "Empty: not provisioned (the service never reads it).",
        _optional_secret_arn,
        default="",
    ),
)

VARIABLES_BY_NAME: Final = {var.name: var for var in TASK_VARIABLES}

#: Environment variable names whose values would be secret. None of these may ever
#: appear in a task definition; the stack tests assert it.
FORBIDDEN_SECRET_NAMES: Final = ("PASSWORD", "TOKEN", "SECRET_KEY", "AUTH_TOKEN")


def read_variables(
    variables: Sequence[EnvVar], environ: Mapping[str, str], subject: str = "processor"
) -> dict[str, Any]:
    """Each variable's parsed value by attribute name (its default when unset); every
    problem is collected and raised at once, each naming its variable (``subject``:
    whose configuration the message says it is)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for var in variables:
        raw = environ.get(var.name)
        if raw is None:
            if var.default is None:
                problems.append(f"{var.name} is required but not set ({var.description})")
                continue
            raw = var.default
        try:
            values[var.attribute] = var.parse(raw)
        except ValueError as exc:
            problems.append(f"{var.name}={_shown(raw)!r} is invalid: {exc}")
    if problems:
        raise SettingsError(problems, subject)
    return values


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    stream_name: str
    aws_region: str
    environment: str
    db_host: str
    db_port: int
    db_name: str
    db_secret_arn: str
    db_sslmode: str
    db_ca_bundle: str
    redis_host: str
    redis_port: int
    redis_auth_secret_arn: str
    redis_tls: bool
    redis_ca_bundle: str
    poll_interval_ms: int
    get_records_limit: int
    lease_duration_s: float
    initial_position: str
    silence_after_s: float
    worker_id: str
    health_port: int
    metrics_namespace: str
    log_level: str
    detector_idle_evict_s: float
    shard_stall_s: float = 300.0
    db_migration_secret_arn: str = ""
    health_host: str = "127.0.0.1"
    detector_overrides_refresh_s: float = 30.0
    silence_forget_after_s: float = 7 * 86_400.0
    db_api_secret_arn: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ProcessorSettings:
        """Read and validate every variable; report all problems at once."""
        values = read_variables(TASK_VARIABLES, os.environ if environ is None else environ)
        if not values["worker_id"]:
            values["worker_id"] = f"{socket.gethostname()}-{os.getpid()}"
        return cls(**values)

    def as_environment(self) -> dict[str, str]:
        """The inverse of :meth:`from_environ` (for starting local processors)."""
        out: dict[str, str] = {}
        by_attribute = {var.attribute: var for var in TASK_VARIABLES}
        for f in fields(self):
            var = by_attribute.get(f.name)
            if var is None:
                continue
            value = getattr(self, f.name)
            out[var.name] = (
                ("true" if value else "false") if isinstance(value, bool) else str(value)
            )
        return out


def _shown(raw: str) -> str:
    # Values are never secret by construction, but keep error lines short.
    return raw if len(raw) <= 80 else raw[:77] + "..."
