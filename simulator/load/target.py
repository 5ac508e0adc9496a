"""Where a campaign sends and where its end-to-end listener looks: one description.

A :class:`Target` names the Kinesis stream, the AWS environment for boto3
(``AWS_ENDPOINT_URL_*`` for emulators; nothing for a deployed stack, whose
credentials come from the normal AWS chain), and the PostgreSQL DSN and Redis URL
(+ CA) the listener polls. It is resolved once by ``tap load`` and handed to the
Locust process in the ``TAP_LOAD_TARGET`` environment variable (never written to
disk: it holds the database password and the Redis token).

Sources (``--target``):

``local``     the stack of ``tap local up`` (``runs/current/state.json``), or, when
              there is none, the variables ``AWS_ENDPOINT_URL_KINESIS``,
              ``TAP_PG_DSN``, ``TAP_REDIS_URL`` (``?ssl_ca_certs=`` or
              ``TAP_REDIS_CA_BUNDLE`` names its CA). The stream is ``--stream``,
              else ``TAP_STREAM_NAME``, else the state file's ``stream_name``.
``deployed``  ``terraform output -json`` saved in ``$TAP_STACK_OUTPUTS`` (default
              ``stack-outputs.json``): stream name, DB and Redis endpoints and secret
              ARNs; the secrets are read from Secrets Manager.
``FILE``      a JSON file: a ``state.json`` of ``tap local up``, a ``terraform output
              -json`` file, or a target written by :meth:`Target.to_json`.

The read API's base URL (``api_url``, issue 13) comes from ``tap local up``'s
``state.json`` (its ``api`` component), else ``TAP_API_URL``; ``tap load --api-url``
overrides it (a deployed stack's internal load balancer).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from processor.contract import stack_outputs as out
from simulator.aws_client import aws_client, aws_region
from simulator.deployed_stack import DeployedStack, DeployedStackError, read_secret
from simulator.load.producer_role import PRODUCER_ROLE_ENV

TARGET_ENV: Final = "TAP_LOAD_TARGET"
OUTPUTS_ENV: Final = "TAP_STACK_OUTPUTS"
DEFAULT_OUTPUTS: Final = "stack-outputs.json"
DEFAULT_STATE: Final = Path("runs") / "current" / "state.json"


class TargetError(ValueError):
    """The target cannot be described or reached; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # "local" or "deployed"
    stream_name: str
    region: str
    #: Variables the Locust process needs for boto3 (emulator endpoints, dummy keys).
    aws_environment: dict[str, str] = field(default_factory=dict)
    pg_dsn: str | None = None
    redis_url: str | None = None
    redis_ca: str | None = None
    source: str = ""
    #: A deployed stack's producer role (output ``producer_role_arn``): Locust users
    #: put records through it, as a gateway would (simulator/load/producer_role.py).
    producer_role_arn: str | None = None
    #: Base URL of the read API (``tap api``) the read users and stream listeners
    #: ask (issue 13); None when the target has no API (``--api-url`` sets one).
    api_url: str | None = None

    @property
    def kinesis_endpoint(self) -> str:
        return (
            self.aws_environment.get("AWS_ENDPOINT_URL_KINESIS")
            or self.aws_environment.get("AWS_ENDPOINT_URL")
            or f"https://kinesis.{self.region}.amazonaws.com"
        )

    @property
    def has_stores(self) -> bool:
        return bool(self.pg_dsn and self.redis_url)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Target:
        data = json.loads(text)
        return cls(**data)

    def describe(self) -> dict[str, Any]:
        """What summary.json records: endpoints without passwords or tokens."""
        return {
            "kind": self.kind,
            "source": self.source,
            "stream_name": self.stream_name,
            "region": self.region,
            "kinesis_endpoint": self.kinesis_endpoint,
            "postgres": _redact(self.pg_dsn),
            "redis": _redact(self.redis_url),
            "api": _redact(self.api_url),
        }

    def process_environment(self) -> dict[str, str]:
        """Environment for the Locust subprocess: the AWS variables and the target."""
        env = dict(self.aws_environment)
        env.setdefault("AWS_REGION", self.region)
        env.setdefault("AWS_DEFAULT_REGION", self.region)
        env[TARGET_ENV] = self.to_json()
        if self.producer_role_arn:
            env[PRODUCER_ROLE_ENV] = self.producer_role_arn
        return env


def _redact(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme:
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        return f"{parts.scheme}://{host}{parts.path}"
    # A key=value libpq string: keep host, port and dbname only.
    kept = [p for p in url.split() if p.split("=", 1)[0] in {"host", "port", "dbname"}]
    return " ".join(kept)


def resolve_target(
    spec: str,
    *,
    stream: str | None = None,
    environ: Mapping[str, str] | None = None,
    secrets_client: Any = None,
) -> Target:
    """Resolve ``--target`` (``local``, ``deployed`` or a JSON file path)."""
    env = os.environ if environ is None else environ
    stream = stream or env.get("TAP_STREAM_NAME") or None
    if spec == "local":
        if DEFAULT_STATE.exists():
            return _from_local_state(_read_json(DEFAULT_STATE), str(DEFAULT_STATE), stream)
        return _from_environment(env, stream)
    if spec == "deployed":
        path = Path(env.get(OUTPUTS_ENV) or DEFAULT_OUTPUTS)
        return _from_outputs(_read_json(path), str(path), stream, env, secrets_client)
    path = Path(spec)
    data = _read_json(path)
    if "services" in data and "run_dir" in data:
        return _from_local_state(data, str(path), stream)
    if out.STREAM_NAME in data and isinstance(data[out.STREAM_NAME], dict):
        return _from_outputs(data, str(path), stream, env, secrets_client)
    if "stream_name" in data and "kind" in data:
        target = Target(**data)
        if stream:
            target = Target(**(asdict(target) | {"stream_name": stream}))
        return target
    raise TargetError(
        f"{path}: not a tap local state.json, a `terraform output -json` file or a target JSON"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TargetError(f"target file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise TargetError(f"target file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise TargetError(f"target file {path}: expected a JSON object")
    return data


def _from_local_state(state: dict[str, Any], source: str, stream: str | None) -> Target:
    services = state.get("services", {})
    missing = [name for name in ("postgres", "redis", "kinesis") if name not in services]
    if missing or "client_environment" not in state:
        raise TargetError(
            f"{source}: the local stack lacks {', '.join(missing) or 'the AWS emulators'}"
            " (start it with `tap local up`)"
        )
    stream = stream or state.get("stream_name")
    if not stream:
        raise TargetError(
            f"{source} names no Kinesis stream: pass --stream NAME or set TAP_STREAM_NAME"
        )
    redis = services["redis"]
    board_url = state.get("components", {}).get("api", {}).get("board_url")
    return Target(
        kind="local",
        stream_name=str(stream),
        region=str(state.get("region") or state["client_environment"].get("AWS_REGION")),
        aws_environment=dict(state["client_environment"]),
        pg_dsn=str(services["postgres"]["dsn"]),
        redis_url=str(redis["url"]),
        redis_ca=redis.get("ca_path") or None,
        source=source,
        api_url=str(board_url).removesuffix("/board/") if board_url else None,
    )


_AWS_PASSTHROUGH: Final = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_KINESIS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_DISABLED",
)


def _from_environment(env: Mapping[str, str], stream: str | None) -> Target:
    if not (env.get("AWS_ENDPOINT_URL_KINESIS") or env.get("AWS_ENDPOINT_URL")):
        raise TargetError(
            f"no local stack ({DEFAULT_STATE} not found) and AWS_ENDPOINT_URL_KINESIS is not"
            " set: run `tap local up`, or export the emulator endpoints (`tap local env`)"
        )
    if not stream:
        raise TargetError("no stream: pass --stream NAME or set TAP_STREAM_NAME")
    redis_url = env.get("TAP_REDIS_URL")
    redis_ca = env.get("TAP_REDIS_CA_BUNDLE") or None
    if redis_url and not redis_ca:
        query = urlsplit(redis_url).query
        for pair in query.split("&"):
            if pair.startswith("ssl_ca_certs="):
                redis_ca = pair.split("=", 1)[1]
    region = aws_region(env)
    return Target(
        kind="local",
        stream_name=stream,
        region=region,
        aws_environment={k: env[k] for k in _AWS_PASSTHROUGH if env.get(k)},
        pg_dsn=env.get("TAP_PG_DSN") or None,
        redis_url=redis_url.split("?", 1)[0] if redis_url else None,
        redis_ca=redis_ca,
        source="environment",
        api_url=env.get("TAP_API_URL") or None,
    )


def _from_outputs(
    outputs: dict[str, Any],
    source: str,
    stream: str | None,
    env: Mapping[str, str],
    secrets_client: Any,
) -> Target:
    """A deployed stack: endpoints from the outputs, credentials from Secrets Manager
    through the caller's normal AWS credentials (run from a host inside the VPC)."""
    try:
        stack = DeployedStack.from_outputs(outputs, source)
        region = stack.region(env)
        if secrets_client is None:
            secrets_client = aws_client("secretsmanager", environ={**env, "AWS_REGION": region})
        db_secret = read_secret(secrets_client, stack.db_secret_arn)
        redis_secret = read_secret(secrets_client, stack.redis_auth_secret_arn)
    except DeployedStackError as exc:
        raise TargetError(str(exc)) from None
    return Target(
        kind="deployed",
        stream_name=stream or stack.stream_name,
        region=region,
        pg_dsn=stack.postgres_dsn(db_secret, env),
        redis_url=stack.redis_url(redis_secret),
        # ElastiCache's certificates chain to Amazon's public roots: the system store.
        redis_ca=env.get("TAP_REDIS_CA_BUNDLE") or None,
        source=source,
        producer_role_arn=stack.producer_role_arn,
        # The API's load balancer is the stack's (issue 13 item 3): its URL from
        # --api-url or TAP_API_URL until the outputs name it.
        api_url=env.get("TAP_API_URL") or None,
    )
