"""The read API in the stack (issue 13, item 3): the second Fargate service behind an
internal HTTPS load balancer with OIDC, plant CIDRs only, encrypted access logs,
request-count autoscaling, least-privilege roles, RBAC for Redis; and the settings'
refusals (no certificate, 0.0.0.0/0, ...), which need no synth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from stack_support import (
    DEFAULT_CONFIG,
    PLANT_CIDRS,
    PRODUCTION_CONFIG,
    READ_API_CONFIG,
    Synth,
)

from lib.config import ConfigError
from lib.read_api_config import DEFAULT_TLS_POLICY, ReadApiConfig
from lib.synthesized import SynthesizedStack
from processor.contract.api_environment import API_VARIABLES
from processor.contract.storage import REDIS_API_READER_USER, redis_api_reader_access_string

REPO = Path(__file__).resolve().parents[2]


def _policy(stack: SynthesizedStack, role_name_part: str) -> list[dict[str, Any]]:
    (role_id,) = [
        k for k, r in stack.resources("aws_iam_role").items() if role_name_part in r["name"]
    ]
    (policy,) = [
        p
        for p in stack.resources("aws_iam_role_policy").values()
        if p["role"] == f"${{aws_iam_role.{role_id}.id}}"
    ]
    statements: list[dict[str, Any]] = json.loads(policy["policy"])["Statement"]
    return statements


def _api_resource(stack: SynthesizedStack, resource_type: str) -> dict[str, Any]:
    return stack.component(resource_type, "api")


# ------------------------------------------------------------------ load balancer


def test_load_balancer_is_internal_in_private_subnets_and_drops_bad_headers(
    stack: SynthesizedStack,
) -> None:
    alb = stack.single("aws_lb")
    assert alb["internal"] is True
    assert alb["load_balancer_type"] == "application"
    assert alb["drop_invalid_header_fields"] is True
    assert alb["enable_deletion_protection"] is False
    private = {
        f"${{aws_subnet.{k}.id}}"
        for k, s in stack.resources("aws_subnet").items()
        if s.get("map_public_ip_on_launch") is not True and "private" in k
    }
    assert private and set(alb["subnets"]) == private
    assert alb["access_logs"]["enabled"] is True


def test_deletion_protection_is_configurable(prod_stack: SynthesizedStack) -> None:
    assert prod_stack.single("aws_lb")["enable_deletion_protection"] is True


def test_listener_is_https_with_the_tls13_policy_and_authenticates_with_oidc(
    stack: SynthesizedStack,
) -> None:
    (listener,) = stack.resources("aws_lb_listener").values()
    assert listener["protocol"] == "HTTPS"
    assert listener["port"] == 443
    assert listener["ssl_policy"] == DEFAULT_TLS_POLICY == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert listener["certificate_arn"] == READ_API_CONFIG.certificate_arn
    authenticate, forward = sorted(listener["default_action"], key=lambda a: a["order"])
    assert authenticate["type"] == "authenticate-oidc"
    oidc = authenticate["authenticate_oidc"]
    assert oidc["issuer"] == READ_API_CONFIG.oidc_issuer
    assert oidc["authorization_endpoint"] == READ_API_CONFIG.oidc_authorization_endpoint
    assert oidc["token_endpoint"] == READ_API_CONFIG.oidc_token_endpoint
    assert oidc["user_info_endpoint"] == READ_API_CONFIG.oidc_user_info_endpoint
    assert oidc["client_id"] == READ_API_CONFIG.oidc_client_id
    assert oidc["on_unauthenticated_request"] == "authenticate"
    # The client secret comes from Secrets Manager (a sensitive data source), never a literal.
    assert oidc["client_secret"].startswith("${jsondecode(data.aws_secretsmanager_secret_version.")
    (source,) = [
        d
        for k, d in stack.data("aws_secretsmanager_secret_version").items()
        if k.startswith("api-alb_")
    ]
    assert source["secret_id"] == READ_API_CONFIG.oidc_client_secret_id
    assert forward["type"] == "forward"
    assert "${aws_lb_target_group." in forward["target_group_arn"]


def test_security_group_admits_only_the_plant_cidrs_on_the_listener_port(
    stack: SynthesizedStack,
) -> None:
    (sg_id,) = [
        k for k, g in stack.resources("aws_security_group").items() if "api-alb" in g["name"]
    ]
    ref = f"${{aws_security_group.{sg_id}.id}}"
    ingress = [
        r for r in stack.resources("aws_vpc_security_group_ingress_rule").values()
        if r["security_group_id"] == ref
    ]  # fmt: skip
    assert sorted(r["cidr_ipv4"] for r in ingress) == sorted(PLANT_CIDRS)
    assert {(r["from_port"], r["to_port"], r["ip_protocol"]) for r in ingress} == {
        (443, 443, "tcp")
    }
    assert not any("0.0.0.0/0" in json.dumps(r) for r in ingress)
    # Its only egress: to the API tasks' group, on the container port.
    egress = [
        r for r in stack.resources("aws_vpc_security_group_egress_rule").values()
        if r["security_group_id"] == ref
    ]  # fmt: skip
    assert len(egress) == 1 and "referenced_security_group_id" in egress[0]


def test_access_log_bucket_is_encrypted_private_versioned_and_tls_only(
    stack: SynthesizedStack,
) -> None:
    (encryption,) = stack.resources("aws_s3_bucket_server_side_encryption_configuration").values()
    (rule,) = encryption["rule"]
    # SSE-S3: the only encryption ELB log delivery supports (docs/STACK.md).
    assert rule["apply_server_side_encryption_by_default"]["sse_algorithm"] == "AES256"
    block = stack.single("aws_s3_bucket_public_access_block")
    flags = ("block_public_acls", "block_public_policy", "ignore_public_acls",
             "restrict_public_buckets")  # fmt: skip
    assert all(block[k] is True for k in flags)
    versioning = stack.single("aws_s3_bucket_versioning")
    assert versioning["versioning_configuration"]["status"] == "Enabled"
    lifecycle = stack.single("aws_s3_bucket_lifecycle_configuration")
    assert lifecycle["rule"][0]["expiration"][0]["days"] == READ_API_CONFIG.access_log_days
    policy = json.loads(stack.single("aws_s3_bucket_policy")["policy"])
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (writer,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert writer["Action"] == ["s3:PutObject"]
    assert "data.aws_elb_service_account." in writer["Principal"]["AWS"]


# ------------------------------------------------------------------------ service


def test_the_api_is_a_second_service_in_the_processors_cluster(stack: SynthesizedStack) -> None:
    processor = stack.component("aws_ecs_service", "processing")
    api = _api_resource(stack, "aws_ecs_service")
    assert api["cluster"] == f"${{{processor['cluster'][2:-1]}}}"
    assert api["launch_type"] == "FARGATE"
    assert api["network_configuration"]["assign_public_ip"] is False
    (lb,) = api["load_balancer"]
    assert lb["container_name"] == "api"
    assert api["task_definition"] != processor["task_definition"]
    # Created after the listener that attaches its target group (ECS requires it).
    assert any(d.startswith("aws_lb_listener.api-alb_") for d in api["depends_on"])
    assert (
        api["network_configuration"]["security_groups"]
        != (processor["network_configuration"]["security_groups"])
    )


def test_api_task_environment_is_the_api_contract_and_holds_no_secret(
    stack: SynthesizedStack,
) -> None:
    api = _api_resource(stack, "aws_ecs_service")
    task_id = api["task_definition"].split(".")[1]
    task = stack.resources("aws_ecs_task_definition")[task_id]
    (container,) = json.loads(task["container_definitions"])
    names = [e["name"] for e in container["environment"]]
    assert names == [v.name for v in API_VARIABLES if v.stack_provided]
    values = {e["name"]: e["value"] for e in container["environment"]}
    assert "aws_secretsmanager_secret.api-credentials_secret" in values["TAP_API_DB_SECRET_ARN"]
    assert "cache_users_api-reader-secret" in values["TAP_API_REDIS_SECRET_ARN"]
    assert "secrets" not in container
    assert container["readonlyRootFilesystem"] is True
    assert container["user"] == "10001:10001"
    # Its own log group, on the stack's logs key.
    log_group = container["logConfiguration"]["options"]["awslogs-group"]
    (group,) = [
        g for k, g in stack.resources("aws_cloudwatch_log_group").items()
        if log_group == f"${{aws_cloudwatch_log_group.{k}.name}}"
    ]  # fmt: skip
    assert group["kms_key_id"].startswith("${aws_kms_key.keys_logs")


def test_task_role_reads_its_two_secrets_and_decrypts_only_through_secrets_manager(
    stack: SynthesizedStack,
) -> None:
    statements = _policy(stack, "role-api-task")
    assert sorted(a for s in statements for a in s["Action"]) == [
        "kms:Decrypt",
        "secretsmanager:GetSecretValue",
    ]
    (read,) = [s for s in statements if s["Action"] == ["secretsmanager:GetSecretValue"]]
    assert len(read["Resource"]) == 2
    assert any("api-credentials_secret" in r for r in read["Resource"])
    assert any("cache_users_api-reader-secret" in r for r in read["Resource"])
    (decrypt,) = [s for s in statements if s["Action"] == ["kms:Decrypt"]]
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.eu-west-2.amazonaws.com"}
    }
    assert decrypt["Resource"][0].startswith("${aws_kms_key.keys_secrets")


def test_autoscaling_tracks_request_count_per_target(stack: SynthesizedStack) -> None:
    target = _api_resource(stack, "aws_appautoscaling_target")
    assert (target["min_capacity"], target["max_capacity"]) == (
        READ_API_CONFIG.min_tasks,
        READ_API_CONFIG.max_tasks,
    )
    (policy,) = [
        p for k, p in stack.resources("aws_appautoscaling_policy").items() if k.startswith("api_")
    ]
    assert policy["policy_type"] == "TargetTrackingScaling"
    tracking = policy["target_tracking_scaling_policy_configuration"]
    assert tracking["target_value"] == READ_API_CONFIG.requests_per_target
    metric = tracking["predefined_metric_specification"]
    assert metric["predefined_metric_type"] == "ALBRequestCountPerTarget"
    assert "aws_lb.api-alb" in metric["resource_label"]
    assert "aws_lb_target_group.api-alb" in metric["resource_label"]


def test_alarms_5xx_rate_response_time_unhealthy_hosts_go_to_the_alarm_topic(
    stack: SynthesizedStack,
) -> None:
    alarms = {
        a["alarm_name"]: a
        for k, a in stack.resources("aws_cloudwatch_metric_alarm").items()
        if k.startswith("api_")
    }
    assert sorted(alarms) == sorted(
        DEFAULT_CONFIG.name(f"alarm-api-{n}")
        for n in ("5xx-rate", "response-time", "unhealthy-hosts")
    )
    for alarm in alarms.values():
        (action,) = alarm["alarm_actions"]
        assert action.startswith("${aws_sns_topic.monitoring_alarms-topic")
    rate = alarms[DEFAULT_CONFIG.name("alarm-api-5xx-rate")]
    metrics = {q["id"]: q for q in rate["metric_query"]}
    assert metrics["errors"]["metric"]["metric_name"] == "HTTPCode_Target_5XX_Count"
    assert "errors / requests" in metrics["rate"]["expression"]
    slow = alarms[DEFAULT_CONFIG.name("alarm-api-response-time")]
    assert slow["metric_name"] == "TargetResponseTime" and slow["extended_statistic"] == "p99"


# ------------------------------------------------------------- credentials, Redis


def test_redis_uses_rbac_with_a_read_only_user_for_the_api(stack: SynthesizedStack) -> None:
    group = stack.single("aws_elasticache_replication_group")
    assert "auth_token" not in group
    ((group_id, user_group),) = stack.resources("aws_elasticache_user_group").items()
    assert group["user_group_ids"] == [f"${{aws_elasticache_user_group.{group_id}.user_group_id}}"]
    users = {u["user_name"]: u for u in stack.resources("aws_elasticache_user").values()}
    assert set(users) == {"default", REDIS_API_READER_USER}
    assert len(user_group["user_ids"]) == 2
    reader = users[REDIS_API_READER_USER]
    assert reader["access_string"] == f"on {redis_api_reader_access_string()}"
    assert "+@write" not in reader["access_string"] and "-@all" in reader["access_string"]
    # Both passwords come from secrets (sensitive data sources), never literals.
    for user in users.values():
        (password,) = user["passwords"]
        assert password.startswith("${jsondecode(data.aws_secretsmanager_secret_version.")
    # The reader's password is generated ephemerally and written write-only.
    (version,) = [
        v
        for k, v in stack.resources("aws_secretsmanager_secret_version").items()
        if k.startswith("cache_users_")
    ]
    assert (
        "ephemeral.aws_secretsmanager_random_password.cache_api_reader_password"
        in (version["secret_string_wo"])
    )
    assert "secret_string" not in version


def test_api_db_secret_has_no_password_and_the_migrate_task_provisions_it(
    stack: SynthesizedStack,
) -> None:
    (version,) = [
        v
        for k, v in stack.resources("aws_secretsmanager_secret_version").items()
        if k.startswith("api-credentials_")
    ]
    assert "password" not in version["secret_string"]
    assert "tap_api_reader" in version["secret_string"]
    statements = _policy(stack, "role-processor-migrate")
    (put,) = [s for s in statements if s["Action"] == ["secretsmanager:PutSecretValue"]]
    assert any("api-credentials_secret" in r for r in put["Resource"])
    migrate = [
        t for t in stack.resources("aws_ecs_task_definition").values()
        if "task-migrate" in t["family"]
    ]  # fmt: skip
    (container,) = json.loads(migrate[0]["container_definitions"])
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert "api-credentials_secret" in env["TAP_DB_API_SECRET_ARN"]
    # The processor service's task cannot read the API's login.
    processor_read = _policy(stack, "role-processor-task")
    assert not any("api-credentials" in json.dumps(s) for s in processor_read)


# --------------------------------------------------------------- the dev flag


def test_dev_flag_makes_an_http_listener_without_authentication(synth: Synth) -> None:
    assert synth.dev_http is not None
    (listener,) = synth.dev_http.resources("aws_lb_listener").values()
    assert listener["protocol"] == "HTTP" and listener["port"] == 80
    assert [a["type"] for a in listener["default_action"]] == ["forward"]
    assert "certificate_arn" not in listener
    ingress = [
        r for r in synth.dev_http.resources("aws_vpc_security_group_ingress_rule").values()
        if "plant network" in r["description"]
    ]  # fmt: skip
    assert [(r["cidr_ipv4"], r["from_port"]) for r in ingress] == [("10.20.0.0/16", 80)]


# ------------------------------------------------- settings: refused, named (no synth)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"certificate_arn": None}, "TAP_API_CERTIFICATE_ARN is not set"),
        ({"certificate_arn": "arn:aws:iam::123456789012:server-certificate/x"}, "not an ACM"),
        ({"dev_allow_http": True}, "TAP_API_DEV_ALLOW_HTTP=true together with"),
        ({"plant_cidrs": ("0.0.0.0/0",)}, "TAP_API_PLANT_CIDRS: '0.0.0.0/0' admits every address"),
        ({"plant_cidrs": ()}, "TAP_API_PLANT_CIDRS is not set"),
        ({"plant_cidrs": ("10.0.0.0/33",)}, "TAP_API_PLANT_CIDRS: '10.0.0.0/33'"),
        ({"tls_policy": "ELBSecurityPolicy-2016-08"}, "TAP_API_TLS_POLICY"),
        ({"oidc_issuer": "http://login.plant.example.com"}, "TAP_API_OIDC_ISSUER"),
        ({"oidc_token_endpoint": None}, "TAP_API_OIDC_TOKEN_ENDPOINT is not set"),
        ({"oidc_client_secret_id": None}, "TAP_API_OIDC_CLIENT_SECRET_ID is not set"),
        ({"oidc_scope": "profile"}, "TAP_API_OIDC_SCOPE"),
        ({"cpu": 300}, "TAP_API_TASK_CPU"),
        ({"memory": 100}, "TAP_API_TASK_MEMORY"),
        ({"min_tasks": 4, "max_tasks": 2}, "TAP_API_MAX_TASKS"),
        ({"requests_per_target": 0}, "TAP_API_REQUESTS_PER_TARGET"),
    ],
)
def test_bad_read_api_settings_are_refused_naming_the_variable(
    overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(".", r"\.")):
        replace(READ_API_CONFIG, **overrides)


def test_dev_flag_needs_no_certificate_nor_oidc() -> None:
    config = ReadApiConfig(dev_allow_http=True, plant_cidrs=("10.20.0.0/16",))
    assert config.https is False


def test_settings_are_read_from_the_environment() -> None:
    config = ReadApiConfig.from_environ(
        {
            "TAP_API_DEV_ALLOW_HTTP": "true",
            "TAP_API_PLANT_CIDRS": "10.20.0.0/16, 172.16.0.0/12",
            "TAP_API_MIN_TASKS": "1",
            "TAP_API_DELETION_PROTECTION": "yes",
        }
    )
    assert config.plant_cidrs == ("10.20.0.0/16", "172.16.0.0/12")
    assert (config.min_tasks, config.deletion_protection) == (1, True)
    with pytest.raises(ConfigError, match="TAP_API_MIN_TASKS='two' is invalid"):
        ReadApiConfig.from_environ({"TAP_API_MIN_TASKS": "two"})


def test_production_config_keeps_https(prod_stack: SynthesizedStack) -> None:
    assert PRODUCTION_CONFIG.read_api is not None and PRODUCTION_CONFIG.read_api.https
    (listener,) = prod_stack.resources("aws_lb_listener").values()
    assert listener["protocol"] == "HTTPS"


def test_synth_without_a_certificate_stops_naming_the_setting(tmp_path: Path) -> None:
    """``main.py`` (``cdktf synth``) exits 2 naming TAP_API_CERTIFICATE_ARN, before the
    provider bindings are imported, and writes no stack."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAP_")}
    clean.update(
        ENVIRONMENT_SUFFIX="ok",
        CDKTF_OUTDIR=str(tmp_path / "out"),
        PYTHONPATH=str(REPO),
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        TAP_API_PLANT_CIDRS="10.20.0.0/16",
    )
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py")],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "TAP_API_CERTIFICATE_ARN is not set" in result.stderr
    assert "TAP_API_DEV_ALLOW_HTTP=true" in result.stderr
    assert not list((tmp_path / "out").rglob("cdk.tf.json"))
