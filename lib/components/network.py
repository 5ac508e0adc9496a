"""The VPC: public and private subnets per AZ, NAT, endpoints, flow logs.

Data-plane traffic (Kinesis, Secrets Manager, Logs, ECR, STS, KMS, CloudWatch, S3)
goes through VPC endpoints, so the processor's security group needs no Internet
egress at all.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.default_security_group import DefaultSecurityGroup
from cdktf_cdktf_provider_aws.eip import Eip
from cdktf_cdktf_provider_aws.flow_log import FlowLog
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.internet_gateway import InternetGateway
from cdktf_cdktf_provider_aws.nat_gateway import NatGateway
from cdktf_cdktf_provider_aws.route import Route
from cdktf_cdktf_provider_aws.route_table import RouteTable
from cdktf_cdktf_provider_aws.route_table_association import RouteTableAssociation
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.subnet import Subnet
from cdktf_cdktf_provider_aws.vpc import Vpc
from cdktf_cdktf_provider_aws.vpc_endpoint import VpcEndpoint
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from lib import iam_policy
from lib.components.account import AccountContext
from lib.components.log_group import EncryptedLogGroup, LogSettings
from lib.config import Naming

#: Interface endpoints (private DNS) the processor and Fargate agent use.
INTERFACE_ENDPOINTS: tuple[str, ...] = (
    "kinesis-streams", "secretsmanager", "logs", "ecr.api", "ecr.dkr", "sts", "kms",
    "monitoring",
)  # fmt: skip


#: Fixed /20 slot of each (AZ letter, tier) inside the VPC CIDR. A subnet's address
#: depends only on its own AZ and tier, never on how many AZs there are, so going
#: from 2 to 3 AZs adds subnets without re-addressing (and so replacing) the private
#: ones that hold RDS and Redis (issue #11, item 6). a and b keep the slots the
#: 2-AZ layout always had (0-3); c and d take the next ones.
SUBNET_SLOTS: dict[str, dict[str, int]] = {
    "a": {"public": 0, "private": 2},
    "b": {"public": 1, "private": 3},
    "c": {"public": 4, "private": 5},
    "d": {"public": 6, "private": 7},
}


def subnet_cidr(vpc_cidr: str, prefix: int, availability_zone: str, tier: str) -> str:
    """The CIDR of one subnet: the fixed slot of its AZ letter and tier."""
    slot = SUBNET_SLOTS[availability_zone[-1]][tier]
    blocks = ipaddress.ip_network(vpc_cidr).subnets(new_prefix=prefix)
    return str(next(block for index, block in enumerate(blocks) if index == slot))


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    """The VPC's shape. Deployment settings have no default here: the one default is
    :class:`lib.config.StackConfig`'s (named in brackets)."""

    #: Names every resource ``<type>-<environment>-<suffix>``.
    naming: Naming
    #: Zones of the public and private subnets, one of each per zone (2..3 in
    #: eu-west-2) [StackConfig.availability_zones, from TAP_AZ_COUNT].
    availability_zones: tuple[str, ...]
    #: The VPC's IPv4 range (CIDR, room for 8 subnets of ``subnet_prefix``) [StackConfig.vpc_cidr].
    cidr: str
    #: One NAT gateway for every zone instead of one per zone (cheaper, not
    #: zone-resilient) [StackConfig.single_nat_gateway].
    single_nat_gateway: bool
    #: Prefix length of each subnet (bits); /20 gives 4,091 usable addresses per subnet.
    subnet_prefix: int = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkOutputs:
    #: The VPC's id (security groups of the data stores).
    vpc_id: str
    #: The VPC's IPv4 range as AWS reports it.
    vpc_cidr: str
    #: Public subnets, one per zone in ``availability_zones`` order (NAT gateways only).
    public_subnet_ids: tuple[str, ...]
    #: Private subnets, one per zone in the same order (tasks, RDS, Redis, endpoints).
    private_subnet_ids: tuple[str, ...]
    #: The security group of the processor tasks (the data stores admit it only).
    processor_security_group_id: str
    #: The security group of the VPC interface endpoints.
    endpoint_security_group_id: str
    #: The log group of the VPC flow logs.
    flow_log_group_name: str


class Network(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: NetworkConfig,
        account: AccountContext,
        logs: LogSettings,
    ) -> None:
        super().__init__(scope, id_)
        naming = config.naming
        vpc = Vpc(
            self,
            "vpc",
            cidr_block=config.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": naming.name("vpc")},
        )
        # The default group is managed so that it has no rules at all (nothing may use it).
        DefaultSecurityGroup(
            self, "default-sg", vpc_id=vpc.id, tags={"Name": naming.name("securitygroup-default")}
        )

        azs = config.availability_zones
        public: list[Subnet] = []
        private: list[Subnet] = []
        for az in azs:
            public.append(
                Subnet(
                    self,
                    f"public-{az}",
                    vpc_id=vpc.id,
                    availability_zone=az,
                    cidr_block=subnet_cidr(config.cidr, config.subnet_prefix, az, "public"),
                    map_public_ip_on_launch=False,
                    tags={"Name": naming.name(f"subnet-public-{az}"), "Tier": "public"},
                )
            )
            private.append(
                Subnet(
                    self,
                    f"private-{az}",
                    vpc_id=vpc.id,
                    availability_zone=az,
                    cidr_block=subnet_cidr(config.cidr, config.subnet_prefix, az, "private"),
                    map_public_ip_on_launch=False,
                    tags={"Name": naming.name(f"subnet-private-{az}"), "Tier": "private"},
                )
            )

        igw = InternetGateway(self, "igw", vpc_id=vpc.id, tags={"Name": naming.name("igw")})
        public_routes = RouteTable(
            self, "public-rt", vpc_id=vpc.id, tags={"Name": naming.name("rt-public")}
        )
        Route(
            self,
            "public-default",
            route_table_id=public_routes.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
        )
        for subnet, az in zip(public, azs, strict=True):
            RouteTableAssociation(
                self, f"public-rta-{az}", subnet_id=subnet.id, route_table_id=public_routes.id
            )

        nat_azs = azs[:1] if config.single_nat_gateway else azs
        nats: list[NatGateway] = []
        for index, az in enumerate(nat_azs):
            eip = Eip(
                self, f"nat-eip-{az}", domain="vpc", tags={"Name": naming.name(f"eip-nat-{az}")}
            )
            nats.append(
                NatGateway(
                    self,
                    f"nat-{az}",
                    allocation_id=eip.id,
                    subnet_id=public[index].id,
                    tags={"Name": naming.name(f"nat-{az}")},
                    depends_on=[igw],
                )
            )
        private_tables: list[RouteTable] = []
        for index, (subnet, az) in enumerate(zip(private, azs, strict=True)):
            table = RouteTable(
                self,
                f"private-rt-{az}",
                vpc_id=vpc.id,
                tags={"Name": naming.name(f"rt-private-{az}")},
            )
            Route(
                self,
                f"private-default-{az}",
                route_table_id=table.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats[min(index, len(nats) - 1)].id,
            )
            RouteTableAssociation(
                self, f"private-rta-{az}", subnet_id=subnet.id, route_table_id=table.id
            )
            private_tables.append(table)

        # Endpoints: S3 (gateway, for ECR image layers) and the interface endpoints.
        s3 = VpcEndpoint(
            self,
            "s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{account.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[t.id for t in private_tables],
            tags={"Name": naming.name("vpce-s3")},
        )
        endpoint_sg = SecurityGroup(
            self,
            "endpoints-sg",
            name=naming.name("securitygroup-endpoints"),
            description="Interface VPC endpoints: HTTPS from inside the VPC only",
            vpc_id=vpc.id,
            tags={"Name": naming.name("securitygroup-endpoints")},
        )
        VpcSecurityGroupIngressRule(
            self,
            "endpoints-https-in",
            security_group_id=endpoint_sg.id,
            description="HTTPS from the VPC",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4=vpc.cidr_block,
        )
        for service in INTERFACE_ENDPOINTS:
            VpcEndpoint(
                self,
                f"endpoint-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{account.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in private],
                security_group_ids=[endpoint_sg.id],
                tags={"Name": naming.name(f"vpce-{service.replace('.', '-')}")},
            )

        # The processor's group is defined here (not in Processing) because the cache
        # and database admit it by reference before the service exists.
        processor_sg = SecurityGroup(
            self,
            "processor-sg",
            name=naming.name("securitygroup-processor"),
            description="Processor tasks: no ingress; egress to endpoints, S3, Redis, RDS",
            vpc_id=vpc.id,
            tags={"Name": naming.name("securitygroup-processor")},
        )
        VpcSecurityGroupEgressRule(
            self,
            "processor-https-endpoints",
            security_group_id=processor_sg.id,
            description="HTTPS to the interface endpoints",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            referenced_security_group_id=endpoint_sg.id,
        )
        VpcSecurityGroupEgressRule(
            self,
            "processor-https-s3",
            security_group_id=processor_sg.id,
            description="HTTPS to S3 through the gateway endpoint (ECR image layers)",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            prefix_list_id=s3.prefix_list_id,
        )

        # Flow logs: every packet decision (ALL) to an encrypted log group.
        flow_group = EncryptedLogGroup(
            self, "flow-logs", name=f"/tap/{naming.name('vpc-flow-logs')}", settings=logs
        )
        flow_role = IamRole(
            self,
            "flow-logs-role",
            name=naming.name("role-vpc-flow-logs"),
            assume_role_policy=iam_policy.service_trust(
                "vpc-flow-logs.amazonaws.com", account.account_id
            ),
        )
        IamRolePolicy(
            self,
            "flow-logs-policy",
            name="deliver-to-flow-log-group",
            role=flow_role.id,
            policy=iam_policy.document(
                iam_policy.statement(
                    "WriteFlowLogGroup",
                    ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    [flow_group.arn, f"{flow_group.arn}:*"],
                ),
                # DescribeLogGroups has no resource-level permission (AWS IAM reference).
                iam_policy.statement("ListLogGroups", ["logs:DescribeLogGroups"], ["*"]),
            ),
        )
        FlowLog(
            self,
            "flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=flow_group.arn,
            iam_role_arn=flow_role.arn,
            max_aggregation_interval=60,
            tags={"Name": naming.name("flow-log")},
        )

        self.outputs = NetworkOutputs(
            vpc_id=vpc.id,
            vpc_cidr=vpc.cidr_block,
            public_subnet_ids=tuple(s.id for s in public),
            private_subnet_ids=tuple(s.id for s in private),
            processor_security_group_id=processor_sg.id,
            endpoint_security_group_id=endpoint_sg.id,
            flow_log_group_name=flow_group.name,
        )
