"""The sandbox answers CloudWatch's range statistics of the response time, as moto does not.

``TC(t:)`` (requests slower than ``t``) and ``PR(:t)`` / ``PR(t:)`` (their percent) come from each
minute's histogram of the world's latency samples, through boto3 against the sandbox exactly as
the CloudWatch provider asks for them; the provider's slow counts follow.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rfs_deploy.config.model import SlotName
from rfs_deploy.drive.steps import DeployIdle, SetWeight
from rfs_deploy.metrics import definitions, slot_sources
from rfs_deploy.metrics.cloudwatch import CloudWatchProvider
from rfs_deploy.sim.record import MetricRecord, metric_key
from rfs_deploy.sim.sandbox import Sandbox

Open = Callable[..., Sandbox]


def sleep(box: Sandbox, seconds: float) -> None:
    import asyncio

    asyncio.run(box.clock.sleep(seconds))


def release_step(box: Sandbox, step: Any, message: str) -> None:
    state = box.backend.read_config().release["api-service"]
    box.backend.write_release({"api-service": step.apply(state)})
    box.backend.up(message)


def ask(box: Sandbox, slot: SlotName, stats: dict[str, str], minutes: int = 5) -> dict[str, list[float]]:
    """``stats`` (id -> statistic) of ``slot``'s response time over the last ``minutes`` minutes,
    per minute, through the sandbox's boto3 CloudWatch client."""
    out = box.topology()["api-service"]
    metric = {
        "Namespace": definitions.P99.namespace,
        "MetricName": definitions.P99.name,
        "Dimensions": [
            {"Name": name, "Value": value}
            for name, value in definitions.P99.dimension_pairs(
                target_group=out.slot(slot).target_group_dimension, load_balancer=out.load_balancer_dimension
            )
        ],
    }
    now = box.clock.now()
    answer = box.adapters.session.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {"Id": qid, "MetricStat": {"Metric": metric, "Period": 60, "Stat": stat}}
            for qid, stat in stats.items()
        ],
        StartTime=datetime.fromtimestamp(now - 60 * minutes, tz=UTC),
        EndTime=datetime.fromtimestamp(now, tz=UTC),
    )
    return {r["Id"]: list(r["Values"]) for r in answer["MetricDataResults"]}


def test_a_trimmed_count_and_percentile_ranks_of_the_response_time(open_sandbox: Open) -> None:
    box = open_sandbox()  # the healthy scenario: 6,000 requests a minute, p99 0.35 s
    sleep(box, 300)

    got = ask(
        box,
        "blue",
        {"slow": "TC(0.35:)", "fast": "PR(:0.35)", "share": "PR(0.35:)", "half": "PR(:0.08)", "all": "TC(:)"},
    )

    assert len(got["slow"]) == 5
    for slow, fast, share, half, every in zip(
        got["slow"], got["fast"], got["share"], got["half"], got["all"], strict=True
    ):
        assert 20 < slow < 120, slow  # 1 % of about 6,000 requests
        assert fast + share == pytest.approx(100.0)
        assert share == pytest.approx(100 * slow / every)
        assert 0.4 < share < 2.0, share
        assert 40 < half < 60, half  # the median is 0.08 s
        assert 5000 < every < 7000


def test_a_slower_version_has_more_slow_requests_than_its_baseline(open_sandbox: Open) -> None:
    box = open_sandbox("latency-regression")
    release_step(box, DeployIdle("v2.0.0", 4), "deploy idle")
    sleep(box, 120)
    release_step(box, SetWeight(20), "weight 20")
    sleep(box, 240)
    out = box.topology()["api-service"]
    sources = slot_sources("api-service", out, ["green", "blue"], latency_threshold=0.35)
    now = box.clock.now()

    readings = CloudWatchProvider.from_session(box.adapters.session).read(sources, now - 180, now, 60)

    green, blue = readings.slots["green"], readings.slots["blue"]
    assert green is not None and blue is not None
    assert green.slow_threshold == blue.slow_threshold == 0.35
    assert green.slow is not None and blue.slow is not None
    assert blue.slow / blue.requests < 0.02  # the baseline: p99 0.35 s
    assert green.slow / green.requests > 0.5  # the new version: median 0.45 s


def test_a_statistic_the_sandbox_does_not_simulate_is_an_invalid_parameter(open_sandbox: Open) -> None:
    box = open_sandbox()
    sleep(box, 120)

    with pytest.raises(ClientError) as info:
        ask(box, "blue", {"mid": "TC(10%:90%)"}, minutes=2)

    assert info.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_the_histograms_survive_a_saved_and_loaded_record(open_sandbox: Open) -> None:
    box = open_sandbox()
    sleep(box, 180)
    record = box.world.record
    out = box.topology()["api-service"]
    key = next(k for k in record.to_json() if k[1] == definitions.P99.name)
    now = box.clock.now()
    metric = metric_key(key[0], key[1], [tuple(d) for d in key[2]])
    assert out.load_balancer_dimension in {v for _, v in metric[2]}

    loaded = MetricRecord(box.aws.raw("cloudwatch"))
    loaded.load_json(record.to_json())

    before = record.statistic(metric, "TC(0.2:)", now - 180, now, 60, now)
    after = loaded.statistic(metric, "TC(0.2:)", now - 180, now, 60, now)
    assert before == after and len(before[1]) == 3 and all(v > 0 for v in before[1])


def test_every_request_has_its_own_response_time_beyond_the_first_samples() -> None:
    """A busy group's slow-request count is a count of requests (binomial), not of samples that
    each stand for several requests; the extra draws leave the minute's other draws as they were."""
    import numpy as np

    from rfs_deploy.sim.behaviour import conduct
    from rfs_deploy.sim.scenario import Behaviour
    from rfs_deploy.sim.traffic import MAX_SAMPLES, serve

    targets = [conduct(Behaviour(), age=3600.0)] * 4
    requests = 3 * MAX_SAMPLES
    exact = serve(np.random.default_rng(1), requests, targets, rest=np.random.default_rng(2))
    sampled = serve(np.random.default_rng(1), requests, targets)
    assert exact.latency is not None and sampled.latency is not None
    assert sum(n for _, n in exact.latency.histogram) == requests
    assert abs(sum(n for _, n in sampled.latency.histogram) - MAX_SAMPLES) <= len(targets)  # rounding
    assert (exact.errors, exact.requests) == (sampled.errors, sampled.requests)
