"""Names of the stack's Terraform outputs, defined once.

The stack (:mod:`lib.tap_stack`) writes them; ``tap load --target deployed``
(:mod:`simulator.load.target`), the e2e suite's deployed target
(``e2e/tests/targets.py``) and the deploy smoke (:mod:`e2e.deploy_smoke`) read them
from ``terraform output -json``. They live beside the storage names because every
side may import the processor's contract (the import rules in pyproject.toml);
``tests/stack/test_tapstack_outputs.py`` fails when the synthesized stack's outputs
and :data:`ALL` differ.
"""

from __future__ import annotations

from typing import Final

STREAM_NAME: Final = "stream_name"
STREAM_ARN: Final = "stream_arn"
ECS_CLUSTER_NAME: Final = "ecs_cluster_name"
ECS_SERVICE_NAME: Final = "ecs_service_name"
ECR_REPOSITORY_URL: Final = "ecr_repository_url"
DB_ENDPOINT: Final = "db_endpoint"
DB_PORT: Final = "db_port"
#: The RDS-managed master secret (the migrate task's login).
DB_SECRET_ARN: Final = "db_secret_arn"  # noqa: S105 - an output name, not a secret
#: The processor's login (the application role), rotated by alternating users.
DB_APP_SECRET_ARN: Final = "db_app_secret_arn"  # noqa: S105 - an output name
MIGRATE_TASK_DEFINITION: Final = "migrate_task_definition"
REDIS_PRIMARY_ENDPOINT: Final = "redis_primary_endpoint"
REDIS_PORT: Final = "redis_port"
REDIS_AUTH_SECRET_ARN: Final = "redis_auth_secret_arn"  # noqa: S105 - an output name
PROCESSOR_LOG_GROUP_NAME: Final = "processor_log_group_name"
#: A map: purpose -> log group name.
LOG_GROUP_NAMES: Final = "log_group_names"
#: A map: the processor task's environment, name -> value.
PROCESSOR_TASK_ENVIRONMENT: Final = "processor_task_environment"
ALARM_TOPIC_ARN: Final = "alarm_topic_arn"
ALARM_SUBSCRIPTIONS: Final = "alarm_subscriptions"
PRODUCER_ROLE_ARN: Final = "producer_role_arn"
PRODUCER_POLICY_ARN: Final = "producer_policy_arn"
DASHBOARD_NAME: Final = "dashboard_name"
# -- the read API (issue 13, item 3) --
API_ALB_DNS_NAME: Final = "api_alb_dns_name"
API_LISTENER_ARN: Final = "api_listener_arn"
API_SERVICE_NAME: Final = "api_service_name"
API_SECURITY_GROUP_ID: Final = "api_alb_security_group_id"
API_ECR_REPOSITORY_URL: Final = "api_ecr_repository_url"
API_DB_SECRET_ARN: Final = "api_db_secret_arn"  # noqa: S105 - an output name
API_REDIS_SECRET_ARN: Final = "api_redis_secret_arn"  # noqa: S105 - an output name

#: Every output, in the order the stack declares them.
ALL: Final[tuple[str, ...]] = (
    STREAM_NAME,
    STREAM_ARN,
    ECS_CLUSTER_NAME,
    ECS_SERVICE_NAME,
    ECR_REPOSITORY_URL,
    DB_ENDPOINT,
    DB_PORT,
    DB_SECRET_ARN,
    DB_APP_SECRET_ARN,
    MIGRATE_TASK_DEFINITION,
    REDIS_PRIMARY_ENDPOINT,
    REDIS_PORT,
    REDIS_AUTH_SECRET_ARN,
    PROCESSOR_LOG_GROUP_NAME,
    LOG_GROUP_NAMES,
    PROCESSOR_TASK_ENVIRONMENT,
    ALARM_TOPIC_ARN,
    ALARM_SUBSCRIPTIONS,
    PRODUCER_ROLE_ARN,
    PRODUCER_POLICY_ARN,
    DASHBOARD_NAME,
    API_ALB_DNS_NAME,
    API_LISTENER_ARN,
    API_SERVICE_NAME,
    API_SECURITY_GROUP_ID,
    API_ECR_REPOSITORY_URL,
    API_DB_SECRET_ARN,
    API_REDIS_SECRET_ARN,
)
