"""The stack outputs the program exports and the driver reads (SPEC P7): one definition for both.

The program exports one output, ``services``: a mapping from service name to the camelCase
mapping built by :meth:`ServiceOutputs.to_output`. The driver parses it back with
:func:`parse_outputs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rfs_deploy.config.model import SLOTS, SlotName
from rfs_deploy.errors import BackendError, UnknownService

OUTPUT_NAME = "services"


@dataclass(frozen=True)
class SlotOutputs:
    target_group_arn: str
    #: CloudWatch ``TargetGroup`` dimension value (``targetgroup/<name>/<id>``).
    target_group_dimension: str
    asg_name: str
    #: Alarm names watching this slot (5xx rate, p99 latency, CPU).
    alarm_names: tuple[str, ...]


@dataclass(frozen=True)
class ServiceOutputs:
    load_balancer_arn: str
    #: CloudWatch ``LoadBalancer`` dimension value (``app/<name>/<id>``).
    load_balancer_dimension: str
    dns_name: str
    listener_arn: str
    test_listener_arn: str
    listener_port: int
    test_listener_port: int
    slots: Mapping[SlotName, SlotOutputs]
    #: ``HTTP`` or ``HTTPS``: the production and test listeners' protocol (outputs written before
    #: HTTPS existed have none and are read as ``HTTP``).
    listener_protocol: str = "HTTP"
    #: Behind a shared load balancer (``routing``): the service's rule on the shared production
    #: listener (its weighted forward) and on the shared test listener, and the hosts and paths
    #: they match. None / empty for a service with an ALB of its own (and in older outputs).
    rule_arn: str | None = None
    test_rule_arn: str | None = None
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    #: ``https.hostName``: the name the driver's requests use when the service has no host rule.
    host_name: str | None = None

    def slot(self, name: SlotName) -> SlotOutputs:
        return self.slots[name]

    @property
    def traffic_arn(self) -> str:
        """Where the service's production weights live: its rule, else the listener's default action."""
        return self.rule_arn or self.listener_arn

    @property
    def test_traffic_arn(self) -> str:
        """Where the service's test route lives: its test rule, else the test listener's default action."""
        return self.test_rule_arn or self.test_listener_arn

    @property
    def host(self) -> str:
        """The host name requests to the service use: its first host without wildcards when it is
        routed by host, else ``https.hostName``, else the load balancer's DNS name."""
        plain = next((h for h in self.hosts if "*" not in h and "?" not in h), None)
        return plain or self.host_name or self.dns_name

    @property
    def scheme(self) -> str:
        """The URL scheme the listeners answer: ``https`` or ``http``."""
        return "https" if self.listener_protocol.upper() == "HTTPS" else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.listener_port}"

    @property
    def test_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.test_listener_port}"

    def to_output(self) -> dict[str, Any]:
        routed: dict[str, Any] = {}
        if self.rule_arn is not None:
            routed = {
                "ruleArn": self.rule_arn,
                "testRuleArn": self.test_rule_arn,
                "hosts": list(self.hosts),
                "paths": list(self.paths),
            }
        return {
            "loadBalancerArn": self.load_balancer_arn,
            "loadBalancerDimension": self.load_balancer_dimension,
            "dnsName": self.dns_name,
            "listenerArn": self.listener_arn,
            "testListenerArn": self.test_listener_arn,
            "listenerPort": self.listener_port,
            "testListenerPort": self.test_listener_port,
            "listenerProtocol": self.listener_protocol,
            "slots": {
                name: {
                    "targetGroupArn": s.target_group_arn,
                    "targetGroupDimension": s.target_group_dimension,
                    "asgName": s.asg_name,
                    "alarmNames": list(s.alarm_names),
                }
                for name, s in self.slots.items()
            },
            **routed,
            **({"hostName": self.host_name} if self.host_name else {}),
        }


def parse_service_outputs(value: Mapping[str, Any]) -> ServiceOutputs:
    try:
        return ServiceOutputs(
            load_balancer_arn=value["loadBalancerArn"],
            load_balancer_dimension=value["loadBalancerDimension"],
            dns_name=value["dnsName"],
            listener_arn=value["listenerArn"],
            test_listener_arn=value["testListenerArn"],
            listener_port=int(value["listenerPort"]),
            test_listener_port=int(value["testListenerPort"]),
            listener_protocol=str(value.get("listenerProtocol") or "HTTP"),
            rule_arn=value.get("ruleArn"),
            test_rule_arn=value.get("testRuleArn"),
            hosts=tuple(value.get("hosts") or ()),
            paths=tuple(value.get("paths") or ()),
            host_name=value.get("hostName") or None,
            slots={
                name: SlotOutputs(
                    target_group_arn=value["slots"][name]["targetGroupArn"],
                    target_group_dimension=value["slots"][name]["targetGroupDimension"],
                    asg_name=value["slots"][name]["asgName"],
                    alarm_names=tuple(value["slots"][name]["alarmNames"]),
                )
                for name in SLOTS
            },
        )
    except (KeyError, TypeError) as exc:
        raise BackendError(f"stack output '{OUTPUT_NAME}' is missing {exc}; run the update again") from None


def parse_outputs(outputs: Mapping[str, Any], service: str) -> ServiceOutputs:
    """The outputs of one service from a stack's outputs (plain values, not OutputValue)."""
    services = outputs.get(OUTPUT_NAME)
    if not isinstance(services, Mapping):
        raise BackendError(f"the stack has no '{OUTPUT_NAME}' output yet; run an update first")
    if service not in services:
        known = ", ".join(sorted(services)) or "none"
        raise UnknownService(f"unknown service {service!r} in stack outputs (has: {known})")
    return parse_service_outputs(services[service])


def whole_numbers(value: Any) -> Any:
    """``value`` with integral floats made ints: stack outputs come back from the engine (and
    from JSON read through the Automation API) with every number a float (``100.0``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    return value
