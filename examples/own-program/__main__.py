"""A Pulumi program of your own: a VPC with two public subnets, and one rfs-deploy service on them.

The service's settings and release state come from the stack config (``rfs-deploy:services``,
``rfs-deploy:release``: the keys the rfs-deploy driver reads and writes), the network from this
program. With ``own-program:networkStack`` set, the VPC and subnets are another stack's outputs
(``vpcId``, ``subnetIds``) instead, read through a StackReference.
"""

import pulumi
import pulumi_aws as aws

from rfs_deploy.infra import Service, export_services, read_services

config = pulumi.Config()
network_stack = config.get("networkStack")

if network_stack:
    network = pulumi.StackReference(network_stack)
    vpc_id = network.require_output("vpcId")
    subnet_ids = network.require_output("subnetIds")
else:
    region = aws.config.region or "us-east-1"
    vpc = aws.ec2.Vpc("app-vpc", cidr_block="10.20.0.0/16", enable_dns_hostnames=True, tags={"Name": "app"})
    gateway = aws.ec2.InternetGateway("app-igw", vpc_id=vpc.id, tags={"Name": "app"})
    routes = aws.ec2.RouteTable(
        "app-public",
        vpc_id=vpc.id,
        routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
        tags={"Name": "app-public"},
    )
    subnets = []
    for index, zone in enumerate(("a", "b")):
        subnet = aws.ec2.Subnet(
            f"app-{zone}",
            vpc_id=vpc.id,
            cidr_block=f"10.20.{index}.0/24",
            availability_zone=f"{region}{zone}",
            map_public_ip_on_launch=True,
            tags={"Name": f"app-{zone}"},
        )
        aws.ec2.RouteTableAssociation(f"app-{zone}", subnet_id=subnet.id, route_table_id=routes.id)
        subnets.append(subnet)
    vpc_id = vpc.id
    subnet_ids = [subnet.id for subnet in subnets]

driven = read_services()
web = Service("web", driven.args("web", vpc_id=vpc_id, subnet_ids=subnet_ids, tags={"app": "web"}))
export_services({"web": web}, driven.release)
pulumi.export("vpcId", vpc_id)
