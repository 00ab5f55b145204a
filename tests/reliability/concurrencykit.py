"""Deployments of N different stacks at once through the async API, on the shipped fakes.

The fakes of :mod:`rfs_deploy.testing` cost almost no CPU, so a deployment over them is what a
real one is: mostly waiting (bakes, health polls, listener checks). :class:`ScaledClock` is a
real-time clock with compressed seconds (``scale`` wall seconds per second the driver asks for),
so the waits are real ``asyncio.sleep`` calls that can overlap — unlike the sandbox's virtual
clock, whose "waits" are CPU-bound simulation and serialise in one process.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from rfs_deploy.config.loading import load_stack_file
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.testing import FakeAlarms, FakeCloud, FakeFleet, FakeMetrics, FakeStack, FakeTraffic

REPO = Path(__file__).resolve().parents[2]
SERVICE = "api-service"
#: A short blue-green: switch after 10 s, 120 s of analysis, no scale-down delay.
OVERRIDES: dict[str, Any] = {
    "strategy": {"type": "blue-green", "switchDelay": 10, "validationDuration": 120, "scaleDownDelay": 0}
}


class ScaledClock:
    """Wall-clock time where one second the driver sleeps takes ``scale`` real seconds."""

    def __init__(self, scale: float = 0.005, start: float = 1_700_000_000.0) -> None:
        self.scale = scale
        self._start = start
        self._t0 = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._t0) / self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) * self.scale)


def test_listener(cloud: FakeCloud) -> httpx.MockTransport:
    """Answers validation requests as the idle slot's version would."""

    def handler(request: httpx.Request) -> httpx.Response:
        state = cloud.applied[SERVICE]
        version = state.slot(state.idle).version
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": version})
        return httpx.Response(200, text="ok")

    return httpx.MockTransport(handler)


def fake_seams(stack: str, clock: Any) -> Seams:
    """Seams for one stack named ``stack`` over fresh fakes (the production stack's config)."""
    config = load_stack_file(REPO / "stacks" / "Pulumi.production.yaml")
    # no load probe: it times requests on this clock, where a few milliseconds of a busy machine
    # become seconds of p99 (the probe has its own tests; here only the waits matter)
    service = config.services[SERVICE]
    validation = service.validation.model_copy(
        update={"probe": service.validation.probe.model_copy(update={"requests": 0})}
    )
    config.services[SERVICE] = service.model_copy(update={"validation": validation})
    cloud = FakeCloud(config)
    backend = FakeStack(config, cloud, stack_name=stack)
    backend.clock = clock.now
    return Seams(
        backend=backend,
        metrics=FakeMetrics(cloud),
        traffic=FakeTraffic(cloud),
        fleet=FakeFleet(cloud),
        alarms=FakeAlarms(),
        clock=clock,
        http_transport=test_listener(cloud),
    )


async def deploy_many(n: int, scale: float = 0.005) -> tuple[float, list[DeploymentRecord]]:
    """Deploy v2.0.0 to ``n`` stacks at once (asyncio.gather); (wall seconds, records)."""
    clock = ScaledClock(scale)
    drivers = [Driver(fake_seams(f"stack-{i}", clock)) for i in range(n)]
    started = time.perf_counter()
    records = await asyncio.gather(*(d.deploy(SERVICE, "v2.0.0", "blue-green", OVERRIDES) for d in drivers))
    return time.perf_counter() - started, list(records)


def scaling_table(sizes: tuple[int, ...] = (1, 2, 4, 8), scale: float = 0.005) -> list[dict[str, Any]]:
    """Wall time of N concurrent deployments for each N, and how it compares with N = 1."""
    rows = []
    base = None
    for n in sizes:
        cpu_start = time.process_time()
        wall, records = asyncio.run(deploy_many(n, scale))
        base = base or wall
        rows.append(
            {
                "n": n,
                "wall": wall,
                "ratio": wall / base,
                "completed": sum(r.status.value == "COMPLETED" for r in records),
                "cpu": time.process_time() - cpu_start,
            }
        )
    return rows
