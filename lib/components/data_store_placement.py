"""Where a data store (Redis, PostgreSQL) sits and which keys protect it.

Both data stores take the same six wiring inputs from the network and the keys; one
frozen value keeps them together, so the stack passes them once per store and a new
data store (or a change of who may reach them) cannot get them half right.
Provider-free: importing it loads no jsii binding.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib.config import Naming


@dataclass(frozen=True, slots=True, kw_only=True)
class DataStorePlacement:
    #: Names every resource ``<type>-<environment>-<suffix>``.
    naming: Naming
    #: The VPC of the store's security group.
    vpc_id: str
    #: Private subnets of the store's subnet group (one per zone, for Multi-AZ).
    subnet_ids: tuple[str, ...]
    #: The only security group admitted to the store's port (the processor tasks').
    client_security_group_id: str
    #: KMS key of the store's storage, snapshots and insights (the ``data`` key).
    kms_key_arn: str
    #: KMS key of the store's secrets (the ``secrets`` key).
    secrets_kms_key_arn: str
