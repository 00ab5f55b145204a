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
- With **HTTPS** (``https`` set) both listeners are HTTPS with the ACM certificate and TLS policy,
  each extra certificate is a ``ListenerCertificate`` on both, and (``https.redirectHttp``) a
  **redirect listener** on ``https.redirectPort`` answers plain HTTP with a 301 to the production
  listener. Without it the listeners are plain HTTP, exactly as before (same names, same inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from rfs_deploy.config.model import SLOTS, Https, ReleaseState, SlotName, Variants, other_slot


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
    #: HTTPS settings; ``None``: plain HTTP listeners.
    https: Https | None = None

    @property
    def protocol(self) -> str:
        """``HTTPS`` or ``HTTP``: the production and test listeners' protocol."""
        return "HTTP" if self.https is None else "HTTPS"


def redirect_listener(
    prefix: str,
    https: Https | None,
    load_balancer_arn: pulumi.Input[str],
    listener_port: int,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> aws.lb.Listener | None:
    """``<prefix>-redirect-listener``: plain HTTP on ``https.redirectPort`` answering 301 to the
    HTTPS listener; None without HTTPS or with ``redirectHttp: false``."""
    if https is None or not https.redirect_http:
        return None
    return aws.lb.Listener(
        f"{prefix}-redirect-listener",
        load_balancer_arn=load_balancer_arn,
        port=https.redirect_port,
        protocol="HTTP",
        default_actions=[redirect_to_https(listener_port)],
        tags=dict(tags),
        opts=opts,
    )


def extra_certificates(
    prefix: str, https: Https | None, listeners: Mapping[str, aws.lb.Listener], opts: pulumi.ResourceOptions
) -> list[aws.lb.ListenerCertificate]:
    """``<prefix>-<role>-cert-<n>``: each of ``https.extraCertificateArns`` on each listener."""
    if https is None:
        return []
    return [
        aws.lb.ListenerCertificate(
            f"{prefix}-{role}-cert-{index}", listener_arn=listener.arn, certificate_arn=arn, opts=opts
        )
        for role, listener in listeners.items()
        for index, arn in enumerate(https.extra_certificate_arns, start=1)
    ]


def redirect_to_https(port: int) -> aws.lb.ListenerDefaultActionArgs:
    """A permanent redirect to the same host and path on the HTTPS ``port``."""
    return aws.lb.ListenerDefaultActionArgs(
        type="redirect",
        redirect=aws.lb.ListenerDefaultActionRedirectArgs(
            protocol="HTTPS", port=str(port), status_code="HTTP_301"
        ),
    )


class Listeners(pulumi.ComponentResource):
    """Production and test listeners of one load balancer, and the A/B rules when set."""

    TYPE = "rfs-deploy:aws:Listeners"

    production: aws.lb.Listener
    test: aws.lb.Listener
    rules: dict[str, aws.lb.ListenerRule]
    #: The plain-HTTP listener redirecting to HTTPS (``None`` without HTTPS or redirect).
    redirect: aws.lb.Listener | None
    #: The extra certificates attached to the listeners (none without HTTPS).
    certificates: list[aws.lb.ListenerCertificate]

    def __init__(self, name: str, args: ListenersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self._args = args
        self.production = self._create_production_listener()
        self.test = self._create_test_listener()
        self.rules = self._create_variant_rules()
        self.redirect = self._create_redirect_listener()
        self.certificates = self._create_extra_certificates()
        self.register_outputs({"listenerArn": self.production.arn, "testListenerArn": self.test.arn})

    def _opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _certificate(self) -> str | None:
        """An HTTPS listener's certificate (None for HTTP: the input is left out)."""
        return None if self._args.https is None else self._args.https.certificate_arn

    def _ssl_policy(self) -> str | None:
        return None if self._args.https is None else self._args.https.ssl_policy

    def _create_production_listener(self) -> aws.lb.Listener:
        args = self._args
        return aws.lb.Listener(
            f"{args.service}-listener",
            load_balancer_arn=args.load_balancer_arn,
            port=args.listener_port,
            protocol=args.protocol,
            default_actions=[weighted_forward(args.release, args.target_group_arns)],
            tags=dict(args.tags),
            opts=self._opts(),
            certificate_arn=self._certificate(),
            ssl_policy=self._ssl_policy(),
        )

    def _create_test_listener(self) -> aws.lb.Listener:
        args = self._args
        idle = args.release.idle
        return aws.lb.Listener(
            f"{args.service}-test-listener",
            load_balancer_arn=args.load_balancer_arn,
            port=args.test_listener_port,
            protocol=args.protocol,
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="forward", target_group_arn=args.target_group_arns[idle]
                )
            ],
            tags=dict(args.tags),
            opts=self._opts(),
            certificate_arn=self._certificate(),
            ssl_policy=self._ssl_policy(),
        )

    def _create_redirect_listener(self) -> aws.lb.Listener | None:
        args = self._args
        return redirect_listener(
            args.service, args.https, args.load_balancer_arn, args.listener_port, args.tags, self._opts()
        )

    def _create_extra_certificates(self) -> list[aws.lb.ListenerCertificate]:
        listeners = {"listener": self.production, "test-listener": self.test}
        return extra_certificates(self._args.service, self._args.https, listeners, self._opts())

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
