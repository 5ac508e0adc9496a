"""ElastiCache RBAC for the cache: who may do what on Redis (issue 13, item 3).

The read API must not be able to write Redis, so it connects as its own user,
``tap-api-reader``, whose access string is the contract's
(:func:`processor.contract.storage.redis_api_reader_access_string`: read commands on
the serving cache's keys, ``PING``). ElastiCache enforces users through a **user
group** on the replication group, and a user group cannot coexist with an AUTH
token ("User group can't be associated with auth token enabled", ModifyReplication-
Group), so the cache moves from the AUTH token to RBAC:

* the group's mandatory ``default`` user gets the processor's token (the secret
  :mod:`lib.components.cache` generates) as its password and full access, so the
  processor, which sends ``AUTH <token>`` (that is, as ``default``), keeps working
  unchanged: same secret, same client code;
* ``tap-api-reader`` gets a password of its own, generated the same way (ephemeral
  ``aws_secretsmanager_random_password``, written write-only to its secret, read back
  through a data source), in the secret ``TAP_API_REDIS_SECRET_ARN`` names (JSON
  ``username`` and ``auth_token``, the API's contract).

What changes for the processor's token: a new ``TAP_REDIS_AUTH_TOKEN_VERSION`` now
replaces the ``default`` user's password (ElastiCache RBAC keeps no second password
the way the AUTH ``ROTATE`` strategy did); the processor re-reads its secret when
authentication fails, so it reconnects with the new token. Passwords in state: the
users' ``passwords`` are sensitive attributes, as ``auth_token`` was.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import Fn, TerraformStack
from cdktf_cdktf_provider_aws.data_aws_secretsmanager_secret_version import (
    DataAwsSecretsmanagerSecretVersion,
)
from cdktf_cdktf_provider_aws.elasticache_user import ElasticacheUser
from cdktf_cdktf_provider_aws.elasticache_user_group import ElasticacheUserGroup
from cdktf_cdktf_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from cdktf_cdktf_provider_aws.secretsmanager_secret_version import SecretsmanagerSecretVersion
from constructs import Construct

from lib.config import Naming
from processor.contract.storage import REDIS_API_READER_USER, redis_api_reader_access_string

#: The processor's access: every key and channel, every command (as the AUTH token had).
DEFAULT_USER_ACCESS = "on ~* &* +@all"
#: JSON keys of the API's Redis secret (processor.contract.api_environment).
READER_SECRET_USERNAME_KEY = "username"  # noqa: S105 (a JSON key name)
READER_SECRET_PASSWORD_KEY = "auth_token"  # noqa: S105 (a JSON key name)


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheUsersOutputs:
    #: The user group the replication group enforces (``default`` and the API reader).
    user_group_id: str
    #: The read API's Redis user's secret (JSON ``username``, ``auth_token``).
    reader_secret_arn: str


class CacheUsers(Construct):
    """The user group of the replication group: ``default`` (processor), API reader."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        naming: Naming,
        default_password: str,
        secrets_kms_key_arn: str,
        password_length: int,
        reader_password_version: int = 1,
    ) -> None:
        super().__init__(scope, id_)
        default_user = ElasticacheUser(
            self,
            "default",
            user_id=naming.name("redis-user-default"),
            user_name="default",
            engine="REDIS",
            access_string=DEFAULT_USER_ACCESS,
            passwords=[default_password],
        )

        secret = SecretsmanagerSecret(
            self,
            "api-reader-secret",
            name=naming.name("secret-redis-api-reader"),
            description="The read API's Redis user (JSON: username, auth_token); read-only",
            kms_key_id=secrets_kms_key_arn,
            recovery_window_in_days=0,
        )
        generator = "cache_api_reader_password"
        TerraformStack.of(self).add_override(
            f"ephemeral.aws_secretsmanager_random_password.{generator}",
            {
                "password_length": password_length,
                "exclude_punctuation": True,
                "include_space": False,
                "require_each_included_type": True,
            },
        )
        password = f"ephemeral.aws_secretsmanager_random_password.{generator}.random_password"
        version = SecretsmanagerSecretVersion(
            self,
            "api-reader-secret-value",
            secret_id=secret.id,
            secret_string_wo=(
                f'${{jsonencode({{{READER_SECRET_USERNAME_KEY} = "{REDIS_API_READER_USER}", '
                f"{READER_SECRET_PASSWORD_KEY} = {password}}})}}"
            ),
            secret_string_wo_version=reader_password_version,
        )
        stored = DataAwsSecretsmanagerSecretVersion(
            self, "api-reader-secret-stored", secret_id=version.secret_id, depends_on=[version]
        )
        reader = ElasticacheUser(
            self,
            "api-reader",
            user_id=naming.name("redis-user-api-reader"),
            user_name=REDIS_API_READER_USER,
            engine="REDIS",
            access_string=f"on {redis_api_reader_access_string()}",
            passwords=[Fn.lookup(Fn.jsondecode(stored.secret_string), READER_SECRET_PASSWORD_KEY)],
        )
        group = ElasticacheUserGroup(
            self,
            "group",
            user_group_id=naming.name("redis-users"),
            engine="REDIS",
            user_ids=[default_user.user_id, reader.user_id],
        )
        self.outputs = CacheUsersOutputs(
            user_group_id=group.user_group_id, reader_secret_arn=secret.arn
        )
