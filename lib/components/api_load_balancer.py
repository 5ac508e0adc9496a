"""The read API's internal Application Load Balancer (issue 13, item 3).

* **Internal**, in the private subnets: reachable from the plant's networks over the
  site-to-site link, never from the Internet. Its security group admits
  ``TAP_API_PLANT_CIDRS`` only (validated in :mod:`lib.read_api_config`: no
  ``0.0.0.0/0``), on the listener's port only.
* **HTTPS only**, with a TLS 1.3 policy and an ACM certificate; every request is
  authenticated with the plant's **OIDC** identity provider before it is forwarded
  (``authenticate-oidc``, then ``forward``). The client secret is read at plan time
  from Secrets Manager (a data source: sensitive, never shown in plan output; kept
  in state marked sensitive, like the Redis credentials, see docs/STACK.md).
  ``TAP_API_DEV_ALLOW_HTTP=true`` (development only) makes it a plain HTTP listener
  without authentication: ALB authentication actions exist on HTTPS listeners only.
* **Access logs** to a bucket of their own, encrypted with **SSE-S3**: ALB access log
  delivery supports no other server-side encryption ("The only server-side encryption
  option that's supported is Amazon S3-managed keys (SSE-S3)", Elastic Load
  Balancing guide, "Enable access logs for your Application Load Balancer"); public
  access blocked, owner-enforced, versioned, TLS-only, objects expired.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import Fn
from cdktf_cdktf_provider_aws.data_aws_elb_service_account import DataAwsElbServiceAccount
from cdktf_cdktf_provider_aws.data_aws_secretsmanager_secret_version import (
    DataAwsSecretsmanagerSecretVersion,
)
from cdktf_cdktf_provider_aws.lb import Lb, LbAccessLogs
from cdktf_cdktf_provider_aws.lb_listener import (
    LbListener,
    LbListenerDefaultAction,
    LbListenerDefaultActionAuthenticateOidc,
)
from cdktf_cdktf_provider_aws.lb_target_group import LbTargetGroup, LbTargetGroupHealthCheck
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleExpiration,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktf_cdktf_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from lib import iam_policy
from lib.components.account import AccountContext
from lib.config import Naming
from lib.read_api_config import OIDC_CLIENT_SECRET_KEY, ReadApiConfig

#: The prefix of the access logs inside their bucket (ELB appends ``AWSLogs/<account>/``).
ACCESS_LOG_PREFIX = "api-alb"
#: The API's liveness path: the event loop turns. Readiness (PostgreSQL answers) is
#: not the target health: with PostgreSQL down the API still serves the latest
#: readings from Redis, so its tasks must stay in the target group (docs/API.md).
HEALTH_PATH = "/health/live"


@dataclass(frozen=True, slots=True)
class ApiLoadBalancerInputs:
    """What the load balancer needs from the other components."""

    #: Names every resource ``<type>-<environment>-<suffix>``.
    naming: Naming
    #: The VPC of the load balancer's security group.
    vpc_id: str
    #: Private subnets of the internal load balancer (one per zone).
    private_subnet_ids: tuple[str, ...]
    #: The port the API's container listens on (the target group's port).
    target_port: int


@dataclass(frozen=True, slots=True)
class ApiLoadBalancerOutputs:
    """What the stack outputs and the service use."""

    #: The load balancer's (internal) DNS name: the API's address for plant networks.
    dns_name: str
    #: The HTTPS (or, on the development path, HTTP) listener.
    listener_arn: str
    #: The listener resource: the service depends on it (ECS refuses a target group
    #: that is not yet attached to a load balancer).
    listener: LbListener
    #: The load balancer's security group (admits the plant CIDRs only).
    security_group_id: str
    #: The target group the API's tasks register in.
    target_group_arn: str
    #: ``app/<name>/<id>``: the load balancer's CloudWatch dimension.
    arn_suffix: str
    #: ``targetgroup/<name>/<id>``: the target group's CloudWatch dimension.
    target_group_arn_suffix: str
    #: The bucket of the access logs (SSE-S3: the only encryption ALB log delivery takes).
    access_log_bucket: str


class ApiLoadBalancer(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: ReadApiConfig,
        inputs: ApiLoadBalancerInputs,
        account: AccountContext,
    ) -> None:
        super().__init__(scope, id_)
        naming = inputs.naming
        listener_port = 443 if config.https else 80

        sg_name = naming.name("securitygroup-api-alb")
        sg = SecurityGroup(
            self,
            "sg",
            name=sg_name,
            description=f"Read API load balancer: {listener_port} from the plant networks only",
            vpc_id=inputs.vpc_id,
            tags={"Name": sg_name},
        )
        for index, cidr in enumerate(config.plant_cidrs):
            VpcSecurityGroupIngressRule(
                self,
                f"from-plant-{index}",
                security_group_id=sg.id,
                description=f"{'HTTPS' if config.https else 'HTTP (development)'} from plant "
                f"network {cidr}",
                ip_protocol="tcp",
                from_port=listener_port,
                to_port=listener_port,
                cidr_ipv4=cidr,
            )

        bucket = self._access_log_bucket(config, naming, account)

        balancer = Lb(
            self,
            "alb",
            name=naming.name("alb-api")[:32],
            internal=True,
            load_balancer_type="application",
            subnets=list(inputs.private_subnet_ids),
            security_groups=[sg.id],
            drop_invalid_header_fields=True,
            desync_mitigation_mode="strictest",
            enable_deletion_protection=config.deletion_protection,
            access_logs=LbAccessLogs(bucket=bucket.id, prefix=ACCESS_LOG_PREFIX, enabled=True),
            depends_on=[self._bucket_policy],
        )
        target_group = LbTargetGroup(
            self,
            "targets",
            name=naming.name("tg-api")[:32],
            port=inputs.target_port,
            # TLS ends at the load balancer; inside the VPC the tasks' security group
            # admits this group only (lib.components.read_api).
            protocol="HTTP",
            target_type="ip",
            vpc_id=inputs.vpc_id,
            # Event streams (/anomalies/stream) end with the task; their browsers reconnect.
            deregistration_delay="30",
            health_check=LbTargetGroupHealthCheck(
                path=HEALTH_PATH,
                matcher="200",
                interval=15,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
        )
        forward = LbListenerDefaultAction(
            type="forward", target_group_arn=target_group.arn, order=2 if config.https else 1
        )
        if config.https:
            assert config.oidc_client_secret_id is not None  # validated in ReadApiConfig
            client_secret = DataAwsSecretsmanagerSecretVersion(
                self, "oidc-client-secret", secret_id=config.oidc_client_secret_id
            )
            authenticate = LbListenerDefaultAction(
                type="authenticate-oidc",
                order=1,
                authenticate_oidc=LbListenerDefaultActionAuthenticateOidc(
                    issuer=str(config.oidc_issuer),
                    authorization_endpoint=str(config.oidc_authorization_endpoint),
                    token_endpoint=str(config.oidc_token_endpoint),
                    user_info_endpoint=str(config.oidc_user_info_endpoint),
                    client_id=str(config.oidc_client_id),
                    client_secret=Fn.lookup(
                        Fn.jsondecode(client_secret.secret_string), OIDC_CLIENT_SECRET_KEY
                    ),
                    scope=config.oidc_scope,
                    session_timeout=config.oidc_session_timeout_s,
                    on_unauthenticated_request="authenticate",
                ),
            )
            listener = LbListener(
                self,
                "https",
                load_balancer_arn=balancer.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=config.tls_policy,
                certificate_arn=config.certificate_arn,
                default_action=[authenticate, forward],
            )
        else:
            # TAP_API_DEV_ALLOW_HTTP=true only (lib.read_api_config): a development
            # stack without a certificate, reachable from the plant CIDRs inside the VPC.
            listener = LbListener(
                self,
                "http",
                load_balancer_arn=balancer.arn,
                port=80,
                protocol="HTTP",
                default_action=[forward],
            )

        self.outputs = ApiLoadBalancerOutputs(
            dns_name=balancer.dns_name,
            listener_arn=listener.arn,
            listener=listener,
            security_group_id=sg.id,
            target_group_arn=target_group.arn,
            arn_suffix=balancer.arn_suffix,
            target_group_arn_suffix=target_group.arn_suffix,
            access_log_bucket=bucket.id,
        )

    def _access_log_bucket(
        self, config: ReadApiConfig, naming: Naming, account: AccountContext
    ) -> S3Bucket:
        bucket = S3Bucket(
            self,
            "access-logs",
            # Bucket names are global: the account id makes this one unique.
            bucket=f"tap-{naming.name('alb-logs')}-{account.account_id}",
            force_destroy=not config.deletion_protection,
        )
        S3BucketPublicAccessBlock(
            self,
            "access-logs-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        S3BucketOwnershipControls(
            self,
            "access-logs-ownership",
            bucket=bucket.id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )
        S3BucketServerSideEncryptionConfigurationA(
            self,
            "access-logs-encryption",
            bucket=bucket.id,
            rule=[
                S3BucketServerSideEncryptionConfigurationRuleA(
                    # SSE-S3: the only encryption ALB log delivery supports (module doc).
                    apply_server_side_encryption_by_default=S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                        sse_algorithm="AES256"
                    )
                )
            ],
        )
        S3BucketVersioningA(
            self,
            "access-logs-versioning",
            bucket=bucket.id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )
        S3BucketLifecycleConfiguration(
            self,
            "access-logs-lifecycle",
            bucket=bucket.id,
            rule=[
                S3BucketLifecycleConfigurationRule(
                    id="expire-access-logs",
                    status="Enabled",
                    filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                    expiration=[
                        S3BucketLifecycleConfigurationRuleExpiration(days=config.access_log_days)
                    ],
                    noncurrent_version_expiration=[
                        S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                            noncurrent_days=30
                        )
                    ],
                    abort_incomplete_multipart_upload=[
                        S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                            days_after_initiation=7
                        )
                    ],
                )
            ],
        )
        # eu-west-2 predates the logdelivery service principal: ELB writes as the
        # region's Elastic Load Balancing account (the provider knows it per region).
        elb_account = DataAwsElbServiceAccount(self, "elb-account")
        logs_path = f"{bucket.arn}/{ACCESS_LOG_PREFIX}/AWSLogs/{account.account_id}/*"
        self._bucket_policy = S3BucketPolicy(
            self,
            "access-logs-policy",
            bucket=bucket.id,
            policy=iam_policy.document(
                iam_policy.statement(
                    "ElbWritesThisAccountsAccessLogs",
                    ["s3:PutObject"],
                    [logs_path],
                    principal={"AWS": elb_account.arn},
                ),
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket.arn, f"{bucket.arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ),
        )
        return bucket
