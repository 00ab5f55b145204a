"""What one deployment costs: stack updates, CloudWatch calls, metrics requested, driver CPU.

The real :class:`~rfs_deploy.drive.driver.Driver` runs the production stack's default canary on the
shipped fakes (:mod:`rfs_deploy.testing`) under a virtual clock, so every wait is free and
``time.process_time()`` around the run is the driver's own CPU: planning, stack-update
bookkeeping, listener verification, metric aggregation, the judge, records and events. The
counts come from the fakes' counters and are checked against what the plan implies
(:func:`expected_calls`): one GetMetricData call per analysis tick, with
:func:`rfs_deploy.metrics.cloudwatch.slot_queries`' queries per slot in play (four, and the
slow-request count once the judge has its latency threshold), and one call per deployment for
the baseline's history before the first traffic shift (:mod:`rfs_deploy.drive.history`,
:data:`~rfs_deploy.metrics.cloudwatch.HISTORY_QUERIES` queries).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from rfs_deploy.config.loading import load_stack_file
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.metrics.cloudwatch import HISTORY_QUERIES, MAX_QUERIES_PER_REQUEST, QUERIES_PER_SLOT
from rfs_deploy.testing import (
    Behaviour,
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
NEW = "v2.0.0"
#: CloudWatch's list price for GetMetricData: USD per 1,000 metrics requested.
USD_PER_1000_METRICS = 0.01


class CountingAlarms(FakeAlarms):
    """FakeAlarms that counts DescribeAlarms-like reads."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def firing(self, names: Sequence[str]) -> list[str]:
        self.calls += 1
        return super().firing(names)


@dataclass(frozen=True)
class Cost:
    """One deployment's cost."""

    case: str
    status: str
    steps: int
    stack_updates: int
    ticks: int
    get_metric_data_requests: int
    #: Of those, the baseline's history before the first shift (one per deployment).
    history_requests: int
    metrics_requested: int
    max_metrics_per_tick: int
    describe_alarms_calls: int
    listener_reads: int
    cpu_ms_total: float
    cpu_ms_per_step: float

    @property
    def usd(self) -> float:
        return self.metrics_requested * USD_PER_1000_METRICS / 1000


def _transport(cloud: FakeCloud) -> httpx.MockTransport:
    """The test listener: 200 everywhere, ``/version`` answering the idle slot's version."""

    def handler(request: httpx.Request) -> httpx.Response:
        state = cloud.applied[SERVICE]
        version = state.slot(state.idle).version
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": version})
        return httpx.Response(200, text="ok")

    return httpx.MockTransport(handler)


async def _deploy(driver: Driver) -> DeploymentRecord:
    return await driver.deploy(SERVICE, NEW)


def deploy_once(error_rate: float, rpm: int = 1000) -> tuple[DeploymentRecord, Cost]:
    """One canary of v2 with ``error_rate`` 5xx on the fakes; its record and its cost."""
    config = load_stack_file(STACK_FILE)
    clock = ManualClock()
    cloud = FakeCloud(config, behaviours={NEW: Behaviour(error_rate=error_rate)}, requests_per_minute=rpm)
    stack = FakeStack(config, cloud)
    stack.clock = clock.now
    metrics, traffic, alarms = FakeMetrics(cloud), FakeTraffic(cloud), CountingAlarms()
    seams = Seams(
        backend=stack,
        metrics=metrics,
        traffic=traffic,
        fleet=FakeFleet(cloud),
        alarms=alarms,
        clock=clock,
        http_transport=_transport(cloud),
    )
    updates_before = stack.updates
    start = time.process_time()
    record = asyncio.run(_deploy(Driver(seams)))
    cpu = (time.process_time() - start) * 1000
    steps = max(1, len(record.steps))
    cost = Cost(
        case="",
        status=record.status.value,
        steps=len(record.steps),
        stack_updates=stack.updates - updates_before,
        ticks=metrics.calls,
        # one request per tick below 500 queries, and one for the baseline's history
        get_metric_data_requests=metrics.calls + metrics.period_calls,
        history_requests=metrics.period_calls,
        metrics_requested=metrics.queries,
        max_metrics_per_tick=QUERIES_PER_SLOT * 2,
        describe_alarms_calls=alarms.calls,
        listener_reads=traffic.reads,
        cpu_ms_total=cpu,
        cpu_ms_per_step=cpu / steps,
    )
    return record, cost


def measure(case: str, error_rate: float, repeat: int = 15) -> Cost:
    """The median CPU of ``repeat`` identical deployments (after one warm-up); counts of the last."""
    deploy_once(error_rate)
    runs = [deploy_once(error_rate)[1] for _ in range(repeat)]
    last = runs[-1]
    return Cost(
        **{
            **last.__dict__,
            "case": case,
            "cpu_ms_total": statistics.median(c.cpu_ms_total for c in runs),
            "cpu_ms_per_step": statistics.median(c.cpu_ms_per_step for c in runs),
        }
    )


def expected_calls(
    weights: Sequence[int], learnt: int = 1, history: int = HISTORY_QUERIES
) -> tuple[int, int, int]:
    """(stack updates, GetMetricData requests, metrics requested) of a promoted canary with one
    tick per step: deploy idle, one update per weight, promote, scale down; per tick two slots
    while the baseline has traffic, one slot at 100 %, in one request each, with
    :data:`QUERIES_PER_SLOT` queries per slot but for the first ``learnt`` ticks, which have no
    latency threshold yet (0 when the baseline's history gives it); and once per deployment,
    before the first tick, the baseline's history: one request of ``history`` queries."""
    per_tick = [(QUERIES_PER_SLOT - (i < learnt)) * (2 if w < 100 else 1) for i, w in enumerate(weights)]
    requests = sum(-(-n // MAX_QUERIES_PER_REQUEST) for n in per_tick)
    return 1 + len(weights) + 2, requests + 1, sum(per_tick) + history


def costs(repeat: int = 15) -> list[Cost]:
    """A promoted healthy release and a release rolled back at its first step."""
    return [
        measure("healthy canary, promoted", 0.005, repeat),
        measure("20 % 5xx, rolled back", 0.20, repeat),
    ]
