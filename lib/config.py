"""Stack configuration: one frozen, validated value built from the environment.

Every knob has a safe default (see ``docs/STACK.md``, "Configuration"). A bad value
raises :class:`ConfigError` whose message names the variable to fix, before any
provider binding is imported, so ``cdktf synth`` stops early and clearly.

This module imports nothing from cdktf: it is cheap to import and test.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from processor.contract import deployment
from processor.contract.environment import VARIABLES_BY_NAME

if TYPE_CHECKING:
    from lib.read_api_config import ReadApiConfig

#: eu-west-2 (London) is where the plant's data must stay (defined once in the contract).
DEFAULT_REGION: Final = deployment.DEFAULT_REGION

#: Kinesis per-shard write limits (AWS quota, provisioned mode).
SHARD_WRITE_BYTES_PER_SECOND: Final = 1_048_576
SHARD_WRITE_RECORDS_PER_SECOND: Final = 1_000

#: AWS name-length limits of the resources we name (documented service quotas).
NAME_LIMITS: Final[dict[str, int]] = {
    "aws_db_instance.identifier": 63,
    "aws_db_subnet_group.name": 255,
    "aws_db_parameter_group.name": 255,
    "aws_elasticache_replication_group.replication_group_id": 40,
    "aws_elasticache_subnet_group.name": 255,
    "aws_iam_role.name": 64,
    "aws_iam_policy.name": 128,
    "aws_kinesis_stream.name": 128,
    "aws_ecs_cluster.name": 255,
    "aws_ecs_service.name": 255,
    "aws_ecs_task_definition.family": 255,
    "aws_ecr_repository.name": 256,
    "aws_security_group.name": 255,
    "aws_sns_topic.name": 256,
    "aws_cloudwatch_metric_alarm.alarm_name": 255,
    "aws_cloudwatch_dashboard.dashboard_name": 255,
    "aws_cloudwatch_log_group.name": 512,
    "aws_secretsmanager_secret.name": 512,
    "aws_kms_alias.name": 256,
    "aws_appautoscaling_policy.name": 255,
}

_SUFFIX_PATTERN: Final = re.compile(r"[a-z0-9]{1,8}")
_ENVIRONMENT_PATTERN: Final = re.compile(r"[a-z][a-z0-9]{0,7}")
_MAX_AVAILABILITY_ZONES: Final = 3  # eu-west-2 has three (a, b, c)

#: Where local Terraform state lives by default: the project root (as cdktf's own
#: default), never under ``cdktf.out`` (which ``make clean`` and cdktf treat as
#: throwaway). Issue #11, item 1.
PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
#: Environments a single person deploys from one machine: local state is acceptable
#: there. Any other ``TAP_ENV`` (or ``TAP_PRODUCTION=true``) is a shared deployment
#: and is refused with local state unless ``TAP_ALLOW_LOCAL_STATE=true``.
LOCAL_STATE_ENVIRONMENTS: Final = frozenset({"dev", "local", "test", "ci"})

#: An e-mail address SNS can deliver to (deliberately simple: one ``@``, a dotted
#: domain, no spaces or commas, which would split the list).
_EMAIL_PATTERN: Final = re.compile(
    r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
)
#: A principal that may assume the producer role: an account id, or the ARN of an
#: account root, an IAM role or an IAM user (never a wildcard).
_PRINCIPAL_PATTERN: Final = re.compile(
    r"^(\d{12}|arn:aws(-[a-z]+)*:iam::\d{12}:(root|role/[A-Za-z0-9+=,.@_/-]{1,512}"
    r"|user/[A-Za-z0-9+=,.@_/-]{1,512}))$"
)
#: A KMS key ARN (or alias ARN) for the S3 backend; the backend needs the full ARN.
_KMS_KEY_ARN_PATTERN: Final = re.compile(
    r"^arn:aws(-[a-z]+)*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+)$"
)


class ConfigError(ValueError):
    """The stack configuration is invalid; the message names each offending variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def shard_count_for(
    sensors: int, readings_per_second: float, record_bytes: int, headroom: float
) -> int:
    """Provisioned shards for the expected write load (the capacity formula).

    ``shards = max(1, ceil(H * N * r * b / 1 MiB/s), ceil(H * N * r / 1000 rec/s))``
    with N sensors, r readings per second per sensor, b bytes per record and a
    headroom factor H (bursts, resharding lag, uneven partition keys).
    """
    records_per_second = sensors * readings_per_second * headroom
    by_bytes = math.ceil(records_per_second * record_bytes / SHARD_WRITE_BYTES_PER_SECOND)
    by_records = math.ceil(records_per_second / SHARD_WRITE_RECORDS_PER_SECOND)
    return max(1, by_bytes, by_records)


@dataclass(frozen=True, slots=True)
class Naming:
    """``<resource-type>-<environment>-<suffix>``: the name of every named resource."""

    environment: str
    suffix: str

    def name(self, resource_type: str) -> str:
        return f"{resource_type}-{self.environment}-{self.suffix}"


def contract_default(name: str) -> str:
    """The processor contract's default for one task variable (single source of truth)."""
    default = VARIABLES_BY_NAME[name].default
    if default is None:
        raise KeyError(f"{name} has no default in processor.contract")
    return default


@dataclass(frozen=True, slots=True)
class StackConfig:
    """Everything that varies between deployments of the pipeline.

    Names of the environment variables read by :meth:`from_environ` are given in
    brackets; ``docs/STACK.md`` holds the full table.
    """

    #: The deployment's environment name (1-8 lowercase letters/digits; dev, test,
    #: local and ci may keep local state) [TAP_ENV / context ``environment``].
    environment: str = "dev"
    #: Distinguishes parallel deployments in one account (1-8 lowercase letters or
    #: digits) [ENVIRONMENT_SUFFIX / context ``environmentSuffix``].
    suffix: str = "default"
    #: AWS region of every resource (the plant's data stays in London).
    region: str = DEFAULT_REGION
    #: Availability zones used by subnets, NAT, Redis and RDS (2..3) [TAP_AZ_COUNT].
    az_count: int = 2
    #: One NAT gateway instead of one per AZ (cheaper, not zone-resilient) [TAP_SINGLE_NAT].
    single_nat_gateway: bool = False
    #: The VPC's IPv4 range (CIDR; a /16 holds the eight /20 subnet slots).
    vpc_cidr: str = "10.40.0.0/16"
    #: Sensors the plant runs (count; the capacity formula) [TAP_SENSORS].
    sensors: int = 2000
    #: Readings per second of one sensor (Hz; the capacity formula) [TAP_READINGS_PER_SECOND].
    readings_per_second: float = 1.0
    #: Size of one record on the wire (bytes; the capacity formula) [TAP_RECORD_BYTES].
    record_bytes: int = 300
    #: Capacity over the expected load (factor >= 1: bursts, resharding lag, uneven
    #: partition keys) [TAP_SHARD_HEADROOM].
    shard_headroom: float = 2.0
    #: On-demand capacity mode instead of provisioned shards [TAP_KINESIS_ON_DEMAND].
    kinesis_on_demand: bool = False
    #: Stream retention (hours, 24..8760) [TAP_STREAM_RETENTION_HOURS].
    stream_retention_hours: int = 24
    #: Processor task CPU (Fargate units, 256..4096) [TAP_TASK_CPU].
    task_cpu: int = 512
    #: Processor task memory (MiB, a size Fargate pairs with the CPU) [TAP_TASK_MEMORY].
    task_memory: int = 1024
    #: Tag of the processor image in the stack's ECR repository [TAP_IMAGE_TAG].
    image_tag: str = "0.1.0"
    #: Seconds ECS waits after SIGTERM (Fargate maximum 120) so leases are released.
    stop_timeout_s: int = 120
    #: Processor tasks that always run (>= 1) [TAP_MIN_TASKS].
    min_tasks: int = 1
    #: Most processor tasks autoscaling may run; None = the shard count [TAP_MAX_TASKS].
    max_tasks: int | None = None
    #: Iterator age (ms) above which the service scales out and the alarm fires.
    iterator_age_alarm_ms: int = 60_000
    #: Iterator age (ms) below which, for 15 minutes, the service scales in by one.
    #: Both directions read the same metric, so they cannot fight (docs/STACK.md).
    iterator_age_scale_in_ms: int = 5_000
    #: RDS instance class (Graviton burstable by default) [TAP_DB_INSTANCE_CLASS].
    db_instance_class: str = "db.t4g.medium"
    #: PostgreSQL major version (16.x required: the migrations' features).
    db_engine_version: str = "16"
    #: Database storage at creation (GiB).
    db_allocated_storage_gb: int = 50
    #: Ceiling of RDS storage autoscaling (GiB).
    db_max_allocated_storage_gb: int = 200
    #: The database the pipeline writes to.
    db_name: str = "tap"
    #: PostgreSQL port.
    db_port: int = 5432
    #: Days of automated database backups kept (>= 7).
    db_backup_retention_days: int = 7
    #: ElastiCache node type [TAP_REDIS_NODE_TYPE].
    redis_node_type: str = "cache.t4g.small"
    #: Redis engine version (7.x: TLS, AUTH rotation).
    redis_engine_version: str = "7.1"
    #: Redis nodes: a primary and replicas (>= 2 for Multi-AZ failover).
    redis_nodes: int = 2
    #: Redis port.
    redis_port: int = 6379
    #: Days of daily Redis snapshots kept.
    redis_snapshot_retention_days: int = 7
    #: Days between rotations of the application's database secret.
    secret_rotation_days: int = 30
    #: Bump to generate and apply a new Redis AUTH token [TAP_REDIS_AUTH_TOKEN_VERSION].
    redis_auth_token_version: int = 1
    #: Rotate the application role's secret with AWS's alternating-users function
    #: (Serverless Application Repository). False only where that service is absent
    #: (the moto deploy smoke): the secret then keeps the migrate task's password
    #: [TAP_DB_APP_ROTATION].
    db_app_secret_rotation: bool = True
    #: Production safety: deletion protection, final snapshot, keep backups [TAP_PRODUCTION].
    production: bool = False
    #: CloudWatch Logs retention for every log group (days) [TAP_LOG_RETENTION_DAYS].
    log_retention_days: int = 365
    #: Port of the processor's health endpoint (default: the processor contract's
    #: TAP_HEALTH_PORT).
    health_port: int = field(default_factory=lambda: int(contract_default("TAP_HEALTH_PORT")))
    #: CloudWatch namespace of the processor's metrics (default: the processor
    #: contract's TAP_METRICS_NAMESPACE).
    metrics_namespace: str = field(
        default_factory=lambda: contract_default("TAP_METRICS_NAMESPACE")
    )
    #: S3 bucket of the remote state; local state when unset [TAP_STATE_BUCKET].
    state_bucket: str | None = None
    #: Object key of the remote state; ``tap/<env>-<suffix>/terraform.tfstate`` when
    #: unset [TAP_STATE_KEY].
    state_key: str | None = None
    #: KMS key (ARN) the S3 backend encrypts the state with; required with a bucket
    #: [TAP_STATE_KMS_KEY_ARN].
    state_kms_key_arn: str | None = None
    #: Folder of the local state file [TAP_STATE_DIR]; the project root by default.
    state_dir: Path = PROJECT_ROOT
    #: Accept local state for a shared deployment [TAP_ALLOW_LOCAL_STATE] (loud warning).
    allow_local_state: bool = False
    #: E-mail addresses told about alarms (comma-separated) [TAP_ALARM_EMAILS].
    alarm_emails: tuple[str, ...] = ()
    #: HTTPS endpoints told about alarms (comma-separated) [TAP_ALARM_HTTPS_ENDPOINTS].
    alarm_https_endpoints: tuple[str, ...] = ()
    #: Who may assume the producer role [TAP_PRODUCER_PRINCIPAL]: an account id or an
    #: IAM ARN; the deploying account's root (its IAM policies decide) when unset.
    producer_principal: str | None = None
    #: Pre-create the account-wide ``RDSOSMetrics`` log group with our key
    #: [TAP_RDS_OS_METRICS_LOG_GROUP]: on exactly one deployment per account and region.
    rds_os_metrics_log_group: bool = False
    #: The read API's settings (lib.read_api_config, the TAP_API_* variables); ``main.py``
    #: reads them, and synth refuses a stack without them (HTTPS needs a certificate).
    read_api: ReadApiConfig | None = None

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    # ------------------------------------------------------------------ derived
    @property
    def availability_zones(self) -> tuple[str, ...]:
        return tuple(f"{self.region}{letter}" for letter in "abc"[: self.az_count])

    @property
    def shard_count(self) -> int:
        return shard_count_for(
            self.sensors, self.readings_per_second, self.record_bytes, self.shard_headroom
        )

    @property
    def max_task_count(self) -> int:
        """More tasks than shards would idle: a shard is read by one lease holder."""
        return self.shard_count if self.max_tasks is None else self.max_tasks

    @property
    def stack_name(self) -> str:
        return "TapStack"

    @property
    def effective_state_key(self) -> str:
        return self.state_key or f"tap/{self.environment}-{self.suffix}/terraform.tfstate"

    @property
    def local_state_path(self) -> Path:
        """The local state file (used when no ``TAP_STATE_BUCKET`` is set)."""
        return Path(self.state_dir) / f"terraform.{self.environment}-{self.suffix}.tfstate"

    @property
    def shared_deployment(self) -> bool:
        """Production, or an environment other than a personal dev/local/test/ci one."""
        return self.production or self.environment not in LOCAL_STATE_ENVIRONMENTS

    def warnings(self) -> list[str]:
        """Accepted but risky choices, printed loudly by ``main.py``."""
        if self.state_bucket is None and self.shared_deployment and self.allow_local_state:
            return [
                f"LOCAL STATE FOR A SHARED DEPLOYMENT (TAP_ENV={self.environment}, "
                f"TAP_PRODUCTION={str(self.production).lower()}): the state lives only in "
                f"{self.local_state_path}; nobody else can plan or destroy this stack and "
                "losing the file orphans every resource. Use TAP_STATE_BUCKET."
            ]
        return []

    @property
    def naming(self) -> Naming:
        return Naming(self.environment, self.suffix)

    def name(self, resource_type: str) -> str:
        return self.naming.name(resource_type)

    # --------------------------------------------------------------- validation
    def problems(self) -> list[str]:
        p: list[str] = []
        if not _SUFFIX_PATTERN.fullmatch(self.suffix):
            p.append(
                f"ENVIRONMENT_SUFFIX={self.suffix!r} is invalid: "
                "use 1-8 lowercase letters or digits (e.g. 'pr123')"
            )
        if not _ENVIRONMENT_PATTERN.fullmatch(self.environment):
            p.append(
                f"TAP_ENV={self.environment!r} is invalid: use 1-8 lowercase letters or "
                "digits, starting with a letter (e.g. 'dev', 'prod')"
            )
        if not 2 <= self.az_count <= _MAX_AVAILABILITY_ZONES:
            p.append(
                f"TAP_AZ_COUNT={self.az_count} is invalid: Multi-AZ needs at least 2 "
                f"availability zones and {self.region} has {_MAX_AVAILABILITY_ZONES}"
            )
        if self.sensors < 1 or self.readings_per_second <= 0 or self.record_bytes < 1:
            p.append("TAP_SENSORS, TAP_READINGS_PER_SECOND and TAP_RECORD_BYTES must be positive")
        if self.shard_headroom < 1:
            p.append(f"TAP_SHARD_HEADROOM={self.shard_headroom} is invalid: must be >= 1")
        if not 24 <= self.stream_retention_hours <= 8760:
            p.append(
                f"TAP_STREAM_RETENTION_HOURS={self.stream_retention_hours} is invalid: "
                "Kinesis accepts 24..8760"
            )
        if self.min_tasks < 1:
            p.append(f"TAP_MIN_TASKS={self.min_tasks} is invalid: at least 1 task must run")
        if self.sensors >= 1 and self.readings_per_second > 0 and self.shard_headroom >= 1:
            shards = self.shard_count
            if self.min_tasks > self.max_task_count:
                p.append(
                    f"TAP_MIN_TASKS={self.min_tasks} is greater than TAP_MAX_TASKS="
                    f"{self.max_task_count}: autoscaling needs min <= max"
                )
            if self.max_task_count > shards:
                p.append(
                    f"TAP_MAX_TASKS={self.max_task_count} exceeds the shard count {shards}: "
                    "a shard is read by one task, extra tasks would idle"
                )
        if self.task_cpu not in _FARGATE_CPU:
            p.append(
                f"TAP_TASK_CPU={self.task_cpu} is not a Fargate CPU size "
                f"({', '.join(map(str, _FARGATE_CPU))})"
            )
        elif not max(512, 2 * self.task_cpu) <= self.task_memory <= min(8 * self.task_cpu, 30720):
            p.append(
                f"TAP_TASK_MEMORY={self.task_memory} does not fit TAP_TASK_CPU={self.task_cpu}: "
                f"Fargate allows {max(512, 2 * self.task_cpu)}.."
                f"{min(8 * self.task_cpu, 30720)} MiB"
            )
        if not 1 <= self.stop_timeout_s <= 120:
            p.append(f"stop_timeout_s={self.stop_timeout_s}: Fargate allows 1..120 seconds")
        if self.redis_nodes < 2:
            p.append(f"redis_nodes={self.redis_nodes}: Multi-AZ failover needs at least 2 nodes")
        if not self.redis_engine_version.startswith("7."):
            p.append(f"redis_engine_version={self.redis_engine_version!r}: engine 7.x required")
        if self.db_engine_version.split(".")[0] != "16":
            p.append(f"db_engine_version={self.db_engine_version!r}: PostgreSQL 16.x required")
        if self.db_backup_retention_days < 7:
            p.append("db_backup_retention_days must be at least 7")
        if self.log_retention_days not in _LOG_RETENTION_CHOICES:
            p.append(
                f"TAP_LOG_RETENTION_DAYS={self.log_retention_days} is not a CloudWatch "
                f"retention value ({', '.join(map(str, sorted(_LOG_RETENTION_CHOICES)))})"
            )
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", self.image_tag):
            p.append(f"TAP_IMAGE_TAG={self.image_tag!r} is not a valid image tag")
        if self.state_bucket is not None and not re.fullmatch(
            r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.state_bucket
        ):
            p.append(f"TAP_STATE_BUCKET={self.state_bucket!r} is not a valid S3 bucket name")
        if self.state_bucket is not None and self.state_kms_key_arn is None:
            p.append(
                "TAP_STATE_KMS_KEY_ARN is required with TAP_STATE_BUCKET: without it the S3 "
                "backend writes the state (which holds the Redis AUTH token) with SSE-S3, "
                "not a key you control"
            )
        if self.state_kms_key_arn is not None and not _KMS_KEY_ARN_PATTERN.match(
            self.state_kms_key_arn
        ):
            p.append(
                f"TAP_STATE_KMS_KEY_ARN={self.state_kms_key_arn!r} is not a KMS key or alias "
                "ARN (arn:aws:kms:<region>:<account>:key/<id>)"
            )
        if self.state_bucket is None and self.shared_deployment and not self.allow_local_state:
            p.append(
                f"TAP_STATE_BUCKET is not set for a shared deployment (TAP_ENV="
                f"{self.environment}, TAP_PRODUCTION={str(self.production).lower()}): "
                "local state would live on one machine only. Set TAP_STATE_BUCKET (and "
                "TAP_STATE_KMS_KEY_ARN), or TAP_ALLOW_LOCAL_STATE=true to accept the risk"
            )
        for email in self.alarm_emails:
            if not _EMAIL_PATTERN.match(email):
                p.append(f"TAP_ALARM_EMAILS: {email!r} is not an e-mail address")
        for url in self.alarm_https_endpoints:
            problem = _https_endpoint_problem(url)
            if problem:
                p.append(f"TAP_ALARM_HTTPS_ENDPOINTS: {url!r} {problem}")
        if self.producer_principal is not None and not _PRINCIPAL_PATTERN.match(
            self.producer_principal
        ):
            p.append(
                f"TAP_PRODUCER_PRINCIPAL={self.producer_principal!r} is not an account id or "
                "the ARN of an account root, IAM role or IAM user (no wildcards)"
            )
        if not 0 < self.iterator_age_scale_in_ms < self.iterator_age_alarm_ms:
            p.append(
                f"iterator_age_scale_in_ms={self.iterator_age_scale_in_ms} must be positive "
                f"and below iterator_age_alarm_ms={self.iterator_age_alarm_ms}, or the "
                "scale-in and scale-out alarms could both fire"
            )
        if self.redis_auth_token_version < 1:
            p.append(
                f"TAP_REDIS_AUTH_TOKEN_VERSION={self.redis_auth_token_version} is invalid: "
                "must be >= 1"
            )
        if not p:
            p.extend(self._name_length_problems())
        return p

    def _name_length_problems(self) -> list[str]:
        # The longest name we build per limited resource type (see the components).
        longest = {
            "aws_db_instance.identifier": self.name("postgres"),
            "aws_elasticache_replication_group.replication_group_id": self.name("redis"),
            "aws_iam_role.name": self.name("role-processor-execution"),
            "aws_iam_policy.name": self.name("policy-producer-put-records"),
        }
        return [
            f"ENVIRONMENT_SUFFIX/TAP_ENV make {key} {value!r} longer than {NAME_LIMITS[key]}"
            for key, value in longest.items()
            if len(value) > NAME_LIMITS[key]
        ]

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        context: Callable[[str], Any] | None = None,
    ) -> StackConfig:
        """Build the configuration from environment variables, then cdktf context.

        Raises :class:`ConfigError` naming every bad variable (all at once).
        """

        def ctx(key: str) -> str | None:
            value = context(key) if context is not None else None
            return None if value is None else str(value)

        problems: list[str] = []
        values: dict[str, Any] = {}

        def read(
            var: str, attribute: str, parse: Callable[[str], Any], context_key: str = ""
        ) -> None:
            raw = environ.get(var)
            if raw is None and context_key:
                raw = ctx(context_key)
            if raw is None or raw == "":
                return
            try:
                values[attribute] = parse(raw)
            except ValueError as exc:
                problems.append(f"{var}={raw!r} is invalid: {exc}")

        read("ENVIRONMENT_SUFFIX", "suffix", str, "environmentSuffix")
        read("TAP_ENV", "environment", str, "environment")
        read("TAP_AZ_COUNT", "az_count", int)
        read("TAP_SINGLE_NAT", "single_nat_gateway", _parse_bool)
        read("TAP_SENSORS", "sensors", int)
        read("TAP_READINGS_PER_SECOND", "readings_per_second", float)
        read("TAP_RECORD_BYTES", "record_bytes", int)
        read("TAP_SHARD_HEADROOM", "shard_headroom", float)
        read("TAP_KINESIS_ON_DEMAND", "kinesis_on_demand", _parse_bool)
        read("TAP_STREAM_RETENTION_HOURS", "stream_retention_hours", int)
        read("TAP_TASK_CPU", "task_cpu", int)
        read("TAP_TASK_MEMORY", "task_memory", int)
        read("TAP_IMAGE_TAG", "image_tag", str)
        read("TAP_MIN_TASKS", "min_tasks", int)
        read("TAP_MAX_TASKS", "max_tasks", int)
        read("TAP_DB_INSTANCE_CLASS", "db_instance_class", str)
        read("TAP_REDIS_NODE_TYPE", "redis_node_type", str)
        read("TAP_PRODUCTION", "production", _parse_bool)
        read("TAP_LOG_RETENTION_DAYS", "log_retention_days", int)
        read("TAP_STATE_BUCKET", "state_bucket", str)
        read("TAP_STATE_KEY", "state_key", str)
        read("TAP_STATE_KMS_KEY_ARN", "state_kms_key_arn", str)
        read("TAP_STATE_DIR", "state_dir", Path)
        read("TAP_ALLOW_LOCAL_STATE", "allow_local_state", _parse_bool)
        read("TAP_ALARM_EMAILS", "alarm_emails", _parse_list)
        read("TAP_ALARM_HTTPS_ENDPOINTS", "alarm_https_endpoints", _parse_list)
        read("TAP_PRODUCER_PRINCIPAL", "producer_principal", str)
        read("TAP_REDIS_AUTH_TOKEN_VERSION", "redis_auth_token_version", int)
        read("TAP_RDS_OS_METRICS_LOG_GROUP", "rds_os_metrics_log_group", _parse_bool)
        read("TAP_DB_APP_ROTATION", "db_app_secret_rotation", _parse_bool)
        if problems:
            raise ConfigError(problems)
        return cls(**values)


#: Fargate task CPU units (0.25..4 vCPU).
_FARGATE_CPU: Final = (256, 512, 1024, 2048, 4096)

_LOG_RETENTION_CHOICES: Final = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
     2557, 2922, 3288, 3653}
)  # fmt: skip


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _parse_list(raw: str) -> tuple[str, ...]:
    """Comma-separated values, blanks around them ignored."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _https_endpoint_problem(url: str) -> str | None:
    """Why SNS could not (or should not) deliver alarms to ``url``; None when fine."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return "has an invalid port" if "Port" in str(exc) else f"is not a URL ({exc})"
    if parts.scheme != "https":
        return "must use https:// (alarm contents must not travel in clear)"
    if not parts.hostname or "." not in parts.hostname:
        return "has no host name"
    if parts.username or parts.password:
        return "must not carry credentials (they would be stored in clear in the subscription)"
    if any(c.isspace() for c in url):
        return "contains white space"
    if port is not None and not 1 <= port <= 65535:
        return "has an invalid port"
    return None
