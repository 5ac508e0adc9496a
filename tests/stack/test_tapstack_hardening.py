"""Issue #11 (stack): each item as an assertion on the synthesized stack or on the
files it must agree with (Makefile, Dockerfile, processor code, docs).

State location (1), AUTH token out of plans (3, plus the deploy smoke's scan), alarm
subscriptions (4), producer access (5), stable subnet addresses (6), container and
IAM details (7), encryption (8).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from stack_support import DEFAULT_CONFIG, PRODUCTION_CONFIG

from lib.config import PROJECT_ROOT, ConfigError, StackConfig
from lib.synthesized import SynthesizedStack

REPO = Path(__file__).resolve().parents[2]


def ref(kind: str, value: str) -> bool:
    """``value`` is a Terraform reference to a resource of type ``kind``."""
    return isinstance(value, str) and value.startswith(f"${{{kind}.")


def policy_statements(body: dict[str, Any], key: str = "policy") -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in json.loads(body[key])["Statement"]}


# ------------------------------------------------------------- 1. state location


def test_local_state_is_at_the_project_root_outside_cdktf_out(stack: SynthesizedStack) -> None:
    path = Path(stack.document["terraform"]["backend"]["local"]["path"])
    assert path.is_absolute(), path  # relative paths resolve inside cdktf.out/stacks/...
    assert path == PROJECT_ROOT / "terraform.dev-ci01.tfstate"
    assert "cdktf.out" not in path.parts


def _clean_targets() -> list[Path]:
    """What ``make clean`` removes, from ``make -n clean`` (nothing is run)."""
    dry = subprocess.run(
        ["make", "-n", "clean"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    removed: list[Path] = []
    for line in dry.splitlines():
        words = shlex.split(line)
        if words[:1] == ["rm"]:
            removed += [(REPO / w).resolve() for w in words[1:] if not w.startswith("-")]
    assert removed, dry  # the parse really found the rm line
    return removed


def test_make_clean_never_touches_the_local_state() -> None:
    state = DEFAULT_CONFIG.local_state_path.resolve()
    for removed in _clean_targets():
        assert removed != state and removed not in state.parents, removed


@pytest.mark.parametrize(
    "overrides",
    [{"environment": "staging"}, {"environment": "dev", "production": True}],
)
def test_shared_deployment_with_local_state_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        StackConfig(suffix="x1", **overrides)
    message = str(caught.value)
    assert "TAP_STATE_BUCKET" in message and "TAP_ALLOW_LOCAL_STATE" in message


def test_refusal_can_be_overridden_and_then_warns_loudly() -> None:
    config = StackConfig(suffix="x1", environment="staging", allow_local_state=True)
    (warning,) = config.warnings()
    assert "LOCAL STATE FOR A SHARED DEPLOYMENT" in warning
    assert str(config.local_state_path) in warning
    assert StackConfig(suffix="x1").warnings() == []  # a dev stack: no noise


def test_state_dir_is_configurable() -> None:
    config = StackConfig.from_environ({"ENVIRONMENT_SUFFIX": "x1", "TAP_STATE_DIR": "/srv/st"})
    assert config.local_state_path == Path("/srv/st/terraform.dev-x1.tfstate")


# --------------------------------------------------- 8. S3 backend on our key


def test_s3_backend_encrypts_with_the_configured_kms_key(prod_stack: SynthesizedStack) -> None:
    backend = prod_stack.document["terraform"]["backend"]["s3"]
    assert backend["encrypt"] is True
    assert backend["kms_key_id"] == PRODUCTION_CONFIG.state_kms_key_arn


def test_s3_backend_without_a_kms_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="TAP_STATE_KMS_KEY_ARN"):
        StackConfig(suffix="x1", state_bucket="tap-state-bucket")
    with pytest.raises(ConfigError, match="TAP_STATE_KMS_KEY_ARN='alias/x'"):
        StackConfig(suffix="x1", state_bucket="tap-state-bucket", state_kms_key_arn="alias/x")


# ------------------------------------------- 3. the AUTH token stays out of plans


def test_auth_token_is_ephemeral_and_written_write_only(stack: SynthesizedStack) -> None:
    document = stack.document
    # No data source that would put the generated token into plans and state.
    assert "aws_secretsmanager_random_password" not in document.get("data", {})
    # The processor's token (the read API's Redis user has a generator of its own).
    assert "cache_auth_token" in document["ephemeral"]["aws_secretsmanager_random_password"]
    generator = "cache_auth_token"
    expression = f"ephemeral.aws_secretsmanager_random_password.{generator}.random_password"
    version = stack.cache_secret_version()
    assert expression in version["secret_string_wo"]
    assert "secret_string" not in version
    assert version["secret_string_wo_version"] == DEFAULT_CONFIG.redis_auth_token_version
    # No required_version: Checkov's terraform_json parser fails on it (see tap_stack).
    assert "required_version" not in document["terraform"]
    # The token is read back from the secret (a sensitive attribute): since the cache
    # uses RBAC (issue 13, lib.components.cache_users) it is the ``default`` user's
    # password, which the processor's plain ``AUTH <token>`` logs in as.
    assert "auth_token" not in stack.single("aws_elasticache_replication_group")
    (default_user,) = [
        u for u in stack.resources("aws_elasticache_user").values() if u["user_name"] == "default"
    ]
    (auth_token,) = default_user["passwords"]
    assert "data.aws_secretsmanager_secret_version." in auth_token
    assert "ephemeral." not in auth_token  # Terraform forbids it there


def test_token_version_bump_reaches_the_secret(prod_stack: SynthesizedStack) -> None:
    version = prod_stack.cache_secret_version()
    assert version["secret_string_wo_version"] == PRODUCTION_CONFIG.redis_auth_token_version == 2


# --------------------------------------------------------- 4. alarm subscriptions


def test_configured_subscriptions_exist_on_the_alarm_topic(prod_stack: SynthesizedStack) -> None:
    (topic_id,) = prod_stack.resources("aws_sns_topic")
    subscriptions = prod_stack.resources("aws_sns_topic_subscription").values()
    found = sorted((s["protocol"], s["endpoint"]) for s in subscriptions)
    expected = sorted(
        [("email", e) for e in PRODUCTION_CONFIG.alarm_emails]
        + [("https", u) for u in PRODUCTION_CONFIG.alarm_https_endpoints]
    )
    assert found == expected
    for subscription in subscriptions:
        assert subscription["topic_arn"] == f"${{aws_sns_topic.{topic_id}.arn}}"
    assert prod_stack.outputs["alarm_subscriptions"]["value"] == [
        f"{protocol}:{endpoint}" for protocol, endpoint in expected
    ]


def test_no_subscription_unless_configured(stack: SynthesizedStack) -> None:
    assert stack.resources("aws_sns_topic_subscription") == {}


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("TAP_ALARM_EMAILS", "oncall", "not an e-mail address"),
        ("TAP_ALARM_EMAILS", "a@b.example.com,not an address", "not an e-mail address"),
        ("TAP_ALARM_HTTPS_ENDPOINTS", "http://hooks.example.com/x", "https://"),
        ("TAP_ALARM_HTTPS_ENDPOINTS", "https://user:pw@hooks.example.com/x", "credentials"),
        ("TAP_ALARM_HTTPS_ENDPOINTS", "https:///path-only", "no host name"),
        ("TAP_ALARM_HTTPS_ENDPOINTS", "https://hooks.example.com:99999/", "port"),
    ],
)
def test_bad_subscription_is_refused_naming_the_variable(
    variable: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        StackConfig.from_environ({"ENVIRONMENT_SUFFIX": "x1", variable: value})
    assert variable in str(caught.value)
    assert reason in str(caught.value)


# ------------------------------------------------------------ 5. producer access


def test_producer_policy_is_least_privilege(stack: SynthesizedStack) -> None:
    (policy,) = stack.resources("aws_iam_policy").values()
    statements = policy_statements(policy)
    assert set(statements) == {"PutReadings", "EncryptReadingsThroughKinesis"}
    put = statements["PutReadings"]
    assert sorted(put["Action"]) == ["kinesis:PutRecord", "kinesis:PutRecords"]
    assert ref("aws_kinesis_stream", put["Resource"][0]) and len(put["Resource"]) == 1
    kms = statements["EncryptReadingsThroughKinesis"]
    assert kms["Action"] == ["kms:GenerateDataKey"]  # producers never decrypt
    stream_key = stack.single("aws_kinesis_stream")["kms_key_id"]
    assert kms["Resource"] == [stream_key]
    condition = kms["Condition"]["StringEquals"]
    assert condition["kms:ViaService"] == "kinesis.eu-west-2.amazonaws.com"
    assert condition["kms:EncryptionContext:aws:kinesis:arn"] == put["Resource"][0]


def _producer_role(stack: SynthesizedStack) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (logical_id, role)
        for logical_id, role in stack.resources("aws_iam_role").items()
        if role["name"].startswith("role-producer-")
    ]
    return found


def test_producer_role_has_only_the_producer_policy(stack: SynthesizedStack) -> None:
    role_id, _ = _producer_role(stack)
    (policy_id,) = stack.resources("aws_iam_policy")
    attached = [
        a["policy_arn"]
        for a in stack.resources("aws_iam_role_policy_attachment").values()
        if a["role"] == f"${{aws_iam_role.{role_id}.name}}"
    ]
    assert attached == [f"${{aws_iam_policy.{policy_id}.arn}}"]
    assert not [p for p in stack.resources("aws_iam_role_policy").values() if role_id in p["role"]]
    assert ref("aws_iam_role", stack.outputs["producer_role_arn"]["value"])
    assert ref("aws_iam_policy", stack.outputs["producer_policy_arn"]["value"])


def test_producer_role_trusts_exactly_the_configured_principal(
    stack: SynthesizedStack, prod_stack: SynthesizedStack
) -> None:
    (default,) = json.loads(_producer_role(stack)[1]["assume_role_policy"])["Statement"]
    assert default["Action"] == ["sts:AssumeRole"]
    assert default["Principal"]["AWS"].endswith(":root")  # this account's IAM decides
    (configured,) = json.loads(_producer_role(prod_stack)[1]["assume_role_policy"])["Statement"]
    assert configured["Principal"] == {"AWS": PRODUCTION_CONFIG.producer_principal}


@pytest.mark.parametrize(
    "principal",
    ["*", "arn:aws:iam::*:root", "12345", "arn:aws:iam::123456789012:group/ops", "root"],
)
def test_bad_producer_principal_is_refused(principal: str) -> None:
    with pytest.raises(ConfigError, match="TAP_PRODUCER_PRINCIPAL"):
        StackConfig(suffix="x1", producer_principal=principal)


@pytest.mark.parametrize(
    "principal",
    [
        "123456789012",
        "arn:aws:iam::123456789012:root",
        "arn:aws:iam::123456789012:role/plant/gateway-writer",
        "arn:aws:iam::123456789012:user/gw-01",
    ],
)
def test_good_producer_principal_is_accepted(principal: str) -> None:
    assert StackConfig(suffix="x1", producer_principal=principal).producer_principal


# --------------------------------------------------------- 6. stable subnet CIDRs


def _subnet_cidrs(stack: SynthesizedStack) -> dict[str, str]:
    return {
        body["tags"]["Name"].rsplit("-", 2)[0]: body["cidr_block"]
        for body in stack.resources("aws_subnet").values()
    }


def test_adding_an_availability_zone_keeps_every_existing_subnet_address(
    stack: SynthesizedStack, prod_stack: SynthesizedStack
) -> None:
    two = _subnet_cidrs(stack)  # 2 AZs
    three = _subnet_cidrs(prod_stack)  # 3 AZs, same VPC CIDR
    assert DEFAULT_CONFIG.vpc_cidr == PRODUCTION_CONFIG.vpc_cidr
    assert len(two) == 4 and len(three) == 6
    for name, cidr in two.items():
        assert three[name] == cidr, name  # the private ones hold RDS and Redis


def test_subnets_are_distinct_and_inside_the_vpc(prod_stack: SynthesizedStack) -> None:
    vpc = ipaddress.ip_network(PRODUCTION_CONFIG.vpc_cidr)
    nets = [ipaddress.ip_network(c) for c in _subnet_cidrs(prod_stack).values()]
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


def test_two_zone_addresses_are_the_ones_deployed_before_the_change(
    stack: SynthesizedStack,
) -> None:
    """2-AZ stacks deployed before the fixed slots keep their subnets (no re-address)."""
    assert _subnet_cidrs(stack) == {
        "subnet-public-eu-west-2a": "10.40.0.0/20",
        "subnet-public-eu-west-2b": "10.40.16.0/20",
        "subnet-private-eu-west-2a": "10.40.32.0/20",
        "subnet-private-eu-west-2b": "10.40.48.0/20",
    }


# ----------------------------------------------------------- 7. container and IAM


def _final_stage_instructions() -> list[tuple[str, str]]:
    """The Dockerfile's ``processor`` target: its stage and the stages it is ``FROM``
    (``runtime`` makes /tmp), base first."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and ln.strip()[0] != "#"]
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            current = stages.setdefault(rest.split()[-1], [])
        current.append((keyword.upper(), rest))
    chain: list[tuple[str, str]] = []
    name = "processor"
    while name in stages:
        chain = stages[name] + chain
        name = stages[name][0][1].split()[0]
    return chain


def test_every_writable_mount_is_an_image_volume_owned_by_the_task_user(
    stack: SynthesizedStack,
) -> None:
    """ECS creates a bind-mount volume root-owned 0755 unless the image declares the
    path as a VOLUME: then the image's directory (owner, mode) seeds it."""
    (container,) = stack.container_definitions()
    uid = container["user"].split(":")[0]
    final = _final_stage_instructions()
    volumes = [json.loads(rest) for keyword, rest in final if keyword == "VOLUME"]
    declared = {path for listed in volumes for path in listed}
    run_text = " ".join(rest for keyword, rest in final if keyword == "RUN")
    writable = [m["containerPath"] for m in container["mountPoints"] if not m["readOnly"]]
    assert writable == ["/tmp"]
    for path in writable:
        assert path in declared, f"{path} is not a VOLUME of the image"
        assert re.search(rf"(chown|install)[^;&]*{uid}[^;&]*{re.escape(path)}\b", run_text), (
            f"the image does not make {path} owned by {uid}"
        )
    # The VOLUME must follow the RUN that sets its owner (later changes are discarded).
    keywords = [keyword for keyword, _ in final]
    assert keywords.index("VOLUME") > max(
        i for i, (k, rest) in enumerate(final) if k == "RUN" and "/tmp" in rest
    )


PLATFORMS = {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}


def test_build_instructions_target_the_tasks_cpu_architecture(stack: SynthesizedStack) -> None:
    architecture = stack.service_task_definition()["runtime_platform"]["cpu_architecture"]
    platform = PLATFORMS[architecture]
    builds = []
    for doc in ("Dockerfile", "docs/STACK.md", "docs/PROCESSOR.md", "README.md"):
        for line in (REPO / doc).read_text().splitlines():
            if "docker build" in line:
                builds.append((doc, line))
    assert builds
    for doc, line in builds:
        assert f"--platform {platform}" in line, f"{doc}: {line.strip()}"


def test_fargate_ephemeral_storage_uses_our_key_and_the_key_admits_fargate(
    stack: SynthesizedStack,
) -> None:
    cluster = stack.single("aws_ecs_cluster")
    key_ref = cluster["configuration"]["managed_storage_configuration"][
        "fargate_ephemeral_storage_kms_key_id"
    ]
    assert ref("aws_kms_key", key_ref) and key_ref.endswith(".arn}")
    key_id = key_ref.split(".")[1]
    statements = policy_statements(stack.resources("aws_kms_key")[key_id])
    generate = statements["FargateEncryptsThisClustersEphemeralStorage"]
    grant = statements["FargateGrantsItselfDecryptForThisCluster"]
    for statement in (generate, grant):
        assert statement["Principal"] == {"Service": "fargate.amazonaws.com"}
        context = statement["Condition"]["StringEquals"]
        assert context["kms:EncryptionContext:aws:ecs:clusterName"] == cluster["name"]
        assert context["kms:EncryptionContext:aws:ecs:clusterAccount"]
    assert generate["Action"] == ["kms:GenerateDataKeyWithoutPlaintext"]
    assert grant["Action"] == ["kms:CreateGrant"]
    assert grant["Condition"]["ForAllValues:StringEquals"] == {"kms:GrantOperations": ["Decrypt"]}


def _processor_kinesis_actions() -> set[str]:
    """The Kinesis API calls the processor's code makes (``self.client.<op>(``)."""
    text = (REPO / "processor" / "kinesis_source.py").read_text()
    operations = set(re.findall(r"self\.client\.([a-z_]+)\(", text))
    return {"kinesis:" + "".join(w.title() for w in op.split("_")) for op in operations}


def _task_statements(stack: SynthesizedStack) -> dict[str, dict[str, Any]]:
    (policy,) = [
        p for p in stack.resources("aws_iam_role_policy").values()
        if p["name"] == "processor-least-privilege"
    ]  # fmt: skip
    return policy_statements(policy)


def test_task_role_grants_exactly_the_kinesis_calls_the_processor_makes(
    stack: SynthesizedStack,
) -> None:
    used = _processor_kinesis_actions()
    assert used == {"kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"}
    granted = {
        action
        for statement in _task_statements(stack).values()
        for action in statement["Action"]
        if action.startswith("kinesis:")
    }
    assert granted == used


def test_task_role_has_no_cloudwatch_action_because_metrics_are_emf_logs(
    stack: SynthesizedStack,
) -> None:
    processor_code = " ".join(p.read_text() for p in (REPO / "processor").rglob("*.py"))
    assert "put_metric_data" not in processor_code
    actions = [a for s in _task_statements(stack).values() for a in s["Action"]]
    assert not [a for a in actions if a.startswith("cloudwatch:")]


def test_every_kms_permission_in_identity_policies_is_bound_to_a_service(
    stack: SynthesizedStack,
) -> None:
    bodies = [*stack.resources("aws_iam_role_policy").values()]
    bodies += [*stack.resources("aws_iam_policy").values()]
    seen = 0
    for body in bodies:
        for sid, statement in policy_statements(body).items():
            if any(a.startswith("kms:") for a in statement["Action"]):
                seen += 1
                via = statement["Condition"]["StringEquals"]["kms:ViaService"]
                assert via.endswith(".eu-west-2.amazonaws.com"), sid
    assert seen >= 3  # stream decrypt, secrets decrypt, producer data key


def test_autoscaling_cannot_fight_itself(stack: SynthesizedStack) -> None:
    """One metric drives both directions: no target tracking (CPU scaled in while the
    lag alarm scaled out); the scale-in alarm's threshold lies below the scale-out one,
    on the same metric and statistic, so at most one of them is in ALARM."""
    # The processor's policies (the read API tracks its request count: issue 13).
    policies = {
        k: p for k, p in stack.resources("aws_appautoscaling_policy").items()
        if k.startswith("processing_")
    }  # fmt: skip
    assert {p["policy_type"] for p in policies.values()} == {"StepScaling"}
    by_policy: dict[str, dict[str, Any]] = {}
    for alarm in stack.resources("aws_cloudwatch_metric_alarm").values():
        for action in alarm["alarm_actions"]:
            if ref("aws_appautoscaling_policy", action):
                by_policy[action.split(".")[1]] = alarm
    assert set(by_policy) == set(policies)
    alarms = list(by_policy.values())
    assert {(a["namespace"], a["metric_name"], a["statistic"]) for a in alarms} == {
        ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "Maximum")
    }
    out = [a for a in alarms if a["comparison_operator"] == "GreaterThanThreshold"]
    scale_in = [a for a in alarms if a["comparison_operator"] == "LessThanThreshold"]
    assert len(out) == 1 and len(scale_in) == 1
    assert scale_in[0]["threshold"] < out[0]["threshold"]
    assert scale_in[0]["dimensions"] == out[0]["dimensions"]
    adjustments = {
        policy_id: [
            s["scaling_adjustment"]
            for s in p["step_scaling_policy_configuration"]["step_adjustment"]
        ]
        for policy_id, p in policies.items()
    }
    for policy_id, alarm in by_policy.items():
        up = alarm["comparison_operator"] == "GreaterThanThreshold"
        assert all((a > 0) == up for a in adjustments[policy_id]), policy_id


def test_scale_in_threshold_must_stay_below_scale_out() -> None:
    with pytest.raises(ConfigError, match="iterator_age_scale_in_ms"):
        StackConfig(suffix="x1", iterator_age_scale_in_ms=60_000)


# ------------------------------------------------------------------ 8. encryption


def test_rds_os_metrics_log_group_on_our_key_when_owned(
    stack: SynthesizedStack, prod_stack: SynthesizedStack
) -> None:
    def os_metrics(s: SynthesizedStack) -> list[dict[str, Any]]:
        groups = s.resources("aws_cloudwatch_log_group").values()
        return [g for g in groups if g["name"] == "RDSOSMetrics"]

    assert os_metrics(stack) == []  # shared account-wide name: opt-in only
    (group,) = os_metrics(prod_stack)
    assert ref("aws_kms_key", group["kms_key_id"])
    assert group["retention_in_days"] == PRODUCTION_CONFIG.log_retention_days
    instance = prod_stack.single("aws_db_instance")
    assert any("RDSOSMetrics" not in d and "log-os-metrics" in d for d in instance["depends_on"])


def test_flow_logs_go_to_an_encrypted_group(stack: SynthesizedStack) -> None:
    destination = stack.single("aws_flow_log")["log_destination"]
    group_id = destination.split(".")[1]
    assert ref("aws_kms_key", stack.resources("aws_cloudwatch_log_group")[group_id]["kms_key_id"])


def test_ecs_exec_is_off(stack: SynthesizedStack, prod_stack: SynthesizedStack) -> None:
    """ECS Exec is not enabled; enabling it must come with the cluster's
    execute_command_configuration on our key (docs/STACK.md, encryption table)."""
    for synthesized in (stack, prod_stack):
        service = synthesized.component("aws_ecs_service", "processing")
        assert not service.get("enable_execute_command"), "configure its KMS key first"
