"""The read API's PostgreSQL login secret (issue 13, item 3).

Like the application role's secret (:mod:`lib.components.database`), Terraform
writes it without a password, so none is ever in plan or state: the migrate task
(``python -m processor migrate`` with ``TAP_DB_API_SECRET_ARN``) generates one, makes
``tap_api_reader`` (migration ``*_api_reader.sql``, NOLOGIN until then) a login with
it and writes it to this secret. The API reads the secret at run time
(``TAP_API_DB_SECRET_ARN``). The API's Redis user's secret is made with the user
(:mod:`lib.components.cache_users`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import Fn, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from cdktf_cdktf_provider_aws.secretsmanager_secret_version import SecretsmanagerSecretVersion
from constructs import Construct

from lib.config import Naming
from processor.contract.storage import API_READER_ROLE


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiDatabaseCredentialsOutputs:
    #: The read API's PostgreSQL login secret (``TAP_API_DB_SECRET_ARN``).
    secret_arn: str


class ApiDatabaseCredentials(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        naming: Naming,
        secrets_kms_key_arn: str,
        db_host: str,
        db_port: int,
        db_name: str,
    ) -> None:
        super().__init__(scope, id_)
        secret = SecretsmanagerSecret(
            self,
            "secret",
            name=naming.name("secret-db-api-reader"),
            description=f"PostgreSQL login of the read API (role {API_READER_ROLE}, SELECT "
            "only); its password is set by the migrate task",
            kms_key_id=secrets_kms_key_arn,
            recovery_window_in_days=0,
        )
        SecretsmanagerSecretVersion(
            self,
            "secret-value",
            secret_id=secret.id,
            secret_string=Fn.jsonencode(
                {
                    "engine": "postgres",
                    "host": db_host,
                    "port": db_port,
                    "dbname": db_name,
                    "username": API_READER_ROLE,
                }
            ),
            # Later versions (with the password) come from the migrate task.
            lifecycle=TerraformResourceLifecycle(ignore_changes=["secret_string"]),
        )
        self.outputs = ApiDatabaseCredentialsOutputs(secret_arn=secret.arn)
