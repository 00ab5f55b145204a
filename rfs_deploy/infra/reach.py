"""Whether the driver can tell ahead that it may not reach a service's test listener.

Pure (no Pulumi import), so the command line can ask before a deployment starts; the ingress rules
themselves are :mod:`rfs_deploy.infra.ingress`.
"""

from __future__ import annotations

from rfs_deploy.config.model import Network


def idle_listener_reach(network: Network) -> str | None:
    """One line saying when a driver can tell ahead that it may not reach the test listener, else
    None: the port admits nobody, or an internet-facing load balancer admits only the VPC (whose
    own hosts reach its public addresses through NAT, from outside the VPC's CIDR)."""
    cidrs, groups = network.test_ingress_cidrs, network.test_ingress_security_groups
    if cidrs == [] and not groups:
        return (
            "the test listener admits nobody (network.testIngressCidrs is [] and there are no "
            "testIngressSecurityGroups): validation through it cannot connect"
        )
    if cidrs is None and not network.internal:
        return (
            "the test listener admits only the VPC's CIDR blocks, but the load balancer is "
            "internet-facing: a driver reaches it from a public address (through NAT inside the VPC), "
            "so add that address to network.testIngressCidrs"
        )
    return None
