"""The listener set of a service: production, test, and the A/B forced-variant rules.

- The **production listener**'s default action forwards to both target groups with the release
  state's weights (100/0 is blue-green before the switch, 90/10 a canary step, 50/50 an A/B
  split), with target group stickiness when the release sets ``stickiness``. Its shape never
  changes, so every traffic move is an in-place update of one listener.
- The **test listener** forwards to the idle slot only, so a new version can be validated before
  it takes production traffic.
- During an A/B test (``release.variants``) four rules on the production listener force a
  variant: variant A is the live slot (the baseline), B the idle slot (the new version)::

      priority p     <header>: a            -> live
      priority p+1   <header>: b            -> idle
      priority p+2   Cookie: *<cookie>=a... -> live
      priority p+3   Cookie: *<cookie>=b... -> idle

  The explicit header wins over the cookie. A cookie value must be exactly ``a`` or ``b``
  (it ends the header or is followed by ``;``), so ``variant=beta`` forces nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from rfs_deploy.config.model import SLOTS, ReleaseState, SlotName, Variants, other_slot


@dataclass(frozen=True)
class VariantRule:
    """One forced-variant rule: requests whose ``header`` matches one of ``values`` go to ``slot``."""

    key: str
    priority: int
    header: str
    values: tuple[str, ...]
    slot: SlotName


def variant_rules(variants: Variants, live: SlotName) -> tuple[VariantRule, ...]:
    """The four A/B rules for ``variants``, variant A on the live slot and B on the idle one."""
    idle = other_slot(live)
    base = variants.rule_priority
    cookie = variants.cookie
    return (
        VariantRule("header-a", base, variants.header, ("a",), live),
        VariantRule("header-b", base + 1, variants.header, ("b",), idle),
        VariantRule("cookie-a", base + 2, "Cookie", (f"*{cookie}=a", f"*{cookie}=a;*"), live),
        VariantRule("cookie-b", base + 3, "Cookie", (f"*{cookie}=b", f"*{cookie}=b;*"), idle),
    )


def weighted_forward(
    release: ReleaseState, target_groups: Mapping[SlotName, pulumi.Input[str]]
) -> aws.lb.ListenerDefaultActionArgs:
    """The production listener's default action: both target groups, weights from the release."""
    stickiness = None
    if release.stickiness is not None:
        stickiness = aws.lb.ListenerDefaultActionForwardStickinessArgs(
            enabled=True, duration=release.stickiness
        )
    forward = aws.lb.ListenerDefaultActionForwardArgs(
        target_groups=[
            aws.lb.ListenerDefaultActionForwardTargetGroupArgs(
                arn=target_groups[slot], weight=release.weights[slot]
            )
            for slot in SLOTS
        ],
        stickiness=stickiness,
    )
    return aws.lb.ListenerDefaultActionArgs(type="forward", forward=forward)


@dataclass(frozen=True)
class ListenersArgs:
    """Ports and release state, plus the load balancer and the slots' target groups."""

    service: str
    listener_port: int
    test_listener_port: int
    release: ReleaseState
    load_balancer_arn: pulumi.Input[str]
    target_group_arns: Mapping[SlotName, pulumi.Input[str]]
    tags: Mapping[str, str]


class Listeners(pulumi.ComponentResource):
    """Production and test listeners of one load balancer, and the A/B rules when set."""

    TYPE = "rfs-deploy:aws:Listeners"

    production: aws.lb.Listener
    test: aws.lb.Listener
    rules: dict[str, aws.lb.ListenerRule]

    def __init__(self, name: str, args: ListenersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self._args = args
        self.production = self._create_production_listener()
        self.test = self._create_test_listener()
        self.rules = self._create_variant_rules()
        self.register_outputs({"listenerArn": self.production.arn, "testListenerArn": self.test.arn})

    def _opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _create_production_listener(self) -> aws.lb.Listener:
        args = self._args
        return aws.lb.Listener(
            f"{args.service}-listener",
            load_balancer_arn=args.load_balancer_arn,
            port=args.listener_port,
            protocol="HTTP",
            default_actions=[weighted_forward(args.release, args.target_group_arns)],
            tags=dict(args.tags),
            opts=self._opts(),
        )

    def _create_test_listener(self) -> aws.lb.Listener:
        args = self._args
        idle = args.release.idle
        return aws.lb.Listener(
            f"{args.service}-test-listener",
            load_balancer_arn=args.load_balancer_arn,
            port=args.test_listener_port,
            protocol="HTTP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="forward", target_group_arn=args.target_group_arns[idle]
                )
            ],
            tags=dict(args.tags),
            opts=self._opts(),
        )

    def _create_variant_rules(self) -> dict[str, aws.lb.ListenerRule]:
        args = self._args
        variants = args.release.variants
        if variants is None:
            return {}
        return {
            rule.key: aws.lb.ListenerRule(
                f"{args.service}-rule-{rule.key}",
                listener_arn=self.production.arn,
                priority=rule.priority,
                actions=[
                    aws.lb.ListenerRuleActionArgs(
                        type="forward", target_group_arn=args.target_group_arns[rule.slot]
                    )
                ],
                conditions=[
                    aws.lb.ListenerRuleConditionArgs(
                        http_header=aws.lb.ListenerRuleConditionHttpHeaderArgs(
                            http_header_name=rule.header, values=list(rule.values)
                        )
                    )
                ],
                tags=dict(args.tags),
                opts=self._opts(),
            )
            for rule in variant_rules(variants, args.release.live)
        }
