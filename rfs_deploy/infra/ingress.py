"""Who may reach a service's listeners: the load balancer security group's ingress rules.

- The **production listener** (and, with HTTPS, the plain-HTTP redirect listener) takes
  ``network.ingressCidrs``, ``0.0.0.0/0`` unless the stack says otherwise.
- The **test listener** serves the idle slot, a version nobody has released yet, so it never takes
  the production ingress. It takes ``network.testIngressCidrs`` and
  ``network.testIngressSecurityGroups``; with ``testIngressCidrs`` unset, the VPC's own CIDR blocks
  (looked up with ``aws.ec2.get_vpc``): reachable from inside the VPC, private from the
  internet. ``testIngressCidrs: []`` and no security groups closes the test port altogether.

docs/listeners.md explains how the driver's validation and load probe reach the test listener.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from rfs_deploy.config.model import Network, ServiceConfig, SharedLoadBalancer


def cidr_rule(port: int, cidrs: list[str], description: str) -> aws.ec2.SecurityGroupIngressArgs:
    """An ingress rule for ``port`` from ``cidrs``; IPv6 ranges go to their own field."""
    v4 = [c for c in cidrs if ":" not in c]
    v6 = [c for c in cidrs if ":" in c]
    return aws.ec2.SecurityGroupIngressArgs(
        protocol="tcp",
        from_port=port,
        to_port=port,
        cidr_blocks=v4 or None,
        ipv6_cidr_blocks=v6 or None,
        description=description,
    )


def egress_anywhere() -> aws.ec2.SecurityGroupEgressArgs:
    """All outbound traffic: a load balancer's or an instance's security group."""
    return aws.ec2.SecurityGroupEgressArgs(
        protocol="-1", from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"], description="all outbound"
    )


def vpc_cidr_blocks(
    vpc_id: pulumi.Input[str], opts: pulumi.InvokeOptions | None = None
) -> pulumi.Output[list[str]]:
    """The VPC's IPv4 CIDR blocks: its primary block and every associated one, in order, once each."""
    vpc = aws.ec2.get_vpc_output(id=vpc_id, opts=opts)

    def blocks(result: aws.ec2.GetVpcResult) -> list[str]:
        found = [result.cidr_block, *(a.cidr_block for a in result.cidr_block_associations or [])]
        return list(dict.fromkeys(c for c in found if c))

    return vpc.apply(blocks)


def idle_ingress_rules(
    port: int, network: Network, opts: pulumi.InvokeOptions | None = None
) -> list[aws.ec2.SecurityGroupIngressArgs]:
    """The rules that open the test listener's ``port``: never ``network.ingressCidrs`` by default."""
    rules: list[aws.ec2.SecurityGroupIngressArgs] = []
    if network.test_ingress_cidrs is None:
        rules.append(
            aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_blocks=vpc_cidr_blocks(network.vpc_id, opts),
                description="test listener from the VPC",
            )
        )
    elif network.test_ingress_cidrs:
        rules.append(cidr_rule(port, list(network.test_ingress_cidrs), "test listener"))
    groups: Sequence[str] = network.test_ingress_security_groups
    if groups:
        rules.append(
            aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp",
                from_port=port,
                to_port=port,
                security_groups=list(groups),
                description="test listener from security groups",
            )
        )
    return rules


def alb_ingress_rules(
    config: ServiceConfig | SharedLoadBalancer, network: Network, opts: pulumi.InvokeOptions | None = None
) -> list[aws.ec2.SecurityGroupIngressArgs]:
    """Every ingress rule of a load balancer's security group (a service's own, or a shared one)."""
    cidrs = list(network.ingress_cidrs)
    rules = [cidr_rule(config.listener_port, cidrs, "production listener")]
    if config.https is not None and config.https.redirect_http:
        rules.append(cidr_rule(config.https.redirect_port, cidrs, "HTTP redirect to HTTPS"))
    return [*rules, *idle_ingress_rules(config.test_listener_port, network, opts)]
