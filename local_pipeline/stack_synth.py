"""One synth per source tree: every stack configuration the project synthesizes, made
by one process that imports the provider bindings once, cached on disk.

Importing the AWS provider bindings is what a synth costs (27 s of CPU with bytecode
cached, 68 s without; the synth of one stack is a few seconds of jsii): the stack
tests, the local stack (``tap local up``, the e2e suite, ``tap demo``) and the deploy
smoke each paid it, so a fresh clone's ``make test`` imported them three times. Now
the first of them to need a synth makes all of :func:`standard_requests` in one
``python -m local_pipeline.stack_synth`` process, into a cache folder keyed by the
sources, the clone's path and the configurations (:func:`bundle_key`); the others
wait on the cache's lock and read their folder. A configuration outside the standard
set (another suffix, another ``TAP_*`` knob) gets a bundle of its own, with its own
key: never a stale or foreign synth.

The configurations are built here, without cdktf, exactly as ``main.py`` builds its
one (:meth:`lib.config.StackConfig.from_environ` on the environment, then
``TapStack(app, config)``): the child only instantiates and synthesizes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

from lib.config import ConfigError, StackConfig
from lib.read_api_config import ReadApiConfig, deployment_config
from lib.synthesized import DEFAULT_STACK, stack_file

REPO_ROOT: Final = Path(__file__).resolve().parents[1]

#: Packages whose version changes the synthesized JSON.
SYNTH_PACKAGES: Final = ("cdktf", "cdktf-cdktf-provider-aws", "constructs", "jsii")
#: Bundles kept in the cache (one per recent state of lib/; a few hundred KB each).
KEEP_BUNDLES: Final = 8
#: ``TAP_SYNTH_CACHE=off`` synthesizes even when the cache has this exact bundle.
SYNTH_CACHE_ENV: Final = "TAP_SYNTH_CACHE"

# --- the configurations -------------------------------------------------------------

#: The local stack's suffix (``<resource>-<environment>-local``): a local run can
#: never be confused with a deployment's names.
LOCAL_SUFFIX: Final = "local"

#: The deploy smoke's suffix and what it adds to the environment: alarm
#: subscriptions, so the smoke shows they exist when configured (issue 11 item 4).
SMOKE_SUFFIX: Final = "smoke"
SMOKE_ALARM_EMAIL: Final = "oncall@example.com"
SMOKE_ALARM_URL: Final = "https://hooks.example.com/tap-alarms"
SMOKE_EXTRA_ENV: Final[Mapping[str, str]] = {
    "TAP_ALARM_EMAILS": SMOKE_ALARM_EMAIL,
    "TAP_ALARM_HTTPS_ENDPOINTS": SMOKE_ALARM_URL,
}

#: The read API's settings the deploy smoke synthesizes with (HTTPS with OIDC): a
#: certificate moto's ACM holds and an OIDC client secret it creates under this name
#: before the plan, as an operator creates them before the first deploy.
SMOKE_OIDC_SECRET_NAME: Final = "tap-smoke-api-oidc-client"
SMOKE_API_ENV: Final[Mapping[str, str]] = {
    "TAP_API_CERTIFICATE_ARN": (
        "arn:aws:acm:eu-west-2:123456789012:certificate/00000000-0000-4000-8000-000000000000"
    ),
    "TAP_API_OIDC_ISSUER": "https://login.plant.example.com/realms/plant",
    "TAP_API_OIDC_AUTHORIZATION_ENDPOINT": "https://login.plant.example.com/realms/plant/auth",
    "TAP_API_OIDC_TOKEN_ENDPOINT": "https://login.plant.example.com/realms/plant/token",
    "TAP_API_OIDC_USER_INFO_ENDPOINT": "https://login.plant.example.com/realms/plant/userinfo",
    "TAP_API_OIDC_CLIENT_ID": "tap-read-api",
    "TAP_API_OIDC_CLIENT_SECRET_ID": SMOKE_OIDC_SECRET_NAME,
    "TAP_API_PLANT_CIDRS": "10.20.0.0/16",
    "TAP_API_MIN_TASKS": "1",
}
#: The local stack reads the task environment only and deploys no load balancer: without
#: a certificate in the caller's environment it takes the read API's explicit
#: development path (no certificate, no OIDC).
LOCAL_API_ENV: Final[Mapping[str, str]] = {
    "TAP_API_DEV_ALLOW_HTTP": "true",
    "TAP_API_PLANT_CIDRS": "10.0.0.0/8",
}

#: The read API's settings of the test stacks (issue 13, item 3): HTTPS with OIDC.
TEST_PLANT_CIDRS: Final = ("10.20.0.0/16", "192.168.50.0/24")
TEST_READ_API_CONFIG: Final = ReadApiConfig(
    certificate_arn="arn:aws:acm:eu-west-2:123456789012:certificate/11111111-2222-3333-4444-555555555555",
    oidc_issuer="https://login.plant.example.com/realms/plant",
    oidc_authorization_endpoint="https://login.plant.example.com/realms/plant/protocol/openid-connect/auth",
    oidc_token_endpoint="https://login.plant.example.com/realms/plant/protocol/openid-connect/token",
    oidc_user_info_endpoint="https://login.plant.example.com/realms/plant/protocol/openid-connect/userinfo",
    oidc_client_id="tap-read-api",
    oidc_client_secret_id="arn:aws:secretsmanager:eu-west-2:123456789012:secret:tap-api-oidc-AbCdEf",
    plant_cidrs=TEST_PLANT_CIDRS,
)  # fmt: skip
#: The explicit development path: plain HTTP inside the VPC, no certificate, no OIDC.
TEST_DEV_HTTP_READ_API_CONFIG: Final = ReadApiConfig(
    dev_allow_http=True, plant_cidrs=("10.20.0.0/16",)
)

#: The stack tests' three configurations, synthesized in one ``App``: what ``make
#: synth`` produces (with a test suffix), every non-default flag flipped, so flag
#: behaviour is tested in the same synth, and the read API's development flag.
TEST_DEFAULT_CONFIG: Final = StackConfig(
    environment="dev", suffix="ci01", read_api=TEST_READ_API_CONFIG
)
TEST_PRODUCTION_CONFIG: Final = StackConfig(
    environment="prod",
    suffix="ci02",
    az_count=3,
    single_nat_gateway=True,
    kinesis_on_demand=True,
    production=True,
    min_tasks=2,
    state_bucket="tap-terraform-state-example",
    state_kms_key_arn="arn:aws:kms:eu-west-2:123456789012:key/0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7",
    alarm_emails=("oncall@example.com", "plant-ops@example.org"),
    alarm_https_endpoints=("https://hooks.example.com/tap-alarms",),
    producer_principal="arn:aws:iam::210987654321:role/plant-gateways",
    redis_auth_token_version=2,
    rds_os_metrics_log_group=True,
    read_api=replace(TEST_READ_API_CONFIG, deletion_protection=True, min_tasks=3, max_tasks=9),
)
#: The stack id of the production configuration in the stack tests' ``App``.
TEST_PRODUCTION_STACK: Final = "TapStackProd"
#: The development flag's stack (HTTP listener), synthesized beside the two others.
TEST_DEV_HTTP_CONFIG: Final = StackConfig(
    environment="dev", suffix="ci03", read_api=TEST_DEV_HTTP_READ_API_CONFIG
)
TEST_DEV_HTTP_STACK: Final = "TapStackDevHttp"


class SynthError(RuntimeError):
    """A configuration cannot be built, or the synth process failed."""


@dataclass(frozen=True, slots=True)
class SynthRequest:
    """One ``App``: a folder name and its stacks (stack id, configuration)."""

    name: str
    stacks: tuple[tuple[str, StackConfig], ...]


def _context(environ: Mapping[str, str]) -> Callable[[str], object] | None:
    """cdktf's context as ``App()`` reads it (``cdktf synth`` passes cdktf.json's
    context in ``CDKTF_CONTEXT_JSON``; ``python main.py`` has none)."""
    raw = environ.get("CDKTF_CONTEXT_JSON")
    if not raw:
        return None
    context = json.loads(raw)
    return context.get if isinstance(context, dict) else None


def config_from(environ: Mapping[str, str]) -> StackConfig:
    """The configuration ``main.py`` would synthesize with this environment."""
    try:
        return deployment_config(environ, context=_context(environ))
    except ConfigError as exc:
        raise SynthError(f"cdktf synth stopped: {exc}") from exc


def local_environment(environ: Mapping[str, str], suffix: str = LOCAL_SUFFIX) -> dict[str, str]:
    env = {**environ, "ENVIRONMENT_SUFFIX": suffix}
    if "TAP_API_CERTIFICATE_ARN" not in env:
        for name, value in LOCAL_API_ENV.items():
            env.setdefault(name, value)
    return env


def smoke_environment(
    environ: Mapping[str, str],
    *,
    suffix: str = SMOKE_SUFFIX,
    environment: str = "dev",
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The deploy smoke's synth environment: the caller's, without a remote state
    bucket (it must not leak into a smoke run), and without the application
    secret's rotation function (moto has no Serverless Application Repository;
    docs/DEPLOY-SMOKE.md)."""
    env = {k: v for k, v in environ.items() if k not in ("TAP_STATE_BUCKET", "TAP_STATE_KEY")}
    env.update(
        {"ENVIRONMENT_SUFFIX": suffix, "TAP_ENV": environment, "TAP_DB_APP_ROTATION": "false"}
    )
    for name, value in SMOKE_API_ENV.items():
        env.setdefault(name, value)
    env.update(extra_env or {})
    return env


def local_request(environ: Mapping[str, str], suffix: str = LOCAL_SUFFIX) -> SynthRequest:
    config = config_from(local_environment(environ, suffix))
    return SynthRequest(f"local-{suffix}", ((DEFAULT_STACK, config),))


def smoke_request(environ: Mapping[str, str], **options: object) -> SynthRequest:
    config = config_from(smoke_environment(environ, **options))  # type: ignore[arg-type]
    return SynthRequest(f"smoke-{config.suffix}", ((DEFAULT_STACK, config),))


def stack_tests_request() -> SynthRequest:
    return SynthRequest(
        "stack-tests",
        (
            (DEFAULT_STACK, TEST_DEFAULT_CONFIG),
            (TEST_PRODUCTION_STACK, TEST_PRODUCTION_CONFIG),
            (TEST_DEV_HTTP_STACK, TEST_DEV_HTTP_CONFIG),
        ),
    )


def smoke_test_request(environ: Mapping[str, str]) -> SynthRequest:
    """The deploy smoke test's configuration (e2e/tests/test_deploy_smoke.py): the
    smoke's, with the alarm subscriptions it shows exist (:data:`SMOKE_EXTRA_ENV`)."""
    return smoke_request(environ, suffix=SMOKE_SUFFIX, extra_env=dict(SMOKE_EXTRA_ENV))


def standard_requests(environ: Mapping[str, str]) -> list[SynthRequest]:
    """Everything ``make test`` synthesizes: the stack tests' stacks, the local
    stack's and the deploy smoke test's (with its alarm subscriptions: without them
    the test's synth was outside the set and imported the provider bindings a second
    time, about 60 s of CPU). One whose configuration the environment makes invalid
    is left out (its caller gets the error when it asks for it)."""
    requests = [stack_tests_request()]
    for make in (local_request, smoke_test_request):
        with contextlib.suppress(SynthError):
            requests.append(make(environ))
    return requests


# --- the cache ----------------------------------------------------------------------


def synth_inputs(root: Path) -> list[Path]:
    files = [root / "main.py", root / "cdktf.json"]
    files += sorted((root / "lib").rglob("*.py"))
    files += sorted((root / "processor" / "contract").glob("*.py"))
    return [f for f in files if f.is_file()]


def bundle_key(requests: Sequence[SynthRequest], root: Path = REPO_ROOT) -> str:
    """Digest of everything a bundle depends on: the stack's sources, where the
    checkout is (the document names the project root's absolute path as the local
    state's location, so two clones must not share a synth), the versions of the
    CDKTF packages and the configurations (their repr names every field)."""
    digest = hashlib.sha256(str(root.resolve()).encode() + b"\0")
    for path in synth_inputs(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    for package in SYNTH_PACKAGES:
        try:
            digest.update(f"{package}={version(package)}\0".encode())
        except PackageNotFoundError:
            digest.update(f"{package}=-\0".encode())
    for request in sorted(requests, key=lambda r: r.name):
        digest.update(repr(request).encode() + b"\0")
    return digest.hexdigest()[:16]


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/tap-iot-pipeline/synth`` (``~/.cache/...``): outside the
    repository, so a fresh clone's tree stays clean and clones share the cache."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tap-iot-pipeline" / "synth"


def _complete(folder: Path, requests: Sequence[SynthRequest]) -> bool:
    return all(
        stack_file(folder / r.name, stack_id).is_file()
        for r in requests
        for stack_id, _ in r.stacks
    )


def _prune(cache: Path, *, keep: int) -> None:
    entries = sorted(
        (p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("synth-")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in entries[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


def _run_synth(
    staging: Path,
    requests: Sequence[SynthRequest],
    root: Path,
    environ: Mapping[str, str],
    timeout: float,
) -> None:
    spec = staging / "requests.pickle"
    spec.write_bytes(pickle.dumps(list(requests)))
    env = dict(environ)
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    done = subprocess.run(
        [sys.executable, "-m", "local_pipeline.stack_synth", str(spec), str(staging)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0 or not _complete(staging, requests):
        raise SynthError(f"synth failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def synthesize_bundle(
    requests: Sequence[SynthRequest],
    *,
    root: Path = REPO_ROOT,
    cache_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = 900,
    log: Callable[[str], object] | None = None,
) -> Path:
    """The folder holding ``<request.name>/stacks/<stack id>/cdk.tf.json`` for every
    request, from the cache or synthesized into it by one process."""
    env = dict(os.environ if environ is None else environ)
    if env.get(SYNTH_CACHE_ENV, "").lower() in {"0", "off", "no", "false"}:
        fresh = Path(tempfile.mkdtemp(prefix="tap-synth-uncached-"))
        _run_synth(fresh, requests, root, env, timeout)
        return fresh
    cache = cache_dir or default_cache_dir(env)
    target = cache / bundle_key(requests, root)
    if _complete(target, requests):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # One synth at a time per cache: parallel tox lanes, xdist workers, a demo
    # beside a test session all wait for the first and then read its folder.
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(target, requests):
            return target
        names = ", ".join(r.name for r in requests)
        if log:
            log(f"synthesizing {names} in one process (cached in {target})")
        staging = Path(tempfile.mkdtemp(prefix="synth-", dir=cache))
        started = time.monotonic()
        try:
            _run_synth(staging, requests, root, env, timeout)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        _prune(cache, keep=KEEP_BUNDLES)
        if log:
            log(f"synthesized in {time.monotonic() - started:.0f} s")
    return target


def synthesized(
    request: SynthRequest,
    *,
    root: Path = REPO_ROOT,
    cache_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = 900,
    log: Callable[[str], object] | None = None,
) -> Path:
    """The ``cdktf.out``-shaped folder of one request. A standard request is made
    with every other standard one (the first caller pays one provider import for
    all); any other request is synthesized alone, under its own key."""
    env = dict(os.environ if environ is None else environ)
    standard = standard_requests(env)
    requests = standard if request in standard else [request]
    folder = synthesize_bundle(
        requests, root=root, cache_dir=cache_dir, environ=env, timeout=timeout, log=log
    )
    return folder / request.name


# --- the synth process ----------------------------------------------------------------


def _synthesize_in_this_process(requests: Sequence[SynthRequest], outdir: Path) -> None:
    from cdktf import App

    from lib.tap_stack import TapStack  # the slow import (provider bindings), once

    for request in requests:
        app = App(outdir=str(outdir / request.name))
        for stack_id, config in request.stacks:
            TapStack(app, config, stack_id=stack_id)
        app.synth()


def main(argv: Sequence[str]) -> int:
    spec, outdir = argv
    # The parent wrote this file into its own staging folder a moment ago (a pickle
    # carries the frozen StackConfig objects exactly, enums and paths included).
    requests: list[SynthRequest] = pickle.loads(Path(spec).read_bytes())  # noqa: S301
    _synthesize_in_this_process(requests, Path(outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
