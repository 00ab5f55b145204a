"""One table of metric definitions: the alarms, the CloudWatch provider and the fakes use it.

The Pulumi alarms are read back as the program registers them under the mock runtime, so what
is compared is what AWS would receive. (The sandbox's side is in tests/sim/test_sim_world.py.)
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from rfs_deploy.metrics import definitions, slot_sources
from rfs_deploy.metrics.cloudwatch import QUERIES_PER_SLOT, slot_queries
from rfs_deploy.sim.mockrun import ProgramRun, run_stack_file
from rfs_deploy.testing import fake_outputs

PRODUCTION = Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.production.yaml"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
Row = tuple[str, str, str, frozenset[str]]


@functools.cache
def production() -> ProgramRun:
    return run_stack_file(PRODUCTION)


def row(metric: definitions.MetricDefinition) -> Row:
    names = metric.dimensions(target_group="t", load_balancer="l", asg="a")
    return metric.namespace, metric.name, metric.statistic, frozenset(names)


def alarm_rows(inputs: dict[str, Any]) -> set[Row]:
    """(namespace, metric, statistic, dimension names) of every metric an alarm watches."""
    if "metricQueries" in inputs:
        return {
            (
                q["metric"]["namespace"],
                q["metric"]["metricName"],
                q["metric"]["stat"],
                frozenset(q["metric"]["dimensions"]),
            )
            for q in inputs["metricQueries"]
            if "metric" in q
        }
    statistic = inputs.get("extendedStatistic") or inputs["statistic"]
    return {(inputs["namespace"], inputs["metricName"], statistic, frozenset(inputs["dimensions"]))}


def test_the_table_has_one_slot_metric_per_kind() -> None:
    assert [m.kind for m in definitions.SLOT_METRICS] == ["requests", "errors", "p99", "cpu"]
    assert len({m.short for m in definitions.SLOT_METRICS}) == 4
    assert definitions.BY_KIND["p99"] is definitions.P99
    # the slow-request count is asked for beside them once the judge has a latency threshold
    assert definitions.BY_KIND["slow"] is definitions.SLOW
    assert QUERIES_PER_SLOT == len({m.short for m in (*definitions.SLOT_METRICS, definitions.SLOW)}) == 5


def test_the_pulumi_alarms_watch_exactly_the_tables_slot_metrics() -> None:
    run = production()
    alarms = run.of_type(ALARM)
    assert alarms
    watched = set().union(*(alarm_rows(a.inputs) for a in alarms))
    assert watched == {row(m) for m in definitions.SLOT_METRICS}
    # the error-rate alarm's metric-math ids are the kinds its expression names
    rate = next(a for a in alarms if "metricQueries" in a.inputs)
    ids = {q["id"] for q in rate.inputs["metricQueries"] if "metric" in q}
    assert ids == {definitions.ERRORS.kind, definitions.REQUESTS.kind}


def test_the_provider_queries_exactly_the_tables_slot_metrics_per_slot() -> None:
    out = fake_outputs("api")
    queries = slot_queries(slot_sources("api", out, ["blue", "green"]), 60)
    for slot in ("blue", "green"):
        mine = [q for q in queries if q.id.endswith(f"_{slot}")]
        assert [
            (q.namespace, q.metric_name, q.stat, frozenset(n for n, _ in q.dimensions)) for q in mine
        ] == [row(m) for m in definitions.SLOT_METRICS]
        assert dict(mine[0].dimensions) == {
            definitions.TARGET_GROUP: out.slot(slot).target_group_dimension,
            definitions.LOAD_BALANCER: out.load_balancer_dimension,
        }
        assert dict(mine[3].dimensions) == {definitions.AUTO_SCALING_GROUP: out.slot(slot).asg_name}
