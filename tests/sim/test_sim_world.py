"""The sandbox end to end over moto: traffic, metrics, health, alarms, HTTP, instance refresh."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from rfs_deploy.config import Rolling
from rfs_deploy.config.model import SlotName
from rfs_deploy.drive.probe import server_timing
from rfs_deploy.drive.steps import DeployIdle, RollRefresh, SetWeight
from rfs_deploy.metrics import definitions, slot_sources
from rfs_deploy.metrics.cloudwatch import CloudWatchProvider, MetricQuery, slot_queries
from rfs_deploy.outputs import ServiceOutputs
from rfs_deploy.sim.sandbox import Sandbox

Open = Callable[..., Sandbox]


def release_step(box: Sandbox, step: object, message: str) -> None:
    state = box.backend.read_config().release["api-service"]
    box.backend.write_release({"api-service": step.apply(state)})  # type: ignore[attr-defined]
    box.backend.up(message)


def sleep(box: Sandbox, seconds: float) -> None:
    asyncio.run(box.clock.sleep(seconds))


def service_queries(out: ServiceOutputs, slots: list[SlotName]) -> list[MetricQuery]:
    """The CloudWatch provider's queries for ``slots`` of the sandbox's service."""
    return slot_queries(slot_sources("api-service", out, slots))


def in_service(box: Sandbox, asg: str) -> int:
    """Instances of the group InService, as moto holds them."""
    groups = box.aws.raw("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[asg])
    return sum(1 for i in groups["AutoScalingGroups"][0]["Instances"] if i["LifecycleState"] == "InService")


def provider(box: Sandbox) -> CloudWatchProvider:
    """The production CloudWatch provider over the sandbox's session (what the driver reads)."""
    return CloudWatchProvider.from_session(box.adapters.session)


def test_metrics_land_in_cloudwatch_with_alb_dimensions(open_sandbox: Open) -> None:
    box = open_sandbox()
    out = box.topology()["api-service"]
    sleep(box, 180)
    cloudwatch = box.aws.raw("cloudwatch")
    metrics = cloudwatch.list_metrics(Namespace="AWS/ApplicationELB", MetricName="RequestCount")["Metrics"]
    dims = [{d["Name"]: d["Value"] for d in m["Dimensions"]} for m in metrics]
    blue = out.slot("blue").target_group_dimension
    assert {"TargetGroup": blue, "LoadBalancer": out.load_balancer_dimension} in dims
    assert blue.startswith("targetgroup/") and out.load_balancer_dimension.startswith("app/")
    cpu = cloudwatch.list_metrics(Namespace="AWS/EC2", MetricName="CPUUtilization")["Metrics"]
    assert {"Name": "AutoScalingGroupName", "Value": out.slot("blue").asg_name} in cpu[0]["Dimensions"]
    # Plain moto read of the raw datapoints, dimensions in the order the sandbox wrote them.
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "r", "MetricStat": {"Metric": metrics[0], "Period": 60, "Stat": "Sum"}}],
        StartTime=datetime.fromtimestamp(box.clock.now() - 600, tz=UTC),
        EndTime=datetime.fromtimestamp(box.clock.now(), tz=UTC),
    )
    assert len(answer["MetricDataResults"][0]["Values"]) == 3


def test_the_sandbox_publishes_the_metrics_of_the_shared_table(open_sandbox: Open) -> None:
    """What the world writes is what the provider asks for and the alarms watch: every metric
    in moto is a row of :mod:`rfs_deploy.metrics.definitions`, with that row's dimensions, and
    every slot metric is there for every slot."""
    box = open_sandbox()
    out = box.topology()["api-service"]
    sleep(box, 180)
    published = {
        (m["Namespace"], m["MetricName"], frozenset(d["Name"] for d in m["Dimensions"]))
        for m in box.aws.raw("cloudwatch").list_metrics()["Metrics"]
    }
    rows = [
        *definitions.SLOT_METRICS,
        *definitions.TARGET_GROUP_HEALTH,
        *definitions.LOAD_BALANCER_METRICS,
    ]
    table = {
        (m.namespace, m.name, frozenset(m.dimensions(target_group="t", load_balancer="l", asg="a")))
        for m in rows
    }
    assert published == table
    queried = {
        (q.namespace, q.metric_name, frozenset(n for n, _ in q.dimensions))
        for q in service_queries(out, ["blue"])
    }
    slot_rows = {
        (m.namespace, m.name, frozenset(m.dimensions(target_group="t", load_balancer="l", asg="a")))
        for m in definitions.SLOT_METRICS
    }
    assert queried == slot_rows <= published


def test_production_adapters_read_p99_and_sums(open_sandbox: Open) -> None:
    box = open_sandbox()
    out = box.topology()["api-service"]
    sleep(box, 300)
    now = box.clock.now()
    series = provider(box).get_metric_data(service_queries(out, ["blue"]), now - 300, now)
    assert len(series["req_blue"].values) == 5
    assert all(5000 < v < 7000 for v in series["req_blue"].values)
    assert all(0.2 < v < 0.6 for v in series["p99_blue"].values)  # healthy: p99 about 0.35 s
    assert all(30 < v < 40 for v in series["cpu_blue"].values)
    assert list(series["p99_blue"].timestamps) == sorted(series["p99_blue"].timestamps)


def test_traffic_split_follows_listener_weights(open_sandbox: Open) -> None:
    box = open_sandbox()
    out = box.topology()["api-service"]
    release_step(box, DeployIdle("v2.0.0", 4), "deploy idle")
    sleep(box, 120)
    release_step(box, SetWeight(30), "weight 30")
    assert box.adapters.traffic.forward_weights(out.listener_arn)[out.slot("green").target_group_arn] == 30
    start = box.clock.now()
    sleep(box, 600)
    series = provider(box).get_metric_data(service_queries(out, ["blue", "green"]), start, box.clock.now())
    blue, green = sum(series["req_blue"].values), sum(series["req_green"].values)
    assert green / (blue + green) == pytest.approx(0.30, abs=0.02)


def test_slow_start_targets_become_healthy_late(open_sandbox: Open) -> None:
    box = open_sandbox("slow-start")
    out = box.topology()["api-service"]
    green = out.slot("green").target_group_arn
    assert box.adapters.traffic.target_health(out.slot("blue").target_group_arn).healthy == 4
    release_step(box, DeployIdle("v2.0.0", 4), "deploy idle")
    assert box.adapters.traffic.target_health(green).initial == 4
    sleep(box, 120)
    assert box.adapters.traffic.target_health(green).unhealthy == 4
    sleep(box, 120)
    assert box.adapters.traffic.target_health(green).healthy == 4


def test_http_transport_answers_through_the_test_listener(open_sandbox: Open) -> None:
    box = open_sandbox()
    out = box.topology()["api-service"]
    release_step(box, DeployIdle("v2.0.0", 4), "deploy idle")
    with httpx.Client(transport=box.http_transport()) as client:
        assert client.get(f"{out.test_url}/version").status_code == 503  # still booting
        sleep(box, 120)
        assert client.get(f"{out.test_url}/version").json() == {"version": "v2.0.0"}
        assert client.get(f"{out.url}/version").json() == {"version": "v1.0.0"}
        assert client.get(f"{out.url}/health").status_code == 200
        assert client.get(f"{out.url}/api/users").status_code == 200
        assert client.get(f"{out.url}/nope").status_code == 404


def test_http_transport_draws_errors_and_latency_from_each_versions_behaviour(open_sandbox: Open) -> None:
    """Critical endpoints answer like the scenario says the version serves: the error-spike
    version fails about 12 % of requests and the baseline about 0.2 %, each with a Server-Timing
    latency from its distribution; /health stays a plain liveness answer."""
    box = open_sandbox("error-spike")
    out = box.topology()["api-service"]
    release_step(box, DeployIdle("v2.0.0", 4), "deploy idle")
    sleep(box, 120)
    counts: dict[str, list[int]] = {}
    timings: dict[str, list[float]] = {}
    with httpx.Client(transport=box.http_transport()) as client:
        for name, url in (("new", out.test_url), ("live", out.url)):
            answers = [client.get(f"{url}/api/orders") for _ in range(2000)]
            counts[name] = [a.status_code for a in answers]
            timings[name] = sorted(server_timing(a) or 0.0 for a in answers)
        assert all(client.get(f"{out.test_url}/health").status_code == 200 for _ in range(50))
    new_errors, live_errors = counts["new"].count(500), counts["live"].count(500)
    assert 160 <= new_errors <= 330, new_errors  # 12 % of 2,000 is 240
    assert live_errors <= 15, live_errors  # 0.2 % of 2,000 is 4
    median = timings["live"][1000]
    assert 0.06 < median < 0.1, median  # the baseline's median latency is 0.08 s


def test_error_spike_fires_the_new_slots_alarm(open_sandbox: Open) -> None:
    box = open_sandbox("error-spike")
    out = box.topology()["api-service"]
    release_step(box, DeployIdle("v2.0.0", 4), "deploy idle")
    sleep(box, 120)
    release_step(box, SetWeight(20), "weight 20")
    green_alarms = list(out.slot("green").alarm_names)
    blue_alarms = list(out.slot("blue").alarm_names)
    sleep(box, 180)
    assert box.adapters.alarms.firing(green_alarms) == [green_alarms[0]]  # the 5xx-rate alarm
    assert box.adapters.alarms.firing(blue_alarms) == []


def test_rolling_refresh_progresses_in_batches(open_sandbox: Open) -> None:
    box = open_sandbox()
    out = box.topology()["api-service"]
    asg = out.slot("blue").asg_name
    release_step(box, RollRefresh("v2.0.0"), "roll to v2")
    seen = []
    for _ in range(40):
        status = box.adapters.fleet.latest_refresh(asg)
        assert status is not None
        seen.append(status.percentage_complete)
        if status.done:
            break
        sleep(box, 30)
    assert status.status == "Successful"
    assert seen == sorted(seen) and 0 < len(set(seen)) >= 4  # 25 % per batch, with checkpoints
    assert {i.version for i in box.world.fleet.of_group(asg)} == {"v2.0.0"}
    assert in_service(box, asg) == 4


def test_refresh_rolls_back_when_its_alarm_fires(open_sandbox: Open) -> None:
    box = open_sandbox("error-spike")
    out = box.topology()["api-service"]
    asg = out.slot("blue").asg_name
    # a rolling release (release.rolling set) is what attaches the alarms to the refresh
    release_step(box, RollRefresh("v2.0.0", rolling=Rolling()), "roll to v2")
    for _ in range(80):
        status = box.adapters.fleet.latest_refresh(asg)
        assert status is not None
        if status.done:
            break
        sleep(box, 30)
    assert status.status == "RollbackSuccessful"
    assert status.rolled_back_by_aws and "ALARM" in status.status_reason
    assert {i.version for i in box.world.fleet.of_group(asg)} == {"v1.0.0"}


def test_refresh_cancel_and_api_errors(open_sandbox: Open) -> None:
    from rfs_deploy.sim.refresh import RefreshError

    box = open_sandbox()
    asg = box.topology()["api-service"].slot("blue").asg_name
    box.adapters.fleet.cancel_refresh(asg)  # nothing active: a no-op, like the adapter promises
    # a refresh as a stack update starts one (the driver itself never starts or reverses one)
    refreshes = box.world.refreshes
    refresh_id = refreshes.start(asg, {"MinHealthyPercentage": 50, "InstanceWarmup": 30}, box.clock.now())
    with pytest.raises(RefreshError, match="in progress") as info:
        refreshes.start(asg, {}, box.clock.now())
    assert info.value.code == "InstanceRefreshInProgress"
    box.adapters.fleet.cancel_refresh(asg)
    status = box.adapters.fleet.latest_refresh(asg)
    assert status is not None and status.refresh_id == refresh_id
    sleep(box, 120)
    status = box.adapters.fleet.latest_refresh(asg)
    assert status is not None and status.status == "Cancelled"


def test_flaky_metrics_drop_points_and_throttle_calls(open_sandbox: Open) -> None:
    from rfs_deploy.errors import AwsError

    box = open_sandbox("flaky-metrics")
    out = box.topology()["api-service"]
    sleep(box, 1200)
    now, throttled, counts = box.clock.now(), 0, []
    for _ in range(30):
        try:
            series = provider(box).get_metric_data(service_queries(out, ["blue"]), now - 1200, now)
        except AwsError as exc:
            assert "Throttling" in str(exc)
            throttled += 1
            continue
        counts.append(len(series["req_blue"].values))
    assert 0 < throttled < 30
    assert counts and all(c == counts[0] for c in counts) and counts[0] < 20  # some minutes never arrive
