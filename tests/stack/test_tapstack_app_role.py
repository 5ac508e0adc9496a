"""The application role in the synthesized stack (issue 11, item 2; docs/STACK.md "The
application role"): the processor's own database secret rotated by alternating users,
the master secret read only by the migrate task, no rotation on the first deploy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lib.config import ConfigError, StackConfig
from lib.synthesized import SynthesizedStack
from processor.contract.storage import APP_ROLE

#: AWS's alternating-users rotation application for RDS PostgreSQL, as AWS publishes it
#: (written out here rather than imported: importing lib.components.database loads the
#: provider bindings at collection, in every xdist worker).
MULTI_USER_ROTATION_APPLICATION = (
    "arn:aws:serverlessrepo:us-east-1:297356227824:applications/"
    "SecretsManagerRDSPostgreSQLRotationMultiUser"
)


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _ref(resource_type: str, logical_id: str, attribute: str) -> str:
    return f"${{{resource_type}.{logical_id}.{attribute}}}"


def _by_prefix(stack: SynthesizedStack, resource_type: str, fragment: str) -> tuple[str, Any]:
    (found,) = [(k, v) for k, v in stack.resources(resource_type).items() if fragment in k]
    return found


def _master_secret_ref(stack: SynthesizedStack) -> str:
    ((db_id, _),) = stack.resources("aws_db_instance").items()
    return f"${{aws_db_instance.{db_id}.master_user_secret[0].secret_arn}}"


def _policy(stack: SynthesizedStack, name: str) -> dict[str, dict[str, Any]]:
    (policy,) = [p for p in stack.resources("aws_iam_role_policy").values() if p["name"] == name]
    return {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}


def _app_secret_id(stack: SynthesizedStack) -> str:
    logical_id, _ = _by_prefix(stack, "aws_secretsmanager_secret", "app-secret")
    return logical_id


@pytest.mark.parametrize("which", ["stack", "prod_stack"])
def test_rotations_wait_for_their_schedule(which: str, request: pytest.FixtureRequest) -> None:
    stack: SynthesizedStack = request.getfixturevalue(which)
    rotations = stack.resources("aws_secretsmanager_secret_rotation")
    master = [r for r in rotations.values() if r["secret_id"] == _master_secret_ref(stack)]
    app_ref = _ref("aws_secretsmanager_secret", _app_secret_id(stack), "id")
    app = [r for r in rotations.values() if r["secret_id"] == app_ref]
    assert len(master) == 1 and len(app) == 1
    for rotation in (*master, *app):
        assert rotation["rotation_rules"]["automatically_after_days"] == 30
        # No rotation under a starting migrate task and service on the first deploy.
        assert rotation["rotate_immediately"] is False


def test_app_secret_holds_no_password_and_names_the_app_role(stack: SynthesizedStack) -> None:
    _, version = _by_prefix(stack, "aws_secretsmanager_secret_version", "app-secret")
    text = version["secret_string"]
    assert "password" not in text
    assert f'"username" = "{APP_ROLE}"' in text or f'"username":"{APP_ROLE}"' in text
    assert '"masterarn"' in text and _master_secret_ref(stack).strip("${}") in text
    assert version["lifecycle"] == {"ignore_changes": ["secret_string"]}
    secret = stack.resources("aws_secretsmanager_secret")[_app_secret_id(stack)]
    assert secret["kms_key_id"].startswith("${aws_kms_key.")


def test_app_secret_is_rotated_by_the_aws_multi_user_function(stack: SynthesizedStack) -> None:
    logical_id, rotator = _by_prefix(
        stack, "aws_serverlessapplicationrepository_cloudformation_stack", "app-secret-rotator"
    )
    assert rotator["application_id"] == MULTI_USER_ROTATION_APPLICATION
    assert "SecretsManagerRDSPostgreSQLRotationMultiUser" in rotator["application_id"]
    assert set(rotator["capabilities"]) == {"CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"}
    parameters = rotator["parameters"]
    assert parameters["masterSecretArn"] == _master_secret_ref(stack)
    assert parameters["vpcSubnetIds"] and parameters["vpcSecurityGroupIds"]
    app_ref = _ref("aws_secretsmanager_secret", _app_secret_id(stack), "id")
    (rotation,) = [
        r
        for r in stack.resources("aws_secretsmanager_secret_rotation").values()
        if r["secret_id"] == app_ref
    ]
    assert logical_id in rotation["rotation_lambda_arn"]
    assert "RotationLambdaARN" in rotation["rotation_lambda_arn"]


def test_service_reads_the_app_secret_and_cannot_read_the_master(stack: SynthesizedStack) -> None:
    app_arn = _ref("aws_secretsmanager_secret", _app_secret_id(stack), "arn")
    assert stack.task_environment()["TAP_DB_SECRET_ARN"] == app_arn
    assert "TAP_DB_MIGRATION_SECRET_ARN" not in stack.task_environment()
    statements = _policy(stack, "processor-least-privilege")
    readable = [
        arn
        for s in statements.values()
        if any(a.startswith("secretsmanager:") for a in _as_list(s["Action"]))
        for arn in _as_list(s["Resource"])
    ]
    assert app_arn in readable
    assert _master_secret_ref(stack) not in readable
    assert _master_secret_ref(stack) not in json.dumps(statements)


def test_migrate_task_runs_the_same_image_with_the_master_secret(stack: SynthesizedStack) -> None:
    service_task = stack.service_task_definition()
    tasks = stack.resources("aws_ecs_task_definition")
    (migrate,) = [t for t in tasks.values() if "task-migrate" in t["family"]]
    assert migrate["task_role_arn"] != service_task["task_role_arn"]
    assert migrate["execution_role_arn"] == service_task["execution_role_arn"]
    (container,) = json.loads(migrate["container_definitions"])
    (service_container,) = stack.container_definitions()
    assert container["image"] == service_container["image"]
    assert container["command"] == ["migrate"]
    assert container["readonlyRootFilesystem"] is True
    assert container["user"] == service_container["user"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment.pop("TAP_DB_MIGRATION_SECRET_ARN") == _master_secret_ref(stack)
    # The read API's login, which migrate provisions too (issue 13, item 3).
    assert "api-credentials_secret" in environment.pop("TAP_DB_API_SECRET_ARN")
    assert environment == stack.task_environment()
    assert "healthCheck" not in container


def test_migrate_role_reads_master_and_app_secret_and_writes_only_the_app(
    stack: SynthesizedStack,
) -> None:
    statements = _policy(stack, "migrate-least-privilege")
    app_arn = _ref("aws_secretsmanager_secret", _app_secret_id(stack), "arn")
    read = statements["ReadOwnerAndAppCredentials"]
    assert _as_list(read["Action"]) == ["secretsmanager:GetSecretValue"]
    # ... and the read API's login, which migrate provisions too (issue 13, item 3).
    (api_arn,) = [r for r in _as_list(read["Resource"]) if "api-credentials_secret" in r]
    assert sorted(_as_list(read["Resource"])) == sorted(
        [_master_secret_ref(stack), app_arn, api_arn]
    )
    write = statements["WriteAppCredentials"]
    assert _as_list(write["Action"]) == ["secretsmanager:PutSecretValue"]
    assert _as_list(write["Resource"]) == [app_arn, api_arn]
    kms = statements["UseCredentialsKeyThroughSecretsManager"]
    assert kms["Condition"]["StringEquals"]["kms:ViaService"].startswith("secretsmanager.")
    # Nothing else: no stream, no metrics, no Redis.
    assert set(statements) == {
        "ReadOwnerAndAppCredentials",
        "WriteAppCredentials",
        "UseCredentialsKeyThroughSecretsManager",
    }


def test_outputs_name_the_app_secret_and_the_migrate_task(stack: SynthesizedStack) -> None:
    outputs = stack.outputs
    assert outputs["db_app_secret_arn"]["value"] == _ref(
        "aws_secretsmanager_secret", _app_secret_id(stack), "arn"
    )
    assert "aws_ecs_task_definition" in outputs["migrate_task_definition"]["value"]


def test_rotation_function_can_be_switched_off_for_emulators() -> None:
    assert StackConfig().db_app_secret_rotation is True
    assert (
        StackConfig.from_environ({"TAP_DB_APP_ROTATION": "false"}).db_app_secret_rotation is False
    )
    with pytest.raises(ConfigError, match="TAP_DB_APP_ROTATION"):
        StackConfig.from_environ({"TAP_DB_APP_ROTATION": "maybe"})
