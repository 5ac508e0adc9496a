"""Deploy smoke: ``terraform apply`` / ``output -json`` / ``destroy`` of the synthesized
stack against moto (docs/DEPLOY-SMOKE.md).

One run per module (synth, apply, outputs, scalable targets read from moto, destroy,
leftovers read from moto); the tests below assert on its result. Skipped, with the
reason printed, only when terraform or the provider mirror is missing.

The first tests check the override generation and need neither terraform nor moto.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.deploy_smoke import (
    BUDGET_SECONDS,
    ENDPOINT_KEYS,
    SmokeResult,
    UnmappedResourceType,
    backend_override,
    endpoint_key,
    endpoint_keys,
    marked_sensitive,
    occurrences,
    provider_override,
    run_smoke,
    stack_suffix,
    unmarked_occurrences,
)
from e2e.terraform import find_provider_mirror, terraform_binary
from local_pipeline.stack_synth import (
    SMOKE_ALARM_EMAIL,
    SMOKE_ALARM_URL,
    SMOKE_EXTRA_ENV,
    SMOKE_SUFFIX,
)

pytestmark = [pytest.mark.e2e]

SUFFIX = SMOKE_SUFFIX
ENVIRONMENT = "dev"
#: Alarm subscriptions the smoke configures (issue #11, item 4); defined with the
#: other synthesized configurations, so this synth is part of the one per source tree.
ALARM_EMAIL = SMOKE_ALARM_EMAIL
ALARM_URL = SMOKE_ALARM_URL
SYNTH_ENV = dict(SMOKE_EXTRA_ENV)

# ----------------------------------------------------------- override generation


@pytest.mark.parametrize(
    ("type_name", "key"),
    [
        ("aws_appautoscaling_target", "applicationautoscaling"),
        ("aws_cloudwatch_log_group", "logs"),
        ("aws_cloudwatch_metric_alarm", "cloudwatch"),
        ("aws_route_table_association", "ec2"),
        ("aws_route53_zone", "route53"),
        ("aws_vpc_security_group_ingress_rule", "ec2"),
        ("aws_db_instance", "rds"),
        ("aws_secretsmanager_random_password", "secretsmanager"),
        ("aws_caller_identity", "sts"),
        ("aws_partition", None),
    ],
)
def test_endpoint_key_by_longest_family(type_name: str, key: str | None) -> None:
    assert endpoint_key(type_name) == key


def test_unknown_type_stops_the_smoke() -> None:
    with pytest.raises(UnmappedResourceType, match="aws_neptune_cluster"):
        endpoint_key("aws_neptune_cluster")


def test_override_points_every_used_service_at_the_emulator() -> None:
    document = {
        "provider": {"aws": [{"region": "eu-west-2"}]},
        "resource": {"aws_kinesis_stream": {}, "aws_appautoscaling_target": {}},
        "data": {"aws_partition": {}},
    }
    (provider,) = provider_override(document, "http://127.0.0.1:1")["provider"]["aws"]
    assert provider["endpoints"] == [
        {k: "http://127.0.0.1:1" for k in ("applicationautoscaling", "kinesis", "sts")}
    ]
    assert provider["skip_credentials_validation"] is True
    assert provider["skip_requesting_account_id"] is True
    assert "region" not in provider  # the stack's region is kept (override merges)


def test_families_are_aws_types_and_sts_is_always_overridden() -> None:
    assert all(family.startswith("aws_") for family in ENDPOINT_KEYS)
    assert endpoint_keys({}) == {"sts"}


def test_backend_override_keeps_the_state_in_the_run_folder(tmp_path: Path) -> None:
    document = {"terraform": {"backend": {"local": {"path": "/repo/terraform.dev-x.tfstate"}}}}
    override = backend_override(document, tmp_path / "terraform.tfstate")
    assert override == {
        "terraform": {"backend": {"local": {"path": str(tmp_path / "terraform.tfstate")}}}
    }
    with pytest.raises(ValueError, match="local backend"):
        backend_override({"terraform": {"backend": {"s3": {}}}}, tmp_path / "x")


def test_token_scan_tells_marked_from_unmarked_values() -> None:
    """The scan itself is tested: Terraform's plan JSON keeps sensitive values in
    clear and marks them in a sibling tree; an unmarked copy is reported."""
    plan = {
        "prior_state": {"values": {"root_module": {"resources": [
            {"values": {"auth_token": "TOKEN", "id": "rg"},
             "sensitive_values": {"auth_token": True}},
            {"values": {"result": ["x", "TOKEN"]}, "sensitive_values": {"result": [False]}},
        ]}}},
        "resource_changes": [
            {"change": {"before": {"tags": {"a": "TOKEN"}}, "before_sensitive": {"tags": True}}}
        ],
    }  # fmt: skip
    assert len(occurrences(plan, "TOKEN")) == 3
    resources = ("prior_state", "values", "root_module", "resources")
    assert marked_sensitive(plan, (*resources, 0, "values", "auth_token"))
    assert not marked_sensitive(plan, (*resources, 1, "values", "result", 1))
    assert unmarked_occurrences(plan, "TOKEN") == [
        "prior_state/values/root_module/resources/1/values/result/1"
    ]


def test_suffix_is_read_from_the_default_tags() -> None:
    document = {"provider": {"aws": [{"default_tags": [{"tags": {"Suffix": "pr7"}}]}]}}
    assert stack_suffix(document) == "pr7"
    assert stack_suffix({}) is None


# ------------------------------------------------------------------- the smoke


def _skip_reason() -> str | None:
    if terraform_binary() is None:
        return "terraform is not on PATH"
    if find_provider_mirror() is None:
        return (
            "no filesystem mirror of registry.terraform.io/hashicorp/aws "
            "(set TAP_TF_PLUGIN_MIRROR to its root)"
        )
    return None


@pytest.fixture(scope="module")
def smoke() -> Iterator[SmokeResult]:
    reason = _skip_reason()
    if reason:
        print(f"deploy smoke skipped: {reason}")
        pytest.skip(reason)
    run_dir = Path(tempfile.mkdtemp(prefix="tap-deploy-smoke-"))
    result = run_smoke(run_dir, suffix=SUFFIX, synth_env=SYNTH_ENV)
    print(f"deploy smoke: {json.dumps(result.to_json()['seconds'])} (run folder {run_dir})")
    yield result
    if os.environ.get("TAP_KEEP_RUN_DIR") is None and result.ok:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.slow
# synth (jsii import) + the terraform budget + the AUTH-token scan (a post-apply plan
# and two shows, outside the budget)
@pytest.mark.timeout(BUDGET_SECONDS + 420 + 240)
def test_apply_output_destroy_succeed_within_budget(smoke: SmokeResult) -> None:
    assert smoke.ok, f"{smoke.error}\n(run folder {smoke.run_dir})"
    terraform_seconds = sum(smoke.seconds[k] for k in ("init", "plan", "apply", "destroy"))
    assert terraform_seconds < BUDGET_SECONDS, smoke.seconds


@pytest.mark.slow
def test_override_lists_every_service_of_the_stack(smoke: SmokeResult) -> None:
    assert {"applicationautoscaling", "ecs", "rds", "elasticache", "kinesis"} <= set(
        smoke.endpoint_keys
    )


@pytest.mark.slow
def test_outputs_are_present_and_named_with_the_suffix(smoke: SmokeResult) -> None:
    values: dict[str, Any] = smoke.output_values
    named = f"-{ENVIRONMENT}-{SUFFIX}"  # <resource-type>-<environment>-<suffix>
    assert values["stream_name"] == f"kinesis-readings{named}"
    assert values["ecs_cluster_name"] == f"ecs{named}"
    assert values["ecs_service_name"] == f"svc-processor{named}"
    assert values["dashboard_name"].endswith(named)
    assert values["db_endpoint"].startswith(f"postgres{named}.")
    assert f"redis{named}." in values["redis_primary_endpoint"]
    assert values["stream_arn"].startswith("arn:aws:kinesis:")
    assert values["stream_arn"].endswith(f"stream/{values['stream_name']}")
    assert values["alarm_topic_arn"].startswith("arn:aws:sns:")
    # The DB secret is RDS-managed (named rds!db-<uuid> by AWS); the Redis one is ours.
    assert values["db_secret_arn"].startswith("arn:aws:secretsmanager:")
    assert ":secret:rds!" in values["db_secret_arn"]
    assert values["redis_auth_secret_arn"].startswith("arn:aws:secretsmanager:")
    assert named in values["redis_auth_secret_arn"]
    assert int(values["db_port"]) == 5432
    environment = values["processor_task_environment"]
    assert environment["TAP_STREAM_NAME"] == values["stream_name"]
    # The processor logs in with the application role's secret; the master secret is
    # read only by the migrate task (issue 11, the application role).
    assert environment["TAP_DB_SECRET_ARN"] == values["db_app_secret_arn"]
    assert environment["TAP_DB_SECRET_ARN"] != values["db_secret_arn"]
    assert all(SUFFIX in name for name in values["log_group_names"].values())


@pytest.mark.slow
def test_autoscaling_target_registered_in_the_emulator(smoke: SmokeResult) -> None:
    values = smoke.output_values
    expected = f"service/{values['ecs_cluster_name']}/{values['ecs_service_name']}"
    targets = {t["ResourceId"]: t for t in smoke.scalable_targets}
    assert expected in targets, sorted(targets)
    target = targets[expected]
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert 1 <= target["MinCapacity"] <= target["MaxCapacity"]


@pytest.mark.slow
def test_alarm_subscriptions_exist_when_configured(smoke: SmokeResult) -> None:
    expected = [f"email:{ALARM_EMAIL}", f"https:{ALARM_URL}"]
    assert smoke.alarm_subscriptions == expected  # read back from the emulated SNS
    assert smoke.output_values["alarm_subscriptions"] == expected


@pytest.mark.slow
def test_producer_role_and_policy_are_outputs(smoke: SmokeResult) -> None:
    values = smoke.output_values
    assert values["producer_role_arn"].startswith("arn:aws:iam::")
    assert values["producer_role_arn"].endswith(f":role/role-producer-{ENVIRONMENT}-{SUFFIX}")
    assert values["producer_policy_arn"].endswith(
        f":policy/policy-producer-put-records-{ENVIRONMENT}-{SUFFIX}"
    )


@pytest.mark.slow
def test_auth_token_never_in_plan_or_show_output(smoke: SmokeResult) -> None:
    """Issue #11, item 3: the token (read from the emulated secret after apply) is in
    neither the JSON of the plan that was applied nor the text of ``terraform plan``
    and ``terraform show`` afterwards; in post-apply plan JSON, where Terraform keeps
    state values in clear by design, every copy is marked sensitive."""
    findings = smoke.token_findings
    assert findings.get("token_read") is True, findings
    assert findings["first_plan_json"] == []
    assert findings["plan_text"] == 0
    assert findings["show_text"] == 0
    assert findings["post_apply_plan_json_unmarked"] == []


@pytest.mark.slow
def test_destroy_leaves_nothing(smoke: SmokeResult) -> None:
    assert "destroy" in smoke.seconds, smoke.error
    assert smoke.leftovers == {}
