"""The one AWS client factory of the simulator, the Locust campaign and the harness's
deployed target (the processor has its own, ``processor/kinesis_source.py``).

Every client is made the same way:

- **region**: ``AWS_REGION``, then ``AWS_DEFAULT_REGION``, then the stack's default
  region (:data:`processor.contract.deployment.DEFAULT_REGION`);
- **endpoint**: ``AWS_ENDPOINT_URL_<SERVICE>``, then ``AWS_ENDPOINT_URL`` (emulators),
  else AWS's own: the standard variables, which boto3 reads itself from this
  process's environment. A target's environment that is not this process's
  (``tap load``'s preflight) is passed as ``environ`` and read the same way;
- **credentials**: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
  (/``AWS_SESSION_TOKEN``) from ``environ``, else the normal chain; with
  ``role_arn``, the stack's producer role assumed with refreshing credentials
  (:mod:`simulator.load.producer_role`);
- **its own session**: boto3's default session is shared state, unsafe across the
  greenlets of a Locust process. Only botocore's data loader (the JSON of endpoints
  and service models, read-only once loaded) is shared: loading it again cost 0.13 s
  of CPU per client, against 0.015 s with it shared;
- **retries**: botocore's ``standard`` mode for whole-call throttling and transient
  errors. ``max_attempts`` is passed as botocore's ``retries.max_attempts``, which
  botocore reads as retries *after* the first try (its ``total_max_attempts`` is
  one more): the Locust user's ``max_attempts=1`` allows one quick retry, as it
  did before this module. Entry-level failures inside a 200 PutRecords answer are
  the producer's to retry.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from processor.contract.deployment import DEFAULT_REGION


def aws_region(environ: Mapping[str, str] | None = None) -> str:
    """The region a client uses (see the module docstring)."""
    env = os.environ if environ is None else environ
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


@functools.cache
def _endpoint_variable(service: str) -> str:
    from botocore.session import get_session

    # botocore's own naming: service id "Secrets Manager" -> ..._SECRETS_MANAGER.
    service_id = get_session().get_service_model(service).service_id.hyphenize()
    return "AWS_ENDPOINT_URL_" + service_id.upper().replace("-", "_")


def _endpoint(service: str, env: Mapping[str, str]) -> str | None:
    return env.get(_endpoint_variable(service)) or env.get("AWS_ENDPOINT_URL") or None


@functools.cache
def _data_loader() -> Any:
    """botocore's loader of the service data, made once per process (its caches hold
    parsed JSON that no caller mutates)."""
    from botocore.session import get_session

    return get_session().get_component("data_loader")


def _own_session(region: str, keys: Mapping[str, str | None]) -> Any:
    import boto3
    from botocore.session import get_session

    core = get_session()
    core.register_component("data_loader", _data_loader())
    return boto3.session.Session(botocore_session=core, region_name=region, **keys)


def aws_client(
    service: str,
    *,
    environ: Mapping[str, str] | None = None,
    role_arn: str | None = None,
    max_attempts: int = 3,
    connect_timeout: float = 5,
    read_timeout: float = 30,
    max_pool_connections: int = 10,
) -> Any:
    """A boto3 client for ``service`` made as the module docstring says."""
    from botocore.config import Config

    region = aws_region(environ)
    config = Config(
        region_name=region,
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
    )
    # boto3 reads this process's endpoint variables itself; another environment's
    # are passed explicitly.
    endpoint = _endpoint(service, environ) if environ is not None else None
    if role_arn:  # a deployed stack: write as its producer role, like a gateway
        from simulator.load.producer_role import assumed_role_session

        session = assumed_role_session(role_arn, region=region)
    else:
        env = os.environ if environ is None else environ
        keys: dict[str, str | None] = {}
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            keys = {
                "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                "aws_session_token": env.get("AWS_SESSION_TOKEN") or None,
            }
        session = _own_session(region, keys)
    return session.client(service, endpoint_url=endpoint, config=config)


def kinesis_client(
    *,
    environ: Mapping[str, str] | None = None,
    role_arn: str | None = None,
    max_attempts: int = 3,
    read_timeout: float = 30,
    max_pool_connections: int = 16,
) -> Any:
    """The producers' Kinesis client (:func:`aws_client` with a pool for one
    process's calls)."""
    return aws_client(
        "kinesis",
        environ=environ,
        role_arn=role_arn,
        max_attempts=max_attempts,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
    )
