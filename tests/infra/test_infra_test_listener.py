"""Who reaches the test listener, under the mock runtime: the VPC's CIDR blocks by default (looked
up), the configured CIDR blocks and security groups otherwise, never the production ingress."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
from infra_helpers import PRODUCTION, ServiceView, as_plain

from rfs_deploy.config import read_namespace
from rfs_deploy.config.model import Network
from rfs_deploy.infra.reach import idle_listener_reach
from rfs_deploy.sim.mockrun import AwsMocks, run_program

BASE = read_namespace(PRODUCTION)
SERVICE = "api-service"
PUBLIC = ["0.0.0.0/0", "::/0"]
GROUP = "sg-0123456789abcdef0"


class LookupMocks(AwsMocks):
    """AwsMocks with a VPC of two IPv4 blocks, recording each VPC lookup."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[str] = []

    def vpc(self, vpc_id: str) -> dict[str, Any]:
        self.lookups.append(vpc_id)
        answer = super().vpc(vpc_id)
        answer["cidrBlockAssociations"].append(
            {"associationId": "vpc-cidr-assoc-2", "cidrBlock": "100.64.0.0/16"}
        )
        return answer


def run(mocks: pulumi.runtime.Mocks | None = None, **network: Any) -> dict[int, list[dict[str, Any]]]:
    """The load balancer security group's rules by port, for the production stack with ``network``
    keys changed (production ingress opened to the whole internet, IPv4 and IPv6)."""
    ns = copy.deepcopy(BASE)
    ns["network"] = {**ns["network"], "ingressCidrs": PUBLIC, **network}
    view = ServiceView(run_program(ns, stack="production", mocks=mocks), SERVICE)
    rules: dict[int, list[dict[str, Any]]] = {}
    for rule in as_plain(view.alb_sg.inputs["ingress"]):
        rules.setdefault(rule["fromPort"], []).append(rule)
    return rules


def sources(rule: dict[str, Any]) -> list[str]:
    return sorted(
        rule.get("cidrBlocks", []) + rule.get("ipv6CidrBlocks", []) + rule.get("securityGroups", [])
    )


def test_by_default_the_test_port_takes_the_vpcs_cidr_blocks_only() -> None:
    mocks = LookupMocks()
    rules = run(mocks)
    assert mocks.lookups == [BASE["network"]["vpcId"]]
    (test_rule,) = rules[8443]
    assert test_rule["cidrBlocks"] == ["10.0.0.0/16", "100.64.0.0/16"]
    assert "ipv6CidrBlocks" not in test_rule and "securityGroups" not in test_rule
    assert test_rule["description"] == "test listener from the VPC"


def test_the_production_ingress_is_unchanged() -> None:
    rules = run(testIngressCidrs=["192.0.2.0/24"])
    (production,) = rules[80]
    assert production == {
        "protocol": "tcp",
        "fromPort": 80,
        "toPort": 80,
        "cidrBlocks": ["0.0.0.0/0"],
        "ipv6CidrBlocks": ["::/0"],
        "description": "production listener",
    }
    assert sorted(rules) == [80, 8443]


def test_configured_cidrs_replace_the_vpc_and_need_no_lookup() -> None:
    mocks = LookupMocks()
    rules = run(mocks, testIngressCidrs=["192.0.2.0/24", "2001:db8::/32"])
    assert mocks.lookups == []
    (test_rule,) = rules[8443]
    assert (test_rule["cidrBlocks"], test_rule["ipv6CidrBlocks"]) == (["192.0.2.0/24"], ["2001:db8::/32"])


def test_security_groups_get_a_rule_of_their_own() -> None:
    groups = ["sg-0123456789abcdef0", "sg-0fedcba9876543210"]
    rules = run(testIngressSecurityGroups=groups)
    by_description = {r["description"]: r for r in rules[8443]}
    assert sources(by_description["test listener from security groups"]) == sorted(groups)
    assert sources(by_description["test listener from the VPC"]) == ["10.0.0.0/16"]


def test_no_cidrs_and_groups_only_admits_the_groups() -> None:
    rules = run(testIngressCidrs=[], testIngressSecurityGroups=["sg-0123456789abcdef0"])
    (test_rule,) = rules[8443]
    assert sources(test_rule) == ["sg-0123456789abcdef0"]


def test_no_cidrs_and_no_groups_close_the_test_port() -> None:
    rules = run(testIngressCidrs=[])
    assert sorted(rules) == [80]


def test_the_production_ingress_never_reaches_the_test_port() -> None:
    for network in ({}, {"testIngressSecurityGroups": ["sg-0123456789abcdef0"]}, {"testIngressCidrs": []}):
        for rule in run(**network).get(8443, []):
            assert not set(sources(rule)) & set(PUBLIC), network


def test_opening_the_test_port_to_everyone_takes_saying_so() -> None:
    (test_rule,) = run(testIngressCidrs=["0.0.0.0/0"])[8443]
    assert sources(test_rule) == ["0.0.0.0/0"]


def network_of(**keys: Any) -> Network:
    return Network.model_validate({**BASE["network"], **keys})


def test_the_driver_is_told_ahead_when_it_cannot_reach_the_test_listener() -> None:
    closed = idle_listener_reach(network_of(testIngressCidrs=[]))
    assert closed is not None and "\n" not in closed and "admits nobody" in closed
    public = idle_listener_reach(network_of(internal=False))
    assert public is not None and "\n" not in public and "network.testIngressCidrs" in public
    assert idle_listener_reach(network_of(internal=True)) is None
    assert idle_listener_reach(network_of(testIngressCidrs=["198.51.100.7/32"])) is None
    assert idle_listener_reach(network_of(testIngressCidrs=[], testIngressSecurityGroups=[GROUP])) is None
