"""The CloudWatch metrics rfs-deploy reads, alarms on and simulates, defined once.

The analysis judges a slot on four metrics (:data:`SLOT_METRICS`, one per
:data:`~rfs_deploy.metrics.definitions.Kind`) and, once it knows its latency threshold, on the
count of requests slower than it (:data:`SLOW`, a trimmed count of the response time). The
Pulumi alarms of :mod:`rfs_deploy.infra.alarms` watch the four, the CloudWatch provider
(:mod:`rfs_deploy.metrics.cloudwatch`) queries them, and the sandbox
(:mod:`rfs_deploy.sim.world`) publishes them, with the load balancer's other metrics below
(:data:`LOAD_BALANCER_METRICS`, :data:`TARGET_GROUP_HEALTH`), so each name, namespace,
statistic and dimension set is spelt here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

#: What a slot metric measures: the fields of :class:`~rfs_deploy.metrics.base.SlotMetrics`.
Kind = Literal["requests", "errors", "p99", "cpu", "slow"]
#: Which resource a metric's dimensions name: a slot's target group behind the service's load
#: balancer, a slot's Auto Scaling group, or the whole load balancer.
DimensionKind = Literal["target_group", "asg", "load_balancer"]
#: The statistics used here (``p99`` is an extended statistic in CloudWatch's terms; ``TC`` is
#: the trimmed count, whose bounds a query fills in: :func:`slower_than`).
Statistic = Literal["Sum", "Average", "p99", "TC"]

ALB_NAMESPACE = "AWS/ApplicationELB"
EC2_NAMESPACE = "AWS/EC2"

#: CloudWatch's dimension names.
TARGET_GROUP = "TargetGroup"
LOAD_BALANCER = "LoadBalancer"
AUTO_SCALING_GROUP = "AutoScalingGroupName"


@dataclass(frozen=True)
class MetricDefinition:
    """One CloudWatch metric as rfs-deploy uses it."""

    namespace: str
    name: str
    statistic: Statistic
    dimension_kind: DimensionKind
    #: The unit the sandbox publishes datapoints in.
    unit: str
    #: The :class:`SlotMetrics` field it feeds; None for a metric only published or alarmed on.
    kind: Kind | None = None
    #: The short name in GetMetricData ids (``req_blue``) and alarm queries.
    short: str = ""

    def dimensions(
        self, *, target_group: Any = None, load_balancer: Any = None, asg: Any = None
    ) -> dict[str, Any]:
        """The metric's dimensions by name; values may be Pulumi Outputs (the alarms pass them).

        A target-group metric needs both ``target_group`` and ``load_balancer`` (CloudWatch keeps
        per-target-group ALB metrics under both dimensions), an Auto Scaling one ``asg``.
        """
        chosen: dict[str, Any]
        if self.dimension_kind == "target_group":
            chosen = {TARGET_GROUP: target_group, LOAD_BALANCER: load_balancer}
        elif self.dimension_kind == "asg":
            chosen = {AUTO_SCALING_GROUP: asg}
        else:
            chosen = {LOAD_BALANCER: load_balancer}
        missing = [name for name, value in chosen.items() if value is None]
        if missing:
            raise ValueError(f"{self.name} needs the {' and '.join(missing)} dimension")
        return chosen

    def dimension_pairs(self, **values: Any) -> tuple[tuple[str, str], ...]:
        """:meth:`dimensions` as ``(name, value)`` pairs in the order CloudWatch documents them."""
        return tuple((name, str(value)) for name, value in self.dimensions(**values).items())


REQUESTS = MetricDefinition(ALB_NAMESPACE, "RequestCount", "Sum", "target_group", "Count", "requests", "req")
#: The ALB publishes no datapoint for a period without a 5xx answer: a missing value is zero.
ERRORS = MetricDefinition(
    ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", "Sum", "target_group", "Count", "errors", "err"
)
P99 = MetricDefinition(ALB_NAMESPACE, "TargetResponseTime", "p99", "target_group", "Seconds", "p99", "p99")
CPU = MetricDefinition(EC2_NAMESPACE, "CPUUtilization", "Average", "asg", "Percent", "cpu", "cpu")

#: What the analysis judges a slot on, in the order a provider asks for them (and the alarms watch).
SLOT_METRICS: tuple[MetricDefinition, ...] = (REQUESTS, ERRORS, P99, CPU)
#: Requests slower than the analysis's latency threshold ``t``: CloudWatch's trimmed count
#: ``TC(t:)`` of the response time, the number of requests whose time is above ``t`` (the lower
#: bound is exclusive, as in every CloudWatch range statistic). Asked for only with a threshold,
#: and never alarmed on.
SLOW = MetricDefinition(ALB_NAMESPACE, P99.name, "TC", "target_group", "Seconds", "slow", "slow")
#: The slot metrics by kind, the slow count included.
BY_KIND: Mapping[Kind, MetricDefinition] = {m.kind: m for m in (*SLOT_METRICS, SLOW) if m.kind is not None}


def slower_than(threshold: float) -> str:
    """The extended statistic counting requests slower than ``threshold`` seconds, ``TC(0.42:)``.

    CloudWatch takes a bound of at most ten decimals, and no exponent: the threshold is written
    out in fixed point (at least a microsecond)."""
    if not (threshold > 0 and threshold < 1e9):
        raise ValueError(f"a latency threshold must be a positive number of seconds, got {threshold}")
    text = f"{max(threshold, 1e-6):.6f}".rstrip("0").rstrip(".")
    return f"{SLOW.statistic}({text}:)"


#: Healthy and unhealthy target counts of a target group (published by the sandbox).
HEALTHY_HOSTS = MetricDefinition(ALB_NAMESPACE, "HealthyHostCount", "Average", "target_group", "Count")
UNHEALTHY_HOSTS = MetricDefinition(ALB_NAMESPACE, "UnHealthyHostCount", "Average", "target_group", "Count")
TARGET_GROUP_HEALTH: tuple[MetricDefinition, ...] = (HEALTHY_HOSTS, UNHEALTHY_HOSTS)

#: The whole load balancer's requests, target 5xx and its own 5xx (published by the sandbox).
LB_REQUESTS = MetricDefinition(ALB_NAMESPACE, REQUESTS.name, "Sum", "load_balancer", "Count")
LB_ERRORS = MetricDefinition(ALB_NAMESPACE, ERRORS.name, "Sum", "load_balancer", "Count")
LB_ELB_ERRORS = MetricDefinition(ALB_NAMESPACE, "HTTPCode_ELB_5XX_Count", "Sum", "load_balancer", "Count")
LOAD_BALANCER_METRICS: tuple[MetricDefinition, ...] = (LB_REQUESTS, LB_ERRORS, LB_ELB_ERRORS)

__all__ = [
    "ALB_NAMESPACE",
    "AUTO_SCALING_GROUP",
    "BY_KIND",
    "CPU",
    "EC2_NAMESPACE",
    "ERRORS",
    "HEALTHY_HOSTS",
    "LB_ELB_ERRORS",
    "LB_ERRORS",
    "LB_REQUESTS",
    "LOAD_BALANCER",
    "LOAD_BALANCER_METRICS",
    "P99",
    "REQUESTS",
    "SLOT_METRICS",
    "SLOW",
    "TARGET_GROUP",
    "TARGET_GROUP_HEALTH",
    "UNHEALTHY_HOSTS",
    "DimensionKind",
    "Kind",
    "MetricDefinition",
    "Statistic",
    "slower_than",
]
