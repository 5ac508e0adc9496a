"""A data store's security group that admits one port from one client group only.

The database and the cache share this rule ("5432/6379 only from the processor"),
so it is written once: an ingress rule from the client's group and the matching
egress rule on the client's group, nothing else (no CIDR anywhere).
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from lib.config import Naming


def client_only_security_group(
    scope: Construct,
    *,
    naming: Naming,
    service: str,
    label: str,
    port: int | float,
    vpc_id: str,
    client_security_group_id: str,
) -> SecurityGroup:
    """``securitygroup-<service>`` admitting ``port`` from the client group only.

    Resources are created in ``scope`` with the ids ``sg``, ``from-processor`` and
    ``processor-to-<service>`` (stable Terraform addresses).
    """
    name = naming.name(f"securitygroup-{service}")
    sg = SecurityGroup(
        scope,
        "sg",
        name=name,
        description=f"{label}: {port:g} from the processor only",
        vpc_id=vpc_id,
        tags={"Name": name},
    )
    VpcSecurityGroupIngressRule(
        scope,
        "from-processor",
        security_group_id=sg.id,
        description=f"{label} TLS from the processor tasks",
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        referenced_security_group_id=client_security_group_id,
    )
    VpcSecurityGroupEgressRule(
        scope,
        f"processor-to-{service}",
        security_group_id=client_security_group_id,
        description=f"Processor to {label}",
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        referenced_security_group_id=sg.id,
    )
    return sg
