"""A canary driven end to end with every window judged from a real Prometheus server's answers.

The stack, the load balancer and the fleet are the shipped fakes; the service's
``analysis.metrics`` points at a Prometheus server holding the traffic the canary would have
produced: 1000 requests a minute split by the canary's weights (10 % more to green each minute
from the run's start). Two runs, two hours apart in the same data: in the first, green fails as
rarely as blue and the release is promoted; in the second, a fifth of green's requests fail and
the first window rolls it back. The fake CloudWatch seam is never asked.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_server import Minute, PrometheusServer, Traffic, serve

from rfs_deploy.config.loading import load_stack_file
from rfs_deploy.config.model import ServiceConfig, StackConfig
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.outputs import parse_outputs
from rfs_deploy.testing import (
    FakeAlarms,
    FakeCloud,
    FakeFleet,
    FakeMetrics,
    FakeStack,
    FakeTraffic,
    ManualClock,
)

STACK_FILE = Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.production.yaml"
SERVICE = "api-service"
OLD, NEW = "v1.0.0", "v2.0.0"
#: The two runs' virtual start times: minute-aligned, in the past, two hours apart.
HEALTHY = 1_700_006_400
REGRESSED = HEALTHY + 7200
RPM = 1000
GREEN_ERROR_RATE = {HEALTHY: 0.005, REGRESSED: 0.2}


def green_share(t: int) -> int:
    """Green's percent of the traffic in the minute starting at ``t``, as the canary moves it."""
    for start in (HEALTHY, REGRESSED):
        if start <= t < start + 1800:
            return min(100, 10 * ((t - start) // 60 + 1))
    return 0


def minute(service: str, slot: str, t: int) -> Minute:
    share = green_share(t) if slot == "green" else 100 - green_share(t)
    requests = RPM * share // 100
    start = HEALTHY if t < REGRESSED else REGRESSED
    rate = GREEN_ERROR_RATE[start] if slot == "green" else 0.005
    # 2 % slow requests: the 99th rank falls inside the slow bucket, never on its edge
    return Minute(requests=requests, errors=round(requests * rate), slow=requests // 50)


TRAFFIC = Traffic(HEALTHY - 600, REGRESSED + 1800, [(SERVICE, "blue"), (SERVICE, "green")], minute)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    yield from serve(tmp_path_factory.mktemp("prometheus-canary"), TRAFFIC)


def stack_config(url: str) -> StackConfig:
    """The production stack with the service judged on Prometheus (and no warm-up to wait out)."""
    config = load_stack_file(STACK_FILE)
    data = copy.deepcopy(config.services[SERVICE].model_dump(by_alias=True))
    data["warmup"] = 0
    data["analysis"]["metrics"] = {"provider": "prometheus", "url": url}
    service = ServiceConfig.model_validate(data)
    return config.model_copy(update={"services": {**config.services, SERVICE: service}})


def listeners(stack: FakeStack, cloud: FakeCloud) -> httpx.MockTransport:
    """The load balancer's listeners for validation: each answers as its slot's version does."""

    def handler(request: httpx.Request) -> httpx.Response:
        state = cloud.applied[SERVICE]
        test_port = parse_outputs(stack.outputs(), SERVICE).test_listener_port
        slot = state.idle if request.url.port == test_port else state.live
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": state.slot(slot).version})
        return httpx.Response(200, text="ok")

    return httpx.MockTransport(handler)


def deploy(url: str, start: int) -> tuple[DeploymentRecord, FakeStack, FakeMetrics]:
    config = stack_config(url)
    clock = ManualClock(start=float(start))
    cloud = FakeCloud(config)
    stack = FakeStack(config, cloud)
    stack.clock = clock.now
    cloudwatch = FakeMetrics(cloud)
    seams = Seams(
        backend=stack,
        metrics=cloudwatch,
        traffic=FakeTraffic(cloud),
        fleet=FakeFleet(cloud),
        alarms=FakeAlarms(),
        clock=clock,
        http_transport=listeners(stack, cloud),
    )
    record = asyncio.run(Driver(seams).deploy(SERVICE, NEW, "canary", None))
    return record, stack, cloudwatch


def served(slot: str, start: float, end: float) -> tuple[int, int]:
    """(requests, errors) the data holds for ``slot`` over [start, end)."""
    minutes = [minute(SERVICE, slot, t) for t in range(int(start), int(end), 60)]
    return sum(m.requests for m in minutes), sum(m.errors for m in minutes)


def windows(record: DeploymentRecord) -> list[tuple[float, dict[str, Any], dict[str, int]]]:
    """(window end, per-slot numbers, weights) of every analysis tick (each window is one period)."""
    return [(s.at, s.slots, s.weights) for s in record.samples]


def test_a_healthy_canary_judged_on_prometheus_is_promoted(server: PrometheusServer) -> None:
    record, stack, cloudwatch = deploy(server.url, HEALTHY)

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert stack.read_config().release[SERVICE].live == "green"
    assert cloudwatch.calls == 0  # every window came from the Prometheus server
    ticks = windows(record)
    assert len(ticks) == 10
    for at, slots, weights in ticks:
        # the weights the driver had set are the ones the data was written for
        assert weights["green"] == green_share(int(at) - 60), at
        requests, errors = served("green", at - 60, at)
        assert (slots["green"]["requests"], slots["green"]["errors"]) == (requests, errors), at
        assert slots["green"]["p99"] == pytest.approx(0.175)
        if weights["blue"]:
            assert slots["blue"]["requests"] == served("blue", at - 60, at)[0], at
    passed = [v for v in record.verdicts if v.outcome == "PASS"]
    assert len(passed) == 10 and [v.numbers["requests"] for v in passed] == [100 * k for k in range(1, 11)]


def test_a_regressed_canary_judged_on_prometheus_is_rolled_back(server: PrometheusServer) -> None:
    record, stack, cloudwatch = deploy(server.url, REGRESSED)

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert stack.read_config().release[SERVICE].live == "blue"
    assert stack.read_config().release[SERVICE].weights == {"blue": 100, "green": 0}
    assert cloudwatch.calls == 0
    [failed] = [v for v in record.verdicts if v.outcome == "FAIL"]
    assert failed.at == REGRESSED + 60
    assert (failed.numbers["requests"], failed.numbers["errors"]) == (100, 20)
    assert (failed.numbers["baseline_requests"], failed.numbers["baseline_errors"]) == served(
        "blue", REGRESSED, REGRESSED + 60
    )
    assert "error rate 20.00%" in failed.reason
