"""ELBv2 read-back (TrafficReader): what the load balancer really does after an update.

The driver compares these answers with the release state it just applied, so the parsing stays
literal: weights as ELBv2 reports them, rules as they are, target states counted as they come.

Each reading takes a listener ARN (a service with a load balancer of its own: the listener's
default action) or a listener rule ARN (a service behind a shared load balancer: its rule's
action, and its A/B rules are the rules of its priority block above that rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rfs_deploy.aws.session import AwsSession, aws_errors
from rfs_deploy.config.model import ROUTING_BLOCK
from rfs_deploy.errors import AwsError
from rfs_deploy.readback import RuleView, TargetHealth

#: ELBv2 target states -> the TargetHealth field they count in. ``unavailable`` (health checks
#: off) counts as unhealthy: nothing vouches for the target.
_STATE_FIELD = {
    "healthy": "healthy",
    "unhealthy": "unhealthy",
    "unavailable": "unhealthy",
    "initial": "initial",
    "draining": "draining",
    "unhealthy.draining": "draining",
    "unused": "unused",
}


def forward_action(actions: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first ``forward`` action of a listener's or rule's actions, None when there is none."""
    return next((action for action in actions if action.get("Type") == "forward"), None)


def forward_targets(action: Mapping[str, Any] | None) -> dict[str, int]:
    """Target group ARN -> weight of one forward action.

    A forward to a single target group (a plain ``TargetGroupArn``, or a ForwardConfig with one
    entry, which AWS reports with weight 1) sends it all traffic: it reads as weight 100.
    """
    if action is None:
        return {}
    groups = action.get("ForwardConfig", {}).get("TargetGroups", [])
    if len(groups) > 1:
        return {group["TargetGroupArn"]: int(group.get("Weight", 1)) for group in groups}
    if groups:
        return {groups[0]["TargetGroupArn"]: 100}
    arn = action.get("TargetGroupArn")
    return {arn: 100} if arn else {}


def header_conditions(conditions: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The (header name, values) pairs of a rule's ``http-header`` conditions, in rule order."""
    return tuple(
        (cond["HttpHeaderConfig"]["HttpHeaderName"], tuple(cond["HttpHeaderConfig"].get("Values", [])))
        for cond in conditions
        if cond.get("Field") == "http-header" and "HttpHeaderConfig" in cond
    )


def listener_of_rule(rule_arn: str) -> str | None:
    """The listener ARN a listener rule ARN belongs to (None for an ARN that names no rule)."""
    head, sep, tail = rule_arn.partition(":listener-rule/")
    if not sep or "/" not in tail:
        return None
    return f"{head}:listener/{tail.rsplit('/', 1)[0]}"


def rule_block(
    rules: Iterable[Mapping[str, Any]], rule_arn: str
) -> tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]:
    """A routed service's own rule among a listener's ``rules`` (None when it is not there) and
    the listener's rules in its priority block below it: the service's A/B rules."""
    listed = [r for r in rules if not r.get("IsDefault") and r.get("Priority") != "default"]
    own = next((r for r in listed if r.get("RuleArn") == rule_arn), None)
    if own is None:
        return None, []
    top = int(own["Priority"])
    block = range(top - top % ROUTING_BLOCK, top)
    return own, [r for r in listed if int(r["Priority"]) in block]


class Elbv2Traffic:
    """TrafficReader over the ELBv2 API (DescribeListeners, DescribeRules, DescribeTargetHealth)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def from_session(cls, session: AwsSession) -> Elbv2Traffic:
        """An adapter over the session's ``elbv2`` client."""
        return cls(session.client("elbv2"))

    def _default_actions(self, listener_arn: str) -> list[dict[str, Any]]:
        with aws_errors("ELBv2 DescribeListeners"):
            listeners = self._client.describe_listeners(ListenerArns=[listener_arn])["Listeners"]
        if not listeners:
            raise AwsError(f"ELBv2 DescribeListeners failed: no listener {listener_arn}")
        return list(listeners[0].get("DefaultActions", []))

    def _listener_rules(self, listener_arn: str) -> list[dict[str, Any]]:
        with aws_errors("ELBv2 DescribeRules"):
            pages = self._client.get_paginator("describe_rules").paginate(ListenerArn=listener_arn)
            return [rule for page in pages for rule in page.get("Rules", [])]

    def _rule(self, rule_arn: str, listener_arn: str) -> dict[str, Any]:
        # read through the listener, as the rules of a listener change together
        rule = next((r for r in self._listener_rules(listener_arn) if r.get("RuleArn") == rule_arn), None)
        if rule is None:
            raise AwsError(f"ELBv2 DescribeRules failed: no rule {rule_arn}")
        return rule

    def _actions(self, arn: str) -> list[dict[str, Any]]:
        """A listener's default actions, or a listener rule's actions."""
        listener = listener_of_rule(arn)
        if listener is None:
            return self._default_actions(arn)
        return list(self._rule(arn, listener).get("Actions", []))

    def forward_weights(self, listener_arn: str) -> dict[str, int]:
        """Target group ARN -> weight of the listener's default forward action, or of the rule's
        forward action for a rule ARN ({} when it has none)."""
        return forward_targets(forward_action(self._actions(listener_arn)))

    def stickiness(self, listener_arn: str) -> int | None:
        """Seconds of target group stickiness on the forward action, None when off."""
        action = forward_action(self._actions(listener_arn))
        config = (action or {}).get("ForwardConfig", {}).get("TargetGroupStickinessConfig", {})
        if not config.get("Enabled"):
            return None
        return int(config.get("DurationSeconds", 0))

    def rules(self, listener_arn: str) -> list[RuleView]:
        """Non-default rules by ascending priority; only http-header conditions are reported.
        For a rule ARN: the rules of its priority block above it (the service's A/B rules)."""
        views: list[RuleView] = []
        shared = listener_of_rule(listener_arn)
        rules: list[Mapping[str, Any]] = list(self._listener_rules(shared or listener_arn))
        if shared is not None:
            own, rules = rule_block(rules, listener_arn)
            if own is None:
                raise AwsError(f"ELBv2 DescribeRules failed: no rule {listener_arn}")
        for rule in rules:
            if rule.get("IsDefault") or rule.get("Priority") == "default":
                continue
            views.append(
                RuleView(
                    priority=int(rule["Priority"]),
                    headers=header_conditions(rule.get("Conditions", [])),
                    forward=forward_targets(forward_action(rule.get("Actions", []))),
                )
            )
        return sorted(views, key=lambda view: view.priority)

    def target_health(self, target_group_arn: str) -> TargetHealth:
        """Counts of the target group's registered targets by state."""
        with aws_errors("ELBv2 DescribeTargetHealth"):
            descriptions = self._client.describe_target_health(TargetGroupArn=target_group_arn)[
                "TargetHealthDescriptions"
            ]
        counts = dict.fromkeys(("healthy", "unhealthy", "initial", "draining", "unused"), 0)
        for description in descriptions:
            state = description.get("TargetHealth", {}).get("State", "unavailable")
            counts[_STATE_FIELD.get(state, "unhealthy")] += 1
        return TargetHealth(**counts)
