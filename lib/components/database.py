"""RDS PostgreSQL: every reading, kept for compliance.

The master password is created and held by RDS in Secrets Manager
(``manage_master_user_password``) under our CMK, and rotated every 30 days; it never
appears in Terraform configuration or state. Only the migrate task reads it.

The application role (issue 11, item 2; docs/STACK.md "The application role"): the
processor logs in as ``tap_processor`` (or ``tap_processor_clone``) with credentials
from a secret of its own. Terraform writes that secret without a password (so none
is ever in plan or state); the migrate task sets the first one, and AWS's
alternating-users rotation function (``SecretsManagerRDSPostgreSQLRotationMultiUser``,
deployed from the Serverless Application Repository) rotates it every 30 days,
logging in with the master secret named by the secret's ``masterarn``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import Fn, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.db_instance import DbInstance
from cdktf_cdktf_provider_aws.db_parameter_group import DbParameterGroup, DbParameterGroupParameter
from cdktf_cdktf_provider_aws.db_subnet_group import DbSubnetGroup
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from cdktf_cdktf_provider_aws.secretsmanager_secret_rotation import (
    SecretsmanagerSecretRotation,
    SecretsmanagerSecretRotationRotationRules,
)
from cdktf_cdktf_provider_aws.secretsmanager_secret_version import SecretsmanagerSecretVersion
from cdktf_cdktf_provider_aws.serverlessapplicationrepository_cloudformation_stack import (
    ServerlessapplicationrepositoryCloudformationStack,
)
from constructs import Construct

from lib import iam_policy
from lib.components.account import AccountContext
from lib.components.client_only_security_group import client_only_security_group
from lib.components.data_store_placement import DataStorePlacement
from lib.components.log_group import EncryptedLogGroup, LogSettings
from processor.contract.storage import APP_ROLE

#: AWS's alternating-users rotation function for RDS PostgreSQL (Serverless
#: Application Repository, published by AWS in us-east-1 for every region).
MULTI_USER_ROTATION_APPLICATION = (
    "arn:aws:serverlessrepo:us-east-1:297356227824:applications/"
    "SecretsManagerRDSPostgreSQLRotationMultiUser"
)

#: Log types RDS exports to CloudWatch Logs.
LOG_EXPORTS: tuple[str, ...] = ("postgresql", "upgrade")

#: Parameters: TLS only, and enough logging to audit statements and find slow ones.
PARAMETERS: dict[str, str] = {
    "rds.force_ssl": "1",
    "log_statement": "ddl",
    "log_min_duration_statement": "1000",
    "log_connections": "1",
    "log_disconnections": "1",
    "log_lock_waits": "1",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseConfig:
    """The RDS instance and its secrets. Deployment settings have no default here:
    the one default is :class:`lib.config.StackConfig`'s (named in brackets)."""

    #: Network placement and keys (shared with the other data store).
    placement: DataStorePlacement
    #: Instance size (RDS instance class) [StackConfig.db_instance_class, TAP_DB_INSTANCE_CLASS].
    instance_class: str
    #: PostgreSQL version (16.x) [StackConfig.db_engine_version].
    engine_version: str
    #: Storage at creation (GiB) [StackConfig.db_allocated_storage_gb].
    allocated_storage_gb: int
    #: Ceiling of storage autoscaling (GiB) [StackConfig.db_max_allocated_storage_gb].
    max_allocated_storage_gb: int
    #: The database the pipeline writes to [StackConfig.db_name].
    db_name: str
    #: TCP port of the instance [StackConfig.db_port].
    port: int
    #: Days of automated backups kept (>= 7) [StackConfig.db_backup_retention_days].
    backup_retention_days: int
    #: Days between rotations of the application secret [StackConfig.secret_rotation_days].
    secret_rotation_days: int
    #: Deploy the application secret's rotation function and schedule (False only
    #: where the Serverless Application Repository is absent: the moto deploy smoke)
    #: [StackConfig.db_app_secret_rotation, TAP_DB_APP_ROTATION].
    app_secret_rotation: bool
    #: False: destroyable (no deletion protection, no final snapshot, automated
    #: backups deleted). True: all three flip for production [StackConfig.production].
    production: bool
    #: Pre-create ``RDSOSMetrics`` (Enhanced Monitoring's log group) with our key and
    #: retention. AWS names it once per account and region, shared by every instance:
    #: only one deployment there may own it
    #: [StackConfig.rds_os_metrics_log_group, TAP_RDS_OS_METRICS_LOG_GROUP].
    rds_os_metrics_log_group: bool
    #: The RDS master user (owner of the schema; only the migrate task logs in as it).
    master_username: str = "tap_admin"
    #: Enhanced Monitoring interval (seconds: 0, 1, 5, 10, 15, 30 or 60).
    monitoring_interval_s: int = 30


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseOutputs:
    #: The instance identifier (``postgres-<environment>-<suffix>``; CloudWatch dimension).
    identifier: str
    #: Host name of the instance (the processor's ``TAP_DB_HOST``).
    address: str
    #: TCP port of the instance.
    port: int
    #: The database the pipeline writes to.
    db_name: str
    #: The RDS-managed master secret (the migrate task only).
    master_secret_arn: str
    #: The application role's secret (the processor's login), rotated by alternating users.
    app_secret_arn: str
    #: The database's security group.
    security_group_id: str
    #: The log group of the ``postgresql`` log export.
    postgresql_log_group_name: str
    #: The log group of the ``upgrade`` log export.
    upgrade_log_group_name: str


class Database(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: DatabaseConfig,
        account: AccountContext,
        logs: LogSettings,
    ) -> None:
        super().__init__(scope, id_)
        naming = config.placement.naming
        identifier = naming.name("postgres")

        sg = client_only_security_group(
            self,
            naming=naming,
            service="postgres",
            label="PostgreSQL",
            port=config.port,
            vpc_id=config.placement.vpc_id,
            client_security_group_id=config.placement.client_security_group_id,
        )
        subnets = DbSubnetGroup(
            self,
            "subnets",
            name=naming.name("postgres-subnets"),
            description="Private subnets of the PostgreSQL instance",
            subnet_ids=list(config.placement.subnet_ids),
        )
        major = config.engine_version.split(".")[0]
        parameters = DbParameterGroup(
            self,
            "parameters",
            name=naming.name("postgres-params"),
            family=f"postgres{major}",
            description="TLS required; DDL, slow statement and connection logging",
            parameter=[DbParameterGroupParameter(name=k, value=v) for k, v in PARAMETERS.items()],
        )
        # RDS writes to /aws/rds/instance/<id>/<type>; creating the groups first gives
        # them our key and retention (RDS would create them unencrypted, never expiring).
        log_groups = [
            EncryptedLogGroup(
                self, f"log-{kind}", name=f"/aws/rds/instance/{identifier}/{kind}", settings=logs
            )
            for kind in LOG_EXPORTS
        ]
        if config.rds_os_metrics_log_group:
            log_groups.append(
                EncryptedLogGroup(self, "log-os-metrics", name="RDSOSMetrics", settings=logs)
            )
        monitoring_role = IamRole(
            self,
            "monitoring-role",
            name=naming.name("role-rds-monitoring"),
            assume_role_policy=iam_policy.service_trust(
                "monitoring.rds.amazonaws.com", account.account_id
            ),
        )
        IamRolePolicyAttachment(
            self,
            "monitoring-policy",
            role=monitoring_role.name,
            policy_arn=f"arn:{account.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
        )
        production = config.production
        instance = DbInstance(
            self,
            "instance",
            identifier=identifier,
            engine="postgres",
            engine_version=config.engine_version,
            instance_class=config.instance_class,
            allocated_storage=config.allocated_storage_gb,
            max_allocated_storage=config.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=config.placement.kms_key_arn,
            db_name=config.db_name,
            username=config.master_username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=config.placement.secrets_kms_key_arn,
            port=config.port,
            multi_az=True,
            publicly_accessible=False,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[sg.id],
            parameter_group_name=parameters.name,
            ca_cert_identifier="rds-ca-rsa2048-g1",
            iam_database_authentication_enabled=True,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            performance_insights_enabled=True,
            performance_insights_kms_key_id=config.placement.kms_key_arn,
            performance_insights_retention_period=7,
            monitoring_interval=config.monitoring_interval_s,
            monitoring_role_arn=monitoring_role.arn,
            backup_retention_period=config.backup_retention_days,
            backup_window="01:00-01:30",
            maintenance_window="sun:03:00-sun:03:30",
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            apply_immediately=not production,
            deletion_protection=production,
            skip_final_snapshot=not production,
            final_snapshot_identifier=naming.name("postgres-final") if production else None,
            delete_automated_backups=not production,
            depends_on=[g.resource for g in log_groups],
        )
        master_secret_arn = instance.master_user_secret.get(0).secret_arn
        SecretsmanagerSecretRotation(
            self,
            "master-secret-rotation",
            secret_id=master_secret_arn,
            rotation_rules=SecretsmanagerSecretRotationRotationRules(
                automatically_after_days=config.secret_rotation_days
            ),
            # The first deploy must not rotate under a migrate task and service that
            # are starting with the password RDS just created.
            rotate_immediately=False,
        )

        app_secret = SecretsmanagerSecret(
            self,
            "app-secret",
            name=naming.name("secret-db-app"),
            description=f"PostgreSQL login of the processor (role {APP_ROLE}); rotated by "
            "alternating users",
            kms_key_id=config.placement.secrets_kms_key_arn,
            recovery_window_in_days=0,
        )
        # No password here (none in plan or state): the migrate task generates it.
        # Later versions come from the migrate task and the rotation function.
        SecretsmanagerSecretVersion(
            self,
            "app-secret-value",
            secret_id=app_secret.id,
            secret_string=Fn.jsonencode(
                {
                    "engine": "postgres",
                    "host": instance.address,
                    "port": config.port,
                    "dbname": config.db_name,
                    "username": APP_ROLE,
                    "masterarn": master_secret_arn,
                }
            ),
            lifecycle=TerraformResourceLifecycle(ignore_changes=["secret_string"]),
        )
        if config.app_secret_rotation:
            rotator = ServerlessapplicationrepositoryCloudformationStack(
                self,
                "app-secret-rotator",
                name=naming.name("rotation-db-app"),
                application_id=MULTI_USER_ROTATION_APPLICATION,
                capabilities=["CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"],
                parameters={
                    # Private DNS of the VPC's interface endpoint answers this name.
                    "endpoint": f"https://secretsmanager.{account.region}.amazonaws.com",
                    "functionName": naming.name("fn-rotate-db-app"),
                    # In the database's subnets with the database clients' security
                    # group: it reaches PostgreSQL and the Secrets Manager endpoint
                    # exactly as the processor does, and nothing else.
                    "vpcSubnetIds": Fn.join(",", list(config.placement.subnet_ids)),
                    "vpcSecurityGroupIds": config.placement.client_security_group_id,
                    "kmsKeyArn": config.placement.secrets_kms_key_arn,
                    "masterSecretArn": master_secret_arn,
                    "masterSecretKmsKeyArn": config.placement.secrets_kms_key_arn,
                },
            )
            SecretsmanagerSecretRotation(
                self,
                "app-secret-rotation",
                secret_id=app_secret.id,
                rotation_lambda_arn=Fn.lookup(rotator.outputs, "RotationLambdaARN", ""),
                rotation_rules=SecretsmanagerSecretRotationRotationRules(
                    automatically_after_days=config.secret_rotation_days
                ),
                # Not before the migrate task has set the first password.
                rotate_immediately=False,
            )

        exported = dict(zip(LOG_EXPORTS, log_groups, strict=False))
        self.outputs = DatabaseOutputs(
            identifier=identifier,
            address=instance.address,
            port=config.port,
            db_name=config.db_name,
            master_secret_arn=master_secret_arn,
            app_secret_arn=app_secret.arn,
            security_group_id=sg.id,
            postgresql_log_group_name=exported["postgresql"].name,
            upgrade_log_group_name=exported["upgrade"].name,
        )
