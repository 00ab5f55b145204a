"""One load balancer for many services: the shared ALB and each service's listener rules on it.

A stack's ``loadBalancers.<name>`` is a :class:`SharedAlb`: a security group, the ALB, and its
production and test listeners, whose default action is a fixed 404 (a request no service's rule
matches reaches no service). A service whose ``routing`` names it gets no ALB nor listeners of
its own but a :class:`ServiceRoutes` on the shared listeners::

    production listener
      priority 10p + 0..3   host/path of the service + the A/B header/cookie -> live / idle
      priority 10p + 9      host/path of the service -> weighted forward (blue, green)
    test listener
      priority 10p + 9      host/path of the service -> idle slot

``p`` is the service's ``routing.priority``: each service owns the block ``10p .. 10p + 9``, so
priorities never collide between services (the config refuses two services with one ``p``) and
adding a service never renumbers the others' rules. The A/B rules sit above the service's own
rule in its block, so a forced variant wins over the weighted split only for that service's hosts
and paths. The service's weights and stickiness are its own rule's forward action: a release of
one service changes one rule, never the listener the others share.

Children::

    rfs-deploy:aws:SharedLoadBalancer  name
    ├── aws:ec2/securityGroup   name-alb-sg
    ├── aws:lb/loadBalancer     name-alb
    ├── aws:lb/listener         name-listener, name-test-listener (name-redirect-listener)
    rfs-deploy:aws:Routes  service-routes        (child of the service's component)
    ├── aws:lb/listenerRule     service-rule, service-test-rule
    └── aws:lb/listenerRule     service-rule-header-a ... cookie-b   (during an A/B test)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from rfs_deploy.config.model import SLOTS, Network, ReleaseState, Routing, SharedLoadBalancer, SlotName
from rfs_deploy.infra.ingress import alb_ingress_rules, egress_anywhere
from rfs_deploy.infra.listeners import VariantRule, extra_certificates, redirect_listener, variant_rules

#: Tag naming the shared load balancer a resource belongs to (its services carry their own tag).
LOAD_BALANCER_TAG = "rfs-deploy:load-balancer"
#: What a request matching no service's rule gets.
NOT_FOUND = aws.lb.ListenerDefaultActionFixedResponseArgs(
    content_type="text/plain", status_code="404", message_body="no service here"
)


@dataclass(frozen=True)
class SharedAlbArgs:
    """The shared load balancer's listener settings, its network and its tags."""

    settings: SharedLoadBalancer
    network: Network
    tags: Mapping[str, str]


class SharedAlb(pulumi.ComponentResource):
    """An ALB whose listeners several services' rules share (``loadBalancers.<name>``)."""

    TYPE = "rfs-deploy:aws:SharedLoadBalancer"

    security_group: aws.ec2.SecurityGroup
    load_balancer: aws.lb.LoadBalancer
    production: aws.lb.Listener
    test: aws.lb.Listener
    redirect: aws.lb.Listener | None
    certificates: list[aws.lb.ListenerCertificate]

    def __init__(self, name: str, args: SharedAlbArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self._name = name
        self._args = args
        self._tags = {**args.tags, LOAD_BALANCER_TAG: name}
        settings, network = args.settings, args.network
        self.security_group = self._create_security_group()
        subnets = network.subnet_ids
        self.load_balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=network.internal,
            security_groups=[self.security_group.id],
            subnets=list(subnets),
            tags=self._tags,
            opts=self._opts(),
        )
        self.production = self._listener("listener", settings.listener_port)
        self.test = self._listener("test-listener", settings.test_listener_port)
        self.redirect = redirect_listener(
            name, settings.https, self.load_balancer.arn, settings.listener_port, self._tags, self._opts()
        )
        listeners = {"listener": self.production, "test-listener": self.test}
        self.certificates = extra_certificates(name, settings.https, listeners, self._opts())
        self.register_outputs(
            {
                "loadBalancerArn": self.load_balancer.arn,
                "listenerArn": self.production.arn,
                "testListenerArn": self.test.arn,
            }
        )

    def _opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _create_security_group(self) -> aws.ec2.SecurityGroup:
        settings, network = self._args.settings, self._args.network
        return aws.ec2.SecurityGroup(
            f"{self._name}-alb-sg",
            description=f"{self._name} shared load balancer",
            vpc_id=network.vpc_id,
            ingress=alb_ingress_rules(settings, network, pulumi.InvokeOptions(parent=self)),
            egress=[egress_anywhere()],
            tags=self._tags,
            opts=self._opts(),
        )

    def _listener(self, role: str, port: int) -> aws.lb.Listener:
        https = self._args.settings.https
        return aws.lb.Listener(
            f"{self._name}-{role}",
            load_balancer_arn=self.load_balancer.arn,
            port=port,
            protocol="HTTP" if https is None else "HTTPS",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(type="fixed-response", fixed_response=NOT_FOUND)
            ],
            certificate_arn=None if https is None else https.certificate_arn,
            ssl_policy=None if https is None else https.ssl_policy,
            tags=self._tags,
            opts=self._opts(),
        )


def routed_variant_rules(routing: Routing, release: ReleaseState) -> tuple[VariantRule, ...]:
    """The A/B rules of a routed service: the usual four, numbered from its block's start."""
    if release.variants is None:
        return ()
    rules = variant_rules(release.variants, release.live)
    return tuple(
        dataclasses.replace(rule, priority=routing.first_priority + index) for index, rule in enumerate(rules)
    )


def route_conditions(routing: Routing) -> list[aws.lb.ListenerRuleConditionArgs]:
    """The host-header and path-pattern conditions of every rule of the service."""
    conditions = []
    if routing.hosts:
        conditions.append(
            aws.lb.ListenerRuleConditionArgs(
                host_header=aws.lb.ListenerRuleConditionHostHeaderArgs(values=list(routing.hosts))
            )
        )
    if routing.paths:
        conditions.append(
            aws.lb.ListenerRuleConditionArgs(
                path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=list(routing.paths))
            )
        )
    return conditions


def weighted_rule_forward(
    release: ReleaseState, target_groups: Mapping[SlotName, pulumi.Input[str]]
) -> aws.lb.ListenerRuleActionArgs:
    """The service rule's action: both target groups with the release's weights (and stickiness)."""
    stickiness = None
    if release.stickiness is not None:
        stickiness = aws.lb.ListenerRuleActionForwardStickinessArgs(enabled=True, duration=release.stickiness)
    return aws.lb.ListenerRuleActionArgs(
        type="forward",
        forward=aws.lb.ListenerRuleActionForwardArgs(
            target_groups=[
                aws.lb.ListenerRuleActionForwardTargetGroupArgs(
                    arn=target_groups[slot], weight=release.weights[slot]
                )
                for slot in SLOTS
            ],
            stickiness=stickiness,
        ),
    )


@dataclass(frozen=True)
class ServiceRoutesArgs:
    """A routed service's rules: its routing, release state, target groups and the shared listeners."""

    service: str
    routing: Routing
    release: ReleaseState
    listener_arn: pulumi.Input[str]
    test_listener_arn: pulumi.Input[str]
    target_group_arns: Mapping[SlotName, pulumi.Input[str]]
    tags: Mapping[str, str]


class ServiceRoutes(pulumi.ComponentResource):
    """A service's listener rules on a shared load balancer (production, test, A/B)."""

    TYPE = "rfs-deploy:aws:Routes"

    production: aws.lb.ListenerRule
    test: aws.lb.ListenerRule
    rules: dict[str, aws.lb.ListenerRule]

    def __init__(
        self, name: str, args: ServiceRoutesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self._args = args
        release, routing = args.release, args.routing
        self.production = self._rule(
            "rule",
            args.listener_arn,
            routing.rule_priority,
            weighted_rule_forward(release, args.target_group_arns),
        )
        self.test = self._rule(
            "test-rule",
            args.test_listener_arn,
            routing.rule_priority,
            aws.lb.ListenerRuleActionArgs(
                type="forward", target_group_arn=args.target_group_arns[release.idle]
            ),
        )
        self.rules = {
            rule.key: self._rule(
                f"rule-{rule.key}",
                args.listener_arn,
                rule.priority,
                aws.lb.ListenerRuleActionArgs(
                    type="forward", target_group_arn=args.target_group_arns[rule.slot]
                ),
                header=rule,
            )
            for rule in routed_variant_rules(routing, release)
        }
        self.register_outputs({"ruleArn": self.production.arn, "testRuleArn": self.test.arn})

    def _rule(
        self,
        suffix: str,
        listener_arn: pulumi.Input[str],
        priority: int,
        action: aws.lb.ListenerRuleActionArgs,
        header: VariantRule | None = None,
    ) -> aws.lb.ListenerRule:
        args = self._args
        conditions = route_conditions(args.routing)
        if header is not None:
            conditions.append(
                aws.lb.ListenerRuleConditionArgs(
                    http_header=aws.lb.ListenerRuleConditionHttpHeaderArgs(
                        http_header_name=header.header, values=list(header.values)
                    )
                )
            )
        return aws.lb.ListenerRule(
            f"{args.service}-{suffix}",
            listener_arn=listener_arn,
            priority=priority,
            actions=[action],
            conditions=conditions,
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
