"""Security lints of the synthesized JSON: secrets, IAM, security groups."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from stack_support import DEFAULT_CONFIG

from lib.synthesized import REFERENCE, SynthesizedStack
from processor.contract.environment import FORBIDDEN_SECRET_NAMES

# ----------------------------------------------------------------------------- secrets

#: Attributes whose value would be a secret if it were a literal.
SENSITIVE_ATTRIBUTES = frozenset(
    {"password", "master_password", "auth_token", "secret_string", "secret_string_wo",
     "secret_binary", "token", "secret_key", "access_key"}
)  # fmt: skip
#: Reference fragments that evaluate to a secret value (as opposed to a secret's ARN).
SECRET_VALUE_REFERENCES = ("random_password", "secret_string", "auth_token", ".password")
#: Literal patterns that must never appear anywhere in the synthesized stack.
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "password assignment": re.compile(r"(?i)\"(password|auth_token)\"\s*:\s*\"(?!\$\{)[^\"]+\""),
    "URL with credentials": re.compile(r"[a-z]+://[^/\s:\"]+:[^@/\s\"]+@"),
}


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, f"{path}[{index}]")
    else:
        yield path, value


def test_sensitive_attributes_are_references_never_literals(stack: SynthesizedStack) -> None:
    found = 0
    for resource_type, logical_id, body in stack.all_resources():
        for path, value in walk(body):
            if path.rsplit(".", 1)[-1] in SENSITIVE_ATTRIBUTES:
                found += 1
                # A whole Terraform expression (``${...}``), never a literal value.
                assert isinstance(value, str) and value.startswith("${") and value.endswith("}"), (
                    f"{resource_type}.{logical_id}.{path} holds a literal"
                )
    assert found >= 2  # the Redis auth_token and the secret version's secret_string


def test_the_generated_token_flows_only_into_its_secret_version(stack: SynthesizedStack) -> None:
    users = [
        f"{resource_type}.{path}"
        for resource_type, _, body in stack.all_resources()
        for path, value in walk(body)
        if isinstance(value, str) and "aws_secretsmanager_random_password" in value
    ]
    # Write-only: sent to Secrets Manager, never stored in a plan or in state. Two
    # generators: the processor's token and the read API's Redis password (issue 13).
    assert users == ["aws_secretsmanager_secret_version.secret_string_wo"] * 2
    for name, output in stack.outputs.items():
        text = json.dumps(output)
        assert not any(marker in text for marker in SECRET_VALUE_REFERENCES), name


@pytest.mark.parametrize("pattern", sorted(SECRET_PATTERNS))
def test_no_secret_literal_anywhere_in_the_json(stack: SynthesizedStack, pattern: str) -> None:
    assert not SECRET_PATTERNS[pattern].search(stack.text)


def test_secret_scan_would_catch_a_leak() -> None:
    """The scan itself is tested: a literal password is found."""
    assert SECRET_PATTERNS["password assignment"].search('{"password": "hunter2"}')
    assert not SECRET_PATTERNS["password assignment"].search('{"password": "${var.x}"}')


def test_task_environment_carries_no_secret(stack: SynthesizedStack) -> None:
    environment = stack.task_environment()
    assert environment
    for name, value in environment.items():
        assert not any(forbidden in name.upper() for forbidden in FORBIDDEN_SECRET_NAMES), name
        assert not any(marker in value for marker in SECRET_VALUE_REFERENCES), (name, value)
        for reference in REFERENCE.findall(value):
            # Only names, endpoints and ARNs are passed, never a secret's value.
            assert reference.endswith(
                (".name}", ".address}", ".primary_endpoint_address}", ".arn}", ".secret_arn}")
            ), (name, reference)


# --------------------------------------------------------------------------------- IAM

#: Actions allowed on Resource "*", each with why (AWS offers no resource-level
#: permission for them). Key policies are separate: there "*" means the key itself.
STAR_RESOURCE_ALLOWED = {
    "ecr:GetAuthorizationToken": "registry login has no resource-level permission",
    "logs:DescribeLogGroups": "no resource-level permission (flow-log delivery role)",
}


def policies(stack: SynthesizedStack) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(kind, where, parsed document) of every policy in the stack."""
    for logical_id, role in stack.resources("aws_iam_role").items():
        yield "trust", f"aws_iam_role.{logical_id}", json.loads(role["assume_role_policy"])
    for logical_id, policy in stack.resources("aws_iam_role_policy").items():
        yield "identity", f"aws_iam_role_policy.{logical_id}", json.loads(policy["policy"])
    for logical_id, policy in stack.resources("aws_iam_policy").items():
        yield "identity", f"aws_iam_policy.{logical_id}", json.loads(policy["policy"])
    for logical_id, key in stack.resources("aws_kms_key").items():
        yield "key", f"aws_kms_key.{logical_id}", json.loads(key["policy"])


def as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def test_policies_are_found(stack: SynthesizedStack) -> None:
    kinds = [kind for kind, _, _ in policies(stack)]
    # trust/identity: + the producer role and policy, + the migrate task's role and policy,
    # + the read API's execution and task roles and policies (issue 13)
    assert (kinds.count("trust"), kinds.count("identity"), kinds.count("key")) == (8, 7, 5)


def test_no_wildcard_action_anywhere(stack: SynthesizedStack) -> None:
    for _, where, document in policies(stack):
        for statement in document["Statement"]:
            assert "NotAction" not in statement, where
            for action in as_list(statement["Action"]):
                assert action != "*" and not action.endswith(":*"), (where, action)


def test_star_resources_only_where_aws_has_no_resource_level_permission(
    stack: SynthesizedStack,
) -> None:
    seen = set()
    for kind, where, document in policies(stack):
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow", where
            if "*" not in as_list(statement.get("Resource")) or kind == "key":
                continue
            for action in as_list(statement["Action"]):
                assert action in STAR_RESOURCE_ALLOWED, (where, action)
                seen.add(action)
    assert seen == set(STAR_RESOURCE_ALLOWED)  # the allow-list holds nothing stale


def test_key_policies_name_no_wildcard_principal(stack: SynthesizedStack) -> None:
    for kind, where, document in policies(stack):
        if kind != "key":
            continue
        for statement in document["Statement"]:
            assert statement["Principal"] != "*", where
            assert "*" not in as_list(statement["Principal"].get("AWS")), where


def test_trust_policies_guard_against_confused_deputy(stack: SynthesizedStack) -> None:
    """A service may act only for this account; a role for people or gateways (the
    producer role) names one IAM principal, never a wildcard."""
    for kind, where, document in policies(stack):
        if kind == "trust":
            (statement,) = document["Statement"]
            if "Service" in statement["Principal"]:
                assert statement["Condition"]["StringEquals"]["aws:SourceAccount"], where
            else:
                (principal,) = as_list(statement["Principal"]["AWS"])
                assert "*" not in principal and principal.startswith("arn:"), where


def task_policy(stack: SynthesizedStack) -> dict[str, dict[str, Any]]:
    (policy,) = [
        p for p in stack.resources("aws_iam_role_policy").values()
        if p["name"] == "processor-least-privilege"
    ]  # fmt: skip
    return {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}


def test_task_role_is_least_privilege(stack: SynthesizedStack) -> None:
    statements = task_policy(stack)
    assert set(statements) == {
        "ReadStream", "DecryptStream", "ReadCredentials",
        "DecryptCredentialsThroughSecretsManager",
    }  # fmt: skip
    read = statements["ReadStream"]
    assert all(a.startswith(("kinesis:Get", "kinesis:List")) for a in read["Action"])
    (stream_arn,) = as_list(read["Resource"])
    assert stream_arn.startswith("${aws_kinesis_stream.") and stream_arn.endswith(".arn}")
    decrypt = statements["DecryptStream"]
    assert decrypt["Action"] == ["kms:Decrypt"]
    assert as_list(decrypt["Resource"])[0].startswith("${aws_kms_key.")
    assert decrypt["Condition"]["StringEquals"] == {
        "kms:ViaService": "kinesis.eu-west-2.amazonaws.com",
        "kms:EncryptionContext:aws:kinesis:arn": stream_arn,
    }
    secrets = as_list(statements["ReadCredentials"]["Resource"])
    assert statements["ReadCredentials"]["Action"] == ["secretsmanager:GetSecretValue"]
    assert sorted(secrets) == sorted(
        [
            stack.task_environment()["TAP_DB_SECRET_ARN"],
            stack.task_environment()["TAP_REDIS_AUTH_SECRET_ARN"],
        ]
    )
    via = statements["DecryptCredentialsThroughSecretsManager"]["Condition"]["StringEquals"]
    assert via == {"kms:ViaService": "secretsmanager.eu-west-2.amazonaws.com"}


def test_only_known_managed_policies_are_attached(stack: SynthesizedStack) -> None:
    """The AWS policy Enhanced Monitoring needs, and our own producer policy."""
    arns = sorted(
        a["policy_arn"] for a in stack.resources("aws_iam_role_policy_attachment").values()
    )
    (producer_policy,) = stack.resources("aws_iam_policy")
    aws_managed = [a.rsplit("/", 1)[-1] for a in arns if ":iam::aws:policy/" in a]
    ours = [a for a in arns if a.startswith("${aws_iam_policy.")]
    assert aws_managed == ["AmazonRDSEnhancedMonitoringRole"]
    assert ours == [f"${{aws_iam_policy.{producer_policy}.arn}}"]
    assert len(arns) == 2
    for role in stack.resources("aws_iam_role").values():
        assert "managed_policy_arns" not in role


# ----------------------------------------------------------------------- security groups


def group_id_by_name(stack: SynthesizedStack, prefix: str) -> str:
    (logical_id,) = [
        logical_id for logical_id, sg in stack.resources("aws_security_group").items()
        if sg["name"].startswith(prefix)
    ]  # fmt: skip
    return f"${{aws_security_group.{logical_id}.id}}"


def test_no_ingress_from_the_internet(stack: SynthesizedStack) -> None:
    rules = list(stack.resources("aws_vpc_security_group_ingress_rule").values())
    assert rules
    for rule in rules:
        assert rule.get("cidr_ipv4") not in ("0.0.0.0/0",), rule
        assert rule.get("cidr_ipv6") not in ("::/0",), rule
    for sg in stack.resources("aws_security_group").values():
        assert "ingress" not in sg and "egress" not in sg  # rules are separate resources
    assert "::/0" not in stack.text
    assert '"cidr_ipv4": "0.0.0.0/0"' not in stack.text


@pytest.mark.parametrize(
    ("group", "port"), [("securitygroup-postgres", 5432), ("securitygroup-redis", 6379)]
)
def test_data_stores_admit_only_the_processor_and_the_read_api(
    stack: SynthesizedStack, group: str, port: int
) -> None:
    target = group_id_by_name(stack, group)
    processor = group_id_by_name(stack, "securitygroup-processor")
    # The read API's tasks (issue 13); its full name: "securitygroup-api-alb-..." is another.
    api = group_id_by_name(stack, DEFAULT_CONFIG.name("securitygroup-api"))
    rules = [
        r for r in stack.resources("aws_vpc_security_group_ingress_rule").values()
        if r["security_group_id"] == target
    ]  # fmt: skip
    assert sorted(r["referenced_security_group_id"] for r in rules) == sorted([processor, api])
    for rule in rules:
        assert (rule["from_port"], rule["to_port"], rule["ip_protocol"]) == (port, port, "tcp")
        assert "cidr_ipv4" not in rule and "cidr_ipv6" not in rule


def test_processor_egress_stays_inside_the_vpc(stack: SynthesizedStack) -> None:
    processor = group_id_by_name(stack, "securitygroup-processor")
    egress = [
        r for r in stack.resources("aws_vpc_security_group_egress_rule").values()
        if r["security_group_id"] == processor
    ]  # fmt: skip
    assert {r["to_port"] for r in egress} == {443, 5432, 6379}
    for rule in egress:
        assert "cidr_ipv4" not in rule, rule  # endpoints, S3 prefix list, or a group
