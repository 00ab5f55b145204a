"""In-memory fakes of the driver's seams, shipped so users' tests and ours share them.

:class:`FakeCloud` is a tiny world: a stack update applies a release state to it, and the
readers (:class:`FakeTraffic`, :class:`FakeFleet`, :class:`FakeMetrics`, :class:`FakeAlarms`)
report what it holds. Behaviour per version is a plain function, so a test says "v2 fails 3 % of
requests" in one line. :class:`FakeStack` keeps history like Pulumi does and can be told to fail
updates or to be locked. :class:`ManualClock` is virtual time (the sandbox's
:class:`~rfs_deploy.sim.clock.VirtualClock`, told to keep still between sleeps).

The sandbox (:mod:`rfs_deploy.sim`) is the realistic version of all this, over moto.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rfs_deploy.config.model import SLOTS, ReleaseState, SlotName, StackConfig
from rfs_deploy.drive.protocols import (
    AlarmDetails,
    HistoryEntry,
    RefreshStatus,
    RuleView,
    TargetHealth,
    UpdateResult,
)
from rfs_deploy.errors import BackendError, MetricsUnavailable, StackBusy
from rfs_deploy.metrics.base import Period, Readings, SlotMetrics, SlotSource, aggregate
from rfs_deploy.metrics.definitions import SLOT_METRICS
from rfs_deploy.outputs import OUTPUT_NAME, ServiceOutputs, SlotOutputs
from rfs_deploy.sim.clock import VirtualClock


class ManualClock(VirtualClock):
    """Virtual time for tests: ``sleep`` advances ``now`` at once, in one slice, without yielding
    to the event loop; a negative sleep is none. ``listeners`` are called with the new time after
    every advance; ``slept`` is the virtual time slept so far."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        super().__init__(start, step=math.inf, pace=0.0)
        self.listeners: list[Callable[[float], None]] = []

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        super().advance(max(0.0, seconds))
        for listener in list(self.listeners):
            listener(self.now())


@dataclass(frozen=True)
class Behaviour:
    """How one version behaves: a 5xx fraction, p99 seconds, CPU percent, healthy or not."""

    error_rate: float = 0.005
    p99: float = 0.25
    cpu: float = 35.0
    healthy: bool = True


def fake_outputs(service: str, listener_port: int = 80, test_port: int = 8443) -> ServiceOutputs:
    """Deterministic ARNs and names for a service, shaped like the program's outputs."""
    base = "arn:aws:elasticloadbalancing:us-east-1:123456789012"
    slots = {
        slot: SlotOutputs(
            target_group_arn=f"{base}:targetgroup/{service}-{slot}/0123456789abcdef",
            target_group_dimension=f"targetgroup/{service}-{slot}/0123456789abcdef",
            asg_name=f"{service}-asg-{slot}",
            alarm_names=(f"{service}-{slot}-5xx", f"{service}-{slot}-p99", f"{service}-{slot}-cpu"),
        )
        for slot in SLOTS
    }
    return ServiceOutputs(
        load_balancer_arn=f"{base}:loadbalancer/app/{service}/fedcba9876543210",
        load_balancer_dimension=f"app/{service}/fedcba9876543210",
        dns_name=f"{service}-123.us-east-1.elb.amazonaws.com",
        listener_arn=f"{base}:listener/app/{service}/fedcba9876543210/aaaa",
        test_listener_arn=f"{base}:listener/app/{service}/fedcba9876543210/bbbb",
        listener_port=listener_port,
        test_listener_port=test_port,
        slots=slots,
    )


@dataclass
class FakeCloud:
    """What AWS holds for each service, as the last successful update left it."""

    config: StackConfig
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    default: Behaviour = field(default_factory=Behaviour)
    requests_per_minute: int = 1000
    #: Reads of the listener that still show the old weights after an update (propagation lag).
    weight_lag_reads: int = 0
    applied: dict[str, ReleaseState] = field(default_factory=dict)
    outputs: dict[str, ServiceOutputs] = field(default_factory=dict)
    refresh: dict[str, RefreshStatus] = field(default_factory=dict)
    #: How the refresh an update starts (by changing a live slot's version) ends.
    refresh_outcome: str = "Successful"
    _stale: dict[str, tuple[ReleaseState, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, svc in self.config.services.items():
            self.outputs[name] = fake_outputs(name, svc.listener_port, svc.test_listener_port)
        self.applied = dict(self.config.release)

    def behaviour(self, version: str | None) -> Behaviour:
        return self.behaviours.get(version or "", self.default)

    def apply(self, release: Mapping[str, ReleaseState]) -> None:
        for service, state in release.items():
            before = self.applied.get(service)
            if before is not None and self.weight_lag_reads and before.weights != state.weights:
                self._stale[service] = (before, self.weight_lag_reads)
            if before is not None and before.slot(before.live).version != state.slot(state.live).version:
                asg = self.outputs[service].slot(state.live).asg_name
                done = 100 if self.refresh_outcome == "Successful" else 60
                self.refresh[asg] = RefreshStatus(
                    f"ir-{len(self.refresh) + 1}", self.refresh_outcome, done, 0
                )
            self.applied[service] = state

    def visible(self, service: str) -> ReleaseState:
        """The release state a reader sees now (old weights while propagation lags)."""
        stale = self._stale.get(service)
        if stale is not None:
            state, reads = stale
            if reads > 0:
                self._stale[service] = (state, reads - 1)
                return state
            del self._stale[service]
        return self.applied[service]

    def locate(self, arn_or_name: str) -> tuple[str, SlotName | None]:
        for service, out in self.outputs.items():
            if arn_or_name in (out.listener_arn, out.test_listener_arn):
                return service, None
            for slot in SLOTS:
                s = out.slot(slot)
                if arn_or_name in (s.target_group_arn, s.target_group_dimension, s.asg_name):
                    return service, slot
        raise KeyError(arn_or_name)


class FakeStack:
    """A stack in memory with Pulumi-like history; updates apply the release state to a FakeCloud."""

    def __init__(self, config: StackConfig, cloud: FakeCloud | None = None, stack_name: str = "test") -> None:
        self.stack_name = stack_name
        self._config = config
        self.cloud = cloud or FakeCloud(config)
        self._history: list[HistoryEntry] = []
        self.fail_updates = 0
        self.fail_when: Callable[[str], bool] | None = None
        #: Kill the driver mid-update: when this returns an exception for an update's message,
        #: ``up`` raises it after leaving history as a killed update does (see ``crash_leaves``).
        self.crash_when: Callable[[str], BaseException | None] | None = None
        #: The entry a killed update leaves: "in-progress" (Pulumi Cloud backend), "failed", or
        #: None for no entry at all (self-managed backend).
        self.crash_leaves: str | None = "in-progress"
        #: Whether the killed update had already changed the cloud before it died.
        self.crash_applied = False
        self.locked_by: str | None = None
        self.updates = 0
        self.clock: Callable[[], float] = time.time
        self._record("initial update", "succeeded")

    def _record(self, message: str, result: str) -> HistoryEntry:
        now = self.clock()
        entry = HistoryEntry(
            version=len(self._history) + 1,
            message=message,
            result=result,  # type: ignore[arg-type]
            start_time=now,
            end_time=now,
            release=dict(self._config.release),
        )
        self._history.append(entry)
        return entry

    def read_config(self) -> StackConfig:
        return self._config

    def write_release(self, release: Mapping[str, ReleaseState]) -> None:
        self._config = self._config.model_copy(update={"release": dict(release)})

    def up(self, message: str, on_event: Callable[[str], None] | None = None) -> UpdateResult:
        if self.locked_by is not None:
            raise StackBusy(f"stack {self.stack_name} is locked by another update ({self.locked_by})")
        self.updates += 1
        crash = self.crash_when(message) if self.crash_when is not None else None
        if crash is not None:
            if self.crash_applied:
                self.cloud.apply(self._config.release)
            if self.crash_leaves is not None:
                self._record(message, self.crash_leaves)
            raise crash
        if self.fail_updates > 0 or (self.fail_when is not None and self.fail_when(message)):
            self.fail_updates = max(0, self.fail_updates - 1)
            self._record(message, "failed")
            raise BackendError(f"update failed: injected failure ({message[:60]})")
        self.cloud.apply(self._config.release)
        entry = self._record(message, "succeeded")
        return UpdateResult(entry.version, message, {"update": 1})

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        newest = list(reversed(self._history))
        return newest if limit is None else newest[:limit]

    def outputs(self) -> dict[str, Any]:
        return {OUTPUT_NAME: {name: out.to_output() for name, out in self.cloud.outputs.items()}}

    def export(self) -> dict[str, Any]:
        return {
            "version": 3,
            "deployment": {"release": {k: v.to_config() for k, v in self.cloud.applied.items()}},
        }


class FakeTraffic:
    """ELBv2 read-back from a FakeCloud."""

    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud
        self.reads = 0

    def forward_weights(self, listener_arn: str) -> dict[str, int]:
        self.reads += 1
        service, _ = self.cloud.locate(listener_arn)
        out = self.cloud.outputs[service]
        state = self.cloud.visible(service)
        if listener_arn == out.test_listener_arn:
            return {out.slot(state.idle).target_group_arn: 100}
        return {out.slot(s).target_group_arn: state.weights[s] for s in SLOTS}

    def stickiness(self, listener_arn: str) -> int | None:
        service, _ = self.cloud.locate(listener_arn)
        return self.cloud.visible(service).stickiness

    def rules(self, listener_arn: str) -> list[RuleView]:
        service, _ = self.cloud.locate(listener_arn)
        state = self.cloud.applied[service]
        if state.variants is None or listener_arn != self.cloud.outputs[service].listener_arn:
            return []
        out = self.cloud.outputs[service]
        v = state.variants
        a, b = out.slot(state.live).target_group_arn, out.slot(state.idle).target_group_arn
        return [
            RuleView(v.rule_priority, ((v.header, ("a",)),), {a: 100}),
            RuleView(v.rule_priority + 1, ((v.header, ("b",)),), {b: 100}),
            RuleView(v.rule_priority + 2, (("Cookie", (f"*{v.cookie}=a*",)),), {a: 100}),
            RuleView(v.rule_priority + 3, (("Cookie", (f"*{v.cookie}=b*",)),), {b: 100}),
        ]

    def target_health(self, target_group_arn: str) -> TargetHealth:
        service, slot = self.cloud.locate(target_group_arn)
        assert slot is not None
        state = self.cloud.applied[service].slot(slot)
        if self.cloud.behaviour(state.version).healthy:
            return TargetHealth(healthy=state.capacity)
        return TargetHealth(unhealthy=state.capacity)


class FakeFleet:
    """Auto Scaling from a FakeCloud: refreshes finish at once unless a test scripts them."""

    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud
        self.calls: list[tuple[str, str]] = []
        #: Group name -> desired capacity a scaling policy gave it (else the slot's applied capacity).
        self.sizes: dict[str, int] = {}

    def desired_capacity(self, asg_name: str) -> int | None:
        if asg_name in self.sizes:
            return self.sizes[asg_name]
        try:
            service, slot = self.cloud.locate(asg_name)
        except KeyError:
            return None
        return None if slot is None else self.cloud.applied[service].slot(slot).capacity

    def latest_refresh(self, asg_name: str) -> RefreshStatus | None:
        return self.cloud.refresh.get(asg_name)

    def cancel_refresh(self, asg_name: str) -> None:
        self.calls.append(("cancel", asg_name))
        current = self.cloud.refresh.get(asg_name)
        if current is not None:
            self.cloud.refresh[asg_name] = RefreshStatus(current.refresh_id, "Cancelled", 0, 0)

    def resume_refresh(self, asg_name: str) -> str:
        """Start the group's refresh again; like every fake refresh it finishes at once."""
        self.calls.append(("resume", asg_name))
        refresh_id = f"ir-resumed-{sum(1 for call in self.calls if call[0] == 'resume')}"
        self.cloud.refresh[asg_name] = RefreshStatus(refresh_id, "Successful", 100, 0)
        return refresh_id


class FakeMetrics:
    """A metrics provider from a FakeCloud, answering by slot: expected values, no noise, one
    period's worth per minute of the window.

    ``missing`` ticks return no data; ``errors`` raises MetricsUnavailable on the next N calls.
    Counters: ``calls`` — reads (ticks); ``queries`` — metrics asked for, four per slot in play
    and a fifth with a latency threshold (what the CloudWatch provider would request; the fake
    answers no slow counts, so the judge compares p99s).

    :meth:`read_periods` (the baseline's history before a release) has its own counter and
    failure switch, so the ticks' stay as they were: ``period_calls`` and ``period_reads`` (the
    windows asked for), ``period_errors`` raises on the next N, ``period_missing`` answers no data.
    """

    name = "fake"

    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud
        self.calls = 0
        self.queries = 0
        self.missing = 0
        self.errors = 0
        self.period_calls = 0
        self.period_reads: list[tuple[float, float, int]] = []
        self.period_errors = 0
        self.period_missing = False

    def read_periods(
        self, sources: Sequence[SlotSource], start: float, end: float, period: int
    ) -> dict[str, list[Period]]:
        """Each slot period by period over [start, end) at the traffic split it has now (the
        CloudWatch provider's per-period answer: its four queries and a p95 per slot)."""
        self.period_calls += 1
        self.period_reads.append((start, end, period))
        # the CloudWatch provider's HISTORY_QUERIES (not imported: it would load boto3)
        self.queries += (len(SLOT_METRICS) + 1) * len({source.slot for source in sources})
        if self.period_errors > 0:
            self.period_errors -= 1
            raise MetricsUnavailable("GetMetricData: Rate exceeded (injected)")
        answer: dict[str, list[Period]] = {}
        for source in sources:
            periods: list[Period] = []
            if not self.period_missing:
                for at in range(int(start), int(end), period):
                    m = self._slot(source, at, at + period)
                    if m is not None:
                        periods.append(Period(float(at), m, m.p99))
            answer[source.slot] = periods
        return answer

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        self.calls += 1
        # the slow-request count is a fifth query once the judge has a latency threshold
        unique = {source.slot: source for source in sources}.values()
        self.queries += sum(len(SLOT_METRICS) + (s.latency_threshold is not None) for s in unique)
        if self.errors > 0:
            self.errors -= 1
            raise MetricsUnavailable("GetMetricData: Rate exceeded (injected)")
        if self.missing > 0:
            self.missing -= 1
            return Readings({source.slot: None for source in sources})
        return Readings({source.slot: self._slot(source, start, end) for source in sources})

    def _slot(self, source: SlotSource, start: float, end: float) -> SlotMetrics | None:
        state = self.cloud.applied[source.service]
        slot = source.slot
        b = self.cloud.behaviour(state.slot(slot).version)
        minutes = max(1, round((end - start) / 60))
        rpm = self.cloud.requests_per_minute * state.weights[slot] / 100
        if rpm == 0:
            return None
        return aggregate(
            requests=[float(rpm * minutes)],
            errors=[float(round(rpm * minutes * b.error_rate))],
            p99=[float(b.p99)],
            cpu=[float(b.cpu)],
        )


class FakeAlarms:
    """Alarms by name; tests set ``firing_names``, and the numbers a firing alarm reports in
    ``details`` (name -> :class:`~rfs_deploy.readback.AlarmDetails`; an alarm without an entry
    reports its name and no numbers)."""

    def __init__(
        self, firing_names: Sequence[str] = (), details: Mapping[str, AlarmDetails] | None = None
    ) -> None:
        self.firing_names = set(firing_names)
        self.details: dict[str, AlarmDetails] = dict(details or {})

    def firing(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if n in self.firing_names]

    def firing_details(self, names: Sequence[str]) -> list[AlarmDetails]:
        return [
            self.details.get(n)
            or AlarmDetails(name=n, metric="", metric_names=(), threshold=None, comparison="")
            for n in self.firing(names)
        ]
