"""The read API's settings in the stack (issue 13, item 3): one frozen, validated value.

The API (``tap api``) runs as a second Fargate service behind an **internal**
Application Load Balancer, HTTPS only, with OIDC authentication at the load balancer
and a security group admitting the plant's networks only (docs/STACK.md, "The read
API"). Every setting is read from an environment variable named in brackets; a bad
value raises :class:`lib.config.ConfigError` naming the variable, before any provider
binding is imported. Like :mod:`lib.config`, this module imports nothing from cdktf.

Without ``TAP_API_CERTIFICATE_ARN`` synth stops, naming it, unless
``TAP_API_DEV_ALLOW_HTTP=true`` explicitly accepts plain HTTP inside the VPC (a
development stack: no certificate, and no OIDC either, since ALB authentication
actions exist on HTTPS listeners only).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import urlsplit

from lib.config import ConfigError, StackConfig, _parse_bool, _parse_list

#: TLS 1.3 + 1.2 only, forward secrecy only (AWS's recommended policy; in provider
#: 5.100.0). The newer post-quantum variants are accepted as well.
DEFAULT_TLS_POLICY: Final = "ELBSecurityPolicy-TLS13-1-2-2021-06"
ALLOWED_TLS_POLICIES: Final = frozenset(
    {
        DEFAULT_TLS_POLICY,
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
    }
)
#: JSON key of the OIDC client secret inside its Secrets Manager secret.
OIDC_CLIENT_SECRET_KEY: Final = "client_secret"  # noqa: S105 (a JSON key name)

_ACM_ARN: Final = re.compile(r"^arn:aws(-[a-z]+)*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+$")
_SECRET_ARN: Final = re.compile(r"^arn:aws(-[a-z]+)*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
_SECRET_NAME: Final = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_CLIENT_ID: Final = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,256}$")
#: Fargate task CPU units and the memory each allows (MiB).
_FARGATE_CPU: Final = (256, 512, 1024, 2048, 4096)


@dataclass(frozen=True, slots=True)
class ReadApiConfig:
    """What varies between deployments of the read API (docs/STACK.md has the table)."""

    #: ACM certificate ARN of the HTTPS listener [TAP_API_CERTIFICATE_ARN]; required.
    certificate_arn: str | None = None
    #: Development only: plain HTTP in the VPC, no certificate, no OIDC [TAP_API_DEV_ALLOW_HTTP].
    dev_allow_http: bool = False
    #: ALB TLS policy [TAP_API_TLS_POLICY]; TLS 1.3/1.2 with forward secrecy by default.
    tls_policy: str = DEFAULT_TLS_POLICY
    #: OIDC issuer URL of the plant's identity provider (https) [TAP_API_OIDC_ISSUER].
    oidc_issuer: str | None = None
    #: OIDC authorization endpoint (https) [TAP_API_OIDC_AUTHORIZATION_ENDPOINT].
    oidc_authorization_endpoint: str | None = None
    #: OIDC token endpoint (https) [TAP_API_OIDC_TOKEN_ENDPOINT].
    oidc_token_endpoint: str | None = None
    #: OIDC user info endpoint (https) [TAP_API_OIDC_USER_INFO_ENDPOINT].
    oidc_user_info_endpoint: str | None = None
    #: OIDC client id of the API at the identity provider [TAP_API_OIDC_CLIENT_ID].
    oidc_client_id: str | None = None
    #: Secret (ARN or name) holding JSON ``client_secret`` [TAP_API_OIDC_CLIENT_SECRET_ID].
    oidc_client_secret_id: str | None = None
    #: OIDC scopes the load balancer requests, space-separated [TAP_API_OIDC_SCOPE].
    oidc_scope: str = "openid"
    #: Seconds an ALB session lasts before the IdP is asked again [TAP_API_OIDC_SESSION_S].
    oidc_session_timeout_s: int = 3600
    #: Plant networks the load balancer admits, comma-separated CIDRs [TAP_API_PLANT_CIDRS].
    plant_cidrs: tuple[str, ...] = ()
    #: Load balancer deletion protection [TAP_API_DELETION_PROTECTION]; off: dev stacks destroy.
    deletion_protection: bool = False
    #: Container image tag in the API's ECR repository [TAP_API_IMAGE_TAG].
    image_tag: str = "0.1.0"
    #: Task CPU units (Fargate sizes) [TAP_API_TASK_CPU].
    cpu: int = 512
    #: Task memory, MiB (must fit the CPU size) [TAP_API_TASK_MEMORY].
    memory: int = 1024
    #: Tasks always running, one per AZ for availability [TAP_API_MIN_TASKS].
    min_tasks: int = 2
    #: Upper bound of request-count autoscaling [TAP_API_MAX_TASKS].
    max_tasks: int = 6
    #: Requests per task per minute (ALBRequestCountPerTarget) [TAP_API_REQUESTS_PER_TARGET].
    requests_per_target: int = 3000
    #: Alarm when target 5xx responses exceed this percentage of requests over 5 minutes.
    alarm_5xx_percent: float = 5.0
    #: Alarm when the p99 target response time exceeds this, seconds, for 5 minutes.
    alarm_response_time_p99_s: float = 1.0
    #: Days access-log objects are kept (then expired) [TAP_API_ACCESS_LOG_DAYS].
    access_log_days: int = 365

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    @property
    def https(self) -> bool:
        """HTTPS with OIDC (the default); False only on the explicit development path."""
        return self.certificate_arn is not None or not self.dev_allow_http

    # --------------------------------------------------------------- validation
    def problems(self) -> list[str]:
        p: list[str] = []
        if self.certificate_arn is None and not self.dev_allow_http:
            p.append(
                "TAP_API_CERTIFICATE_ARN is not set: the read API's load balancer is "
                "HTTPS only and needs an ACM certificate ARN (or, for a development "
                "stack, TAP_API_DEV_ALLOW_HTTP=true to accept plain HTTP inside the VPC)"
            )
        if self.certificate_arn is not None and self.dev_allow_http:
            p.append(
                "TAP_API_DEV_ALLOW_HTTP=true together with TAP_API_CERTIFICATE_ARN: "
                "choose one (the development flag is for stacks without a certificate)"
            )
        if self.certificate_arn is not None and not _ACM_ARN.match(self.certificate_arn):
            p.append(
                f"TAP_API_CERTIFICATE_ARN={self.certificate_arn!r} is not an ACM "
                "certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)"
            )
        if self.tls_policy not in ALLOWED_TLS_POLICIES:
            p.append(
                f"TAP_API_TLS_POLICY={self.tls_policy!r} is not a TLS 1.3 policy: use one "
                f"of {', '.join(sorted(ALLOWED_TLS_POLICIES))}"
            )
        p.extend(self._oidc_problems())
        p.extend(_cidr_problems(self.plant_cidrs))
        if self.cpu not in _FARGATE_CPU:
            p.append(
                f"TAP_API_TASK_CPU={self.cpu} is not a Fargate CPU size "
                f"({', '.join(map(str, _FARGATE_CPU))})"
            )
        elif not max(512, 2 * self.cpu) <= self.memory <= min(8 * self.cpu, 30720):
            p.append(
                f"TAP_API_TASK_MEMORY={self.memory} does not fit TAP_API_TASK_CPU={self.cpu}: "
                f"Fargate allows {max(512, 2 * self.cpu)}..{min(8 * self.cpu, 30720)} MiB"
            )
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", self.image_tag):
            p.append(f"TAP_API_IMAGE_TAG={self.image_tag!r} is not a valid image tag")
        if self.min_tasks < 1:
            p.append(f"TAP_API_MIN_TASKS={self.min_tasks} is invalid: at least 1 task must run")
        if self.max_tasks < self.min_tasks:
            p.append(
                f"TAP_API_MAX_TASKS={self.max_tasks} is below TAP_API_MIN_TASKS="
                f"{self.min_tasks}: autoscaling needs min <= max"
            )
        if not 1 <= self.requests_per_target <= 1_000_000:
            p.append(
                f"TAP_API_REQUESTS_PER_TARGET={self.requests_per_target} is invalid: "
                "1..1000000 requests per task per minute"
            )
        if not 0 < self.alarm_5xx_percent <= 100:
            p.append(f"alarm_5xx_percent={self.alarm_5xx_percent} must be in (0, 100]")
        if self.alarm_response_time_p99_s <= 0:
            p.append(f"alarm_response_time_p99_s={self.alarm_response_time_p99_s} must be > 0")
        if not 1 <= self.access_log_days <= 3653:
            p.append(f"TAP_API_ACCESS_LOG_DAYS={self.access_log_days} is invalid: 1..3653 days")
        return p

    def _oidc_problems(self) -> list[str]:
        if not self.https:
            return []
        p: list[str] = []
        endpoints = {
            "TAP_API_OIDC_ISSUER": self.oidc_issuer,
            "TAP_API_OIDC_AUTHORIZATION_ENDPOINT": self.oidc_authorization_endpoint,
            "TAP_API_OIDC_TOKEN_ENDPOINT": self.oidc_token_endpoint,
            "TAP_API_OIDC_USER_INFO_ENDPOINT": self.oidc_user_info_endpoint,
        }
        for variable, url in endpoints.items():
            if url is None:
                p.append(
                    f"{variable} is not set: the load balancer authenticates every "
                    "request with the plant's OIDC identity provider"
                )
            elif (problem := _https_url_problem(url)) is not None:
                p.append(f"{variable}={url!r} {problem}")
        if self.oidc_client_id is None:
            p.append("TAP_API_OIDC_CLIENT_ID is not set (the API's client at the plant's IdP)")
        elif not _CLIENT_ID.match(self.oidc_client_id):
            p.append(f"TAP_API_OIDC_CLIENT_ID={self.oidc_client_id!r} is not a client id")
        if self.oidc_client_secret_id is None:
            p.append(
                "TAP_API_OIDC_CLIENT_SECRET_ID is not set: the OIDC client secret is read "
                f"from a Secrets Manager secret (JSON key {OIDC_CLIENT_SECRET_KEY!r}), never "
                "from configuration"
            )
        elif not (
            _SECRET_ARN.match(self.oidc_client_secret_id)
            or _SECRET_NAME.match(self.oidc_client_secret_id)
        ):
            p.append(
                f"TAP_API_OIDC_CLIENT_SECRET_ID={self.oidc_client_secret_id!r} is neither a "
                "Secrets Manager secret ARN nor a secret name"
            )
        if "openid" not in self.oidc_scope.split():
            p.append(f"TAP_API_OIDC_SCOPE={self.oidc_scope!r} must include 'openid'")
        if not 1 <= self.oidc_session_timeout_s <= 604_800:
            p.append(
                f"TAP_API_OIDC_SESSION_S={self.oidc_session_timeout_s} is invalid: the ALB "
                "allows 1..604800 seconds"
            )
        return p

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ReadApiConfig:
        """Read every ``TAP_API_*`` setting; raises :class:`ConfigError` naming each bad one."""
        problems: list[str] = []
        values: dict[str, Any] = {}

        def read(var: str, attribute: str, parse: Callable[[str], Any]) -> None:
            raw = environ.get(var)
            if raw is None or raw == "":
                return
            try:
                values[attribute] = parse(raw)
            except ValueError as exc:
                problems.append(f"{var}={raw!r} is invalid: {exc}")

        read("TAP_API_CERTIFICATE_ARN", "certificate_arn", str.strip)
        read("TAP_API_DEV_ALLOW_HTTP", "dev_allow_http", _parse_bool)
        read("TAP_API_TLS_POLICY", "tls_policy", str.strip)
        read("TAP_API_OIDC_ISSUER", "oidc_issuer", str.strip)
        read("TAP_API_OIDC_AUTHORIZATION_ENDPOINT", "oidc_authorization_endpoint", str.strip)
        read("TAP_API_OIDC_TOKEN_ENDPOINT", "oidc_token_endpoint", str.strip)
        read("TAP_API_OIDC_USER_INFO_ENDPOINT", "oidc_user_info_endpoint", str.strip)
        read("TAP_API_OIDC_CLIENT_ID", "oidc_client_id", str.strip)
        read("TAP_API_OIDC_CLIENT_SECRET_ID", "oidc_client_secret_id", str.strip)
        read("TAP_API_OIDC_SCOPE", "oidc_scope", str.strip)
        read("TAP_API_OIDC_SESSION_S", "oidc_session_timeout_s", int)
        read("TAP_API_PLANT_CIDRS", "plant_cidrs", _parse_list)
        read("TAP_API_DELETION_PROTECTION", "deletion_protection", _parse_bool)
        read("TAP_API_IMAGE_TAG", "image_tag", str.strip)
        read("TAP_API_TASK_CPU", "cpu", int)
        read("TAP_API_TASK_MEMORY", "memory", int)
        read("TAP_API_MIN_TASKS", "min_tasks", int)
        read("TAP_API_MAX_TASKS", "max_tasks", int)
        read("TAP_API_REQUESTS_PER_TARGET", "requests_per_target", int)
        read("TAP_API_ACCESS_LOG_DAYS", "access_log_days", int)
        if problems:
            raise ConfigError(problems)
        return cls(**values)


def _cidr_problems(cidrs: tuple[str, ...]) -> list[str]:
    if not cidrs:
        return [
            "TAP_API_PLANT_CIDRS is not set: list the plant networks (comma-separated "
            "CIDRs, e.g. 10.20.0.0/16) that may reach the read API"
        ]
    p: list[str] = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            p.append(f"TAP_API_PLANT_CIDRS: {cidr!r} is not a network ({exc})")
            continue
        if network.prefixlen == 0:
            p.append(
                f"TAP_API_PLANT_CIDRS: {cidr!r} admits every address; list the plant's "
                "own networks (the API is for the plant, not the Internet)"
            )
        elif network.version == 6:
            p.append(f"TAP_API_PLANT_CIDRS: {cidr!r} is IPv6; the VPC is IPv4 only")
    return p


def _https_url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme != "https":
        return "must be an https:// URL (the ALB requires it)"
    if not parts.hostname or "." not in parts.hostname:
        return "has no host name"
    if any(c.isspace() for c in url) or parts.username or parts.password:
        return "must not contain spaces or credentials"
    return None


def deployment_config(
    environ: Mapping[str, str], context: Callable[[str], Any] | None = None
) -> StackConfig:
    """What ``main.py`` synthesizes: :meth:`StackConfig.from_environ` with the read
    API's settings (``TAP_API_*``) in it. Both halves are checked and every problem
    of either is raised in one :class:`ConfigError`. The local stack and the deploy
    smoke build their configurations with this too (local_pipeline.stack_synth)."""
    problems: list[str] = []
    config: StackConfig | None = None
    read_api: ReadApiConfig | None = None
    try:
        config = StackConfig.from_environ(environ, context=context)
    except ConfigError as exc:
        problems += exc.problems
    try:
        read_api = ReadApiConfig.from_environ(environ)
    except ConfigError as exc:
        problems += exc.problems
    if problems or config is None:
        raise ConfigError(problems)
    return replace(config, read_api=read_api)
