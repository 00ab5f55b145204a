"""CloudWatch alarms per slot (SPEC P6): 5xx error rate, p99 latency, CPU.

The first two watch the slot's target group behind the service's load balancer and feed the
instance refresh's alarm specification (a firing alarm stops a rolling release and rolls it
back); all three are exported so the driver can check them before and during a release.

The metrics are the ones the analysis judges, from the shared table of
:mod:`rfs_deploy.metrics.definitions`:

- **5xx error rate** by metric math, ``IF(requests >= N, FILL(errors, 0) / requests, 0)`` over
  the target group's :data:`~rfs_deploy.metrics.definitions.ERRORS` and
  :data:`~rfs_deploy.metrics.definitions.REQUESTS` sums, ``N`` being
  :attr:`~rfs_deploy.config.model.Analysis.alarm_min_requests` (``3 / maxErrorRate``, at most
  half ``minRequests``): one error among five requests is no 20 % error rate. The ALB publishes no
  5xx datapoint for a minute without errors, hence ``FILL``; a minute without requests has no
  rate at all and counts as not breaching.
- **p99 latency**: :data:`~rfs_deploy.metrics.definitions.P99`, the ``p99`` extended statistic,
  in seconds.
- **CPU**: :data:`~rfs_deploy.metrics.definitions.CPU` averaged over the slot's Auto Scaling
  group, in percent.

Thresholds come from the service's ``analysis`` block. An alarm fires when ``failureLimit``
consecutive periods breach (the same count of failed windows that ends a driver step). The
period is ``analysis.period`` rounded up to whole minutes: ALB metrics are per minute and
CloudWatch accepts only 10, 20, 30 or multiples of 60 seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from rfs_deploy.config.model import Analysis
from rfs_deploy.metrics.definitions import CPU, ERRORS, P99, REQUESTS, MetricDefinition

#: The ids of the two sums are their kinds: ``FILL(errors, 0) / requests``.
ERROR_RATE_EXPRESSION = f"FILL({ERRORS.kind}, 0) / {REQUESTS.kind}"


def error_rate_expression(min_requests: int) -> str:
    """The alarm's rate: :data:`ERROR_RATE_EXPRESSION` in periods of at least ``min_requests``
    requests, 0 (not breaching) in thinner ones."""
    return f"IF({REQUESTS.kind} >= {int(min_requests)}, {ERROR_RATE_EXPRESSION}, 0)"


def alarm_period(analysis: Analysis) -> int:
    """``analysis.period`` rounded up to a whole number of minutes."""
    return -(-analysis.period // 60) * 60


def target_dimensions(target_group_suffix: Any, load_balancer_suffix: Any) -> dict[str, Any]:
    """The ALB per-target-group dimensions (values are ARN suffixes, possibly Outputs)."""
    return REQUESTS.dimensions(target_group=target_group_suffix, load_balancer=load_balancer_suffix)


def error_rate_queries(
    dimensions: Mapping[str, Any], period: int, min_requests: int = 1
) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
    """The metric-math queries of the 5xx-rate alarm; only the expression returns data."""

    def metric(definition: MetricDefinition) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
        return aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id=str(definition.kind),
            metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace=definition.namespace,
                metric_name=definition.name,
                dimensions=dict(dimensions),
                period=period,
                stat=definition.statistic,
            ),
            return_data=False,
        )

    return [
        metric(ERRORS),
        metric(REQUESTS),
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="error_rate",
            expression=error_rate_expression(min_requests),
            label="5xx error rate",
            return_data=True,
        ),
    ]


def _common(analysis: Analysis) -> dict[str, Any]:
    return {
        "comparison_operator": "GreaterThanThreshold",
        "evaluation_periods": analysis.failure_limit,
        "datapoints_to_alarm": analysis.failure_limit,
        "treat_missing_data": "notBreaching",
    }


def create_error_rate_alarm(
    resource_name: str,
    *,
    label: str,
    dimensions: Mapping[str, Any],
    analysis: Analysis,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """The 5xx error-rate alarm of one target group (threshold: ``analysis.maxErrorRate``)."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        alarm_description=(
            f"{label}: target 5xx error rate above {analysis.max_error_rate:g} "
            f"in periods of at least {analysis.alarm_min_requests} requests"
        ),
        metric_queries=error_rate_queries(dimensions, alarm_period(analysis), analysis.alarm_min_requests),
        threshold=analysis.max_error_rate,
        tags=dict(tags),
        opts=opts,
        **_common(analysis),
    )


def create_latency_alarm(
    resource_name: str,
    *,
    label: str,
    dimensions: Mapping[str, Any],
    analysis: Analysis,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """The p99 response-time alarm of one target group (threshold: ``analysis.maxP99Latency`` s)."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        alarm_description=f"{label}: p99 target response time above {analysis.max_p99_latency:g} s",
        namespace=P99.namespace,
        metric_name=P99.name,
        dimensions=dict(dimensions),
        extended_statistic=P99.statistic,
        period=alarm_period(analysis),
        threshold=analysis.max_p99_latency,
        tags=dict(tags),
        opts=opts,
        **_common(analysis),
    )


def create_cpu_alarm(
    resource_name: str,
    *,
    label: str,
    asg_name: pulumi.Input[str],
    analysis: Analysis,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """The average CPU alarm of one Auto Scaling group (threshold: ``analysis.maxCpu`` %)."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        alarm_description=f"{label}: average CPU above {analysis.max_cpu:g} %",
        namespace=CPU.namespace,
        metric_name=CPU.name,
        dimensions=CPU.dimensions(asg=asg_name),
        statistic=CPU.statistic,
        period=alarm_period(analysis),
        threshold=analysis.max_cpu,
        tags=dict(tags),
        opts=opts,
        **_common(analysis),
    )
