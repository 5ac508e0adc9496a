"""Produce through the stack's producer role (output ``producer_role_arn``).

A plant gateway, a load campaign and the e2e deployed target write to the stream the
same way: assume the role, put records with its temporary credentials. Sessions last
one hour, campaigns may last longer, so the credentials refresh themselves (botocore's
refreshable credentials call ``sts:AssumeRole`` again shortly before expiry).
"""

from __future__ import annotations

from typing import Any, Final

#: Set in a producer process's environment to produce through the role.
PRODUCER_ROLE_ENV: Final = "TAP_PRODUCER_ROLE_ARN"


def assumed_role_session(
    role_arn: str,
    *,
    region: str,
    session_name: str = "tap-producer",
    base_session: Any = None,
) -> Any:
    """A boto3 session acting as ``role_arn``; ``base_session`` (default: the normal
    credential chain) is the identity allowed to assume it."""
    import boto3
    from botocore.credentials import RefreshableCredentials
    from botocore.session import get_session

    base = base_session or boto3.session.Session(region_name=region)
    sts = base.client("sts", region_name=region)

    def fetch() -> dict[str, str]:
        credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }

    refreshable = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    core = get_session()
    # botocore has no public setter for a session's credentials; this is the
    # documented-by-usage way to give a session refreshable ones.
    core._credentials = refreshable
    core.set_config_variable("region", region)
    return boto3.session.Session(botocore_session=core)
