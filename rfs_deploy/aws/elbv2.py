"""ELBv2 read-back (TrafficReader): what the load balancer really does after an update.

The driver compares these answers with the release state it just applied, so the parsing stays
literal: weights as ELBv2 reports them, rules as they are, target states counted as they come.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rfs_deploy.aws.session import AwsSession, aws_errors
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

    def forward_weights(self, listener_arn: str) -> dict[str, int]:
        """Target group ARN -> weight of the listener's default forward action ({} when it has none)."""
        return forward_targets(forward_action(self._default_actions(listener_arn)))

    def stickiness(self, listener_arn: str) -> int | None:
        """Seconds of target group stickiness on the default forward action, None when off."""
        action = forward_action(self._default_actions(listener_arn))
        config = (action or {}).get("ForwardConfig", {}).get("TargetGroupStickinessConfig", {})
        if not config.get("Enabled"):
            return None
        return int(config.get("DurationSeconds", 0))

    def rules(self, listener_arn: str) -> list[RuleView]:
        """Non-default rules by ascending priority; only http-header conditions are reported."""
        views: list[RuleView] = []
        with aws_errors("ELBv2 DescribeRules"):
            pages = self._client.get_paginator("describe_rules").paginate(ListenerArn=listener_arn)
            rules = [rule for page in pages for rule in page.get("Rules", [])]
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
