"""IAM and key policy documents as plain JSON strings (Terraform interpolates tokens).

Policies are rendered with :func:`json.dumps` rather than the
``aws_iam_policy_document`` data source so the synthesized JSON holds the final
document: the stack tests lint it directly (no ``*`` action, ``*`` resources only
where AWS offers no resource-level permission).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def statement(
    sid: str,
    actions: Sequence[str],
    resources: Sequence[str] | None,
    *,
    principal: Mapping[str, Any] | None = None,
    conditions: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """One ``Allow`` statement; ``sid`` says why it exists. ``resources=None`` omits
    ``Resource`` (trust policies)."""
    body: dict[str, Any] = {"Sid": sid, "Effect": "Allow"}
    if principal is not None:
        body["Principal"] = dict(principal)
    body["Action"] = list(actions)
    if resources is not None:
        body["Resource"] = list(resources)
    if conditions:
        body["Condition"] = {op: dict(values) for op, values in conditions.items()}
    return body


def document(*statements: Mapping[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_trust(service: str, account_id: str) -> str:
    """Trust policy letting one AWS service assume a role on behalf of this account only
    (``aws:SourceAccount`` guards against the confused-deputy problem)."""
    return document(
        statement(
            "ServiceAssumesRoleForThisAccount",
            ["sts:AssumeRole"],
            None,
            principal={"Service": service},
            conditions={"StringEquals": {"aws:SourceAccount": account_id}},
        )
    )
