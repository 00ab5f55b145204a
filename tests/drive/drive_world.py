"""Shared world builder for the driver tests (imported by the test modules and conftest.py)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from rfs_deploy.config.loading import load_stack_file
from rfs_deploy.config.model import ReleaseState, ServiceConfig, StackConfig
from rfs_deploy.drive import journal
from rfs_deploy.drive.context import Hooks, Seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.journal import JournalDeployment, JournalTag
from rfs_deploy.drive.records import DeploymentRecord, RecordStore
from rfs_deploy.outputs import parse_outputs
from rfs_deploy.releases import ReleaseConflict
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

T = TypeVar("T")

STACK_FILE = Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.production.yaml"
SERVICE = "api-service"
OLD = "v1.0.0"
NEW = "v2.0.0"
STRATEGIES = ("blue-green", "canary", "rolling", "ab-test")


class Crash(BaseException):
    """The driver process dying: a BaseException, so nothing in the runner catches it."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one driver call to the end (each call is a fresh event loop, like a fresh process)."""
    return asyncio.run(coro)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def stack_config(service_changes: dict[str, Any] | None = None) -> StackConfig:
    """The standard production stack, with ``service_changes`` (camelCase, deep-merged) applied.

    The fakes have no slow starters, so the stack file's warm-up is set to 0 unless a test asks
    for one: the timings these tests assert stay those of the plan itself.
    """
    config = load_stack_file(STACK_FILE)
    changes = {"warmup": 0, **(service_changes or {})}
    data = _merge(config.services[SERVICE].model_dump(by_alias=True), changes)
    service = ServiceConfig.model_validate(data)
    return config.model_copy(update={"services": {**config.services, SERVICE: service}})


@dataclass
class World:
    """The durable world (stack, cloud, readers, clock) plus what the tests observe of it."""

    stack: FakeStack
    cloud: FakeCloud
    clock: ManualClock
    metrics: FakeMetrics
    traffic: FakeTraffic
    fleet: FakeFleet
    alarms: FakeAlarms
    #: The release state before any deployment (history version 1 holds it).
    start: ReleaseState
    #: Every event any driver of this world emitted, in order.
    events: list[Any] = field(default_factory=list)
    #: (path, version answered) of every validation request.
    http_requests: list[tuple[str, str | None]] = field(default_factory=list)
    hooks: Hooks = field(default_factory=Hooks)

    # ---------------------------------------------------------------- seams & driver

    def transport(self) -> httpx.MockTransport:
        """The listeners: the test listener answers as the idle slot's version does, the
        production listener as the live slot's (what the load probe compares).

        ``/health`` answers 200 (503 when the version is unhealthy), ``/version`` the version;
        any other path fails exactly ``error_rate`` of the version's requests with a 500 and
        reports a ``Server-Timing`` latency of ``p99`` on every 50th request, a fifth of it
        otherwise — deterministic, so tests can count on the probe's numbers.
        """
        served: dict[str | None, int] = {}

        def handler(request: httpx.Request) -> httpx.Response:
            state = self.cloud.applied[SERVICE]
            test_port = parse_outputs(self.stack.outputs(), SERVICE).test_listener_port
            slot = state.idle if request.url.port == test_port else state.live
            version = state.slot(slot).version
            self.http_requests.append((request.url.path, version))
            behaviour = self.cloud.behaviour(version)
            if request.url.path == "/version":
                return httpx.Response(200, json={"version": version})
            if request.url.path == "/health" or not behaviour.healthy:
                return httpx.Response(200 if behaviour.healthy else 503, text="ok")
            n = served[version] = served.get(version, -1) + 1
            failed = math.floor((n + 1) * behaviour.error_rate) > math.floor(n * behaviour.error_rate)
            seconds = behaviour.p99 if n % 50 == 0 else behaviour.p99 / 5
            timing = {"server-timing": f"total;dur={seconds * 1000:.1f}"}
            return httpx.Response(500 if failed else 200, text="ok", headers=timing)

        return httpx.MockTransport(handler)

    def seams(
        self, listeners: list[Callable[[Any], None]] | None = None, records: RecordStore | None = None
    ) -> Seams:
        """Fresh seams over this world; the world's event log always listens."""
        return Seams(
            backend=self.stack,
            metrics=self.metrics,
            traffic=self.traffic,
            fleet=self.fleet,
            alarms=self.alarms,
            clock=self.clock,
            http_transport=self.transport(),
            records=records,
            hooks=self.hooks,
            listeners=[self.events.append, *(listeners or [])],
        )

    def driver(self, listeners: list[Callable[[Any], None]] | None = None) -> Driver:
        return Driver(self.seams(listeners))

    def deploy(
        self,
        strategy: str | None = None,
        version: str = NEW,
        overrides: dict[str, Any] | None = None,
        listeners: list[Callable[[Any], None]] | None = None,
    ) -> DeploymentRecord:
        return run(self.driver(listeners).deploy(SERVICE, version, strategy, overrides))

    # ---------------------------------------------------------------- what the world holds

    def release(self) -> ReleaseState:
        """The release state in the stack config."""
        return self.stack.read_config().release[SERVICE]

    def applied(self) -> ReleaseState:
        """The release state the cloud runs (as the last successful update left it)."""
        return self.cloud.applied[SERVICE]

    def tags(self) -> list[JournalTag]:
        """Journal tags of every update, oldest first (untagged updates left out)."""
        found = [journal.decode(e.message) for e in reversed(self.stack.history())]
        return [t for t in found if t is not None]

    def latest(self) -> JournalDeployment:
        found = journal.latest_deployment(self.stack.history(), SERVICE)
        assert found is not None, "no deployment in stack history"
        return found

    def config_service(self) -> ServiceConfig:
        return self.stack.read_config().services[SERVICE]

    def finished_meanwhile(self, last: JournalTag, message: str) -> None:
        """Another owner finishes the deployment whose last tag is ``last`` just before this
        process's next journal update, which the program's compare-and-swap then refuses (the
        release state changed since it was read)."""

        def overtaken(update: str) -> BaseException | None:
            tag = journal.decode(update)
            if tag is None or tag.phase == "done":
                return None
            done = dataclasses.replace(
                last, phase="done", kind="done", step=last.total - 1, owner="ci-7/4242", by=None
            )
            self.stack.crash_when = None
            self.stack.up(journal.encode(done, message))
            return ReleaseConflict("the live release state of api-service changed since it was read")

        self.stack.crash_when = overtaken
        self.stack.crash_leaves = "failed"


def build_world(
    behaviours: dict[str, Behaviour] | None = None,
    service_changes: dict[str, Any] | None = None,
    weight_lag_reads: int = 0,
) -> World:
    """The standard stack on fakes; ``behaviours`` by version (default: every version healthy)."""
    config = stack_config(service_changes)
    clock = ManualClock()
    cloud = FakeCloud(config, behaviours=dict(behaviours or {}), weight_lag_reads=weight_lag_reads)
    stack = FakeStack(config, cloud)
    stack.clock = clock.now
    return World(
        stack=stack,
        cloud=cloud,
        clock=clock,
        metrics=FakeMetrics(cloud),
        traffic=FakeTraffic(cloud),
        fleet=FakeFleet(cloud),
        alarms=FakeAlarms(),
        start=config.release[SERVICE],
    )


def promoted(strategy: str, start: ReleaseState, version: str = NEW) -> ReleaseState:
    """The release state a completed deployment of ``version`` from ``start`` leaves behind.

    Rolling moves the live slot to the new version in place (its refresh settings are recorded
    during the release and removed at its end); every other strategy ends with the new version live on
    the other slot, all traffic on it, and the old slot scaled to zero.
    """
    if strategy == "rolling":
        return start.with_slot(start.live, version=version)
    old, new = start.live, start.idle
    capacity = start.slot(old).capacity
    retired = {"version": start.slot(old).version, "capacity": 0}
    return start.evolve(
        live=new,
        weights={new: 100, old: 0},
        **{new: {"version": version, "capacity": capacity}, old: retired},
    )


def same_release(a: ReleaseState, b: ReleaseState) -> bool:
    """Equal release states, ignoring the rolling refresh settings a rolling release records."""
    return a.evolve(rolling=None) == b.evolve(rolling=None)
