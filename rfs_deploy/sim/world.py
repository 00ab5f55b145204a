"""The sandbox's physics: moto holds the resources, the world makes them behave.

Each simulated minute, for every service in the stack outputs, the world reads the production
listener's real weights and rules back from moto, sends the scenario's requests through them to
the healthy instances of each target group (moto's Auto Scaling instances, with the launch time
and version the sandbox recorded), and writes the resulting ALB and EC2 metrics to moto's
CloudWatch with the real namespaces and dimensions (from :mod:`rfs_deploy.metrics.definitions`,
the table the CloudWatch provider and the alarms read too). Between minutes it advances instance
refreshes; after each minute it evaluates the alarms.

The world ticks from the :class:`~rfs_deploy.sim.clock.VirtualClock`: the driver's sleeps are
what make time, and so traffic, pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rfs_deploy.aws.elbv2 import (
    forward_action,
    forward_targets,
    header_conditions,
    listener_of_rule,
    rule_block,
)
from rfs_deploy.metrics import definitions as metric
from rfs_deploy.outputs import ServiceOutputs
from rfs_deploy.sim.alarms import AlarmEvaluator
from rfs_deploy.sim.aws import SimulatedAws
from rfs_deploy.sim.behaviour import Conduct, conduct
from rfs_deploy.sim.clock import VirtualClock
from rfs_deploy.sim.fleet import Fleet, Instance, TemplateVersions
from rfs_deploy.sim.lag import ListenerLag, Snapshot
from rfs_deploy.sim.record import NEVER, MetricRecord, metric_key
from rfs_deploy.sim.refresh import RefreshEngine
from rfs_deploy.sim.scenario import Scenario
from rfs_deploy.sim.traffic import MinuteResult, Route, Summary, cpu_sample, simulate_minute

PERIOD = 60.0
#: Instances of the stack's first update count as launched this long ago (already warm).
WARM_AGE = 86400.0

Topology = Callable[[], Mapping[str, ServiceOutputs]]


class World:
    """Traffic, metrics, fleet behaviour and alarms over one moto, ticking with one clock."""

    def __init__(
        self, aws: SimulatedAws, clock: VirtualClock, scenario: Scenario, topology: Topology
    ) -> None:
        self.aws = aws
        self.clock = clock
        self.scenario = scenario
        self.topology = topology
        self.rng = np.random.default_rng(scenario.seed)
        #: Response times of the requests beyond each minute's first samples (traffic.serve).
        self.latency_rng = np.random.default_rng([scenario.seed, 1])
        self.templates = TemplateVersions()
        self.fleet = Fleet(aws.raw("autoscaling"), aws.raw("ec2"), self.templates)
        self.record = MetricRecord(aws.raw("cloudwatch"))
        self.alarms = AlarmEvaluator(aws.raw("cloudwatch"), self.record)
        self.refreshes = RefreshEngine(self.fleet, aws.raw("autoscaling"), self.conduct_of, self.firing)
        self.lag = ListenerLag(scenario.load_balancer.propagation_delay, self.listener_config)
        self.baseline_version: str | None = scenario.baseline_version
        self.cursor = math.floor(clock.now() / PERIOD) * PERIOD
        #: The session's first minute: the scenario's outages are timed from it.
        self.origin = self.cursor
        #: Requests per slot of the last simulated minute, for displays: {service: {tg arn: n}}.
        self.last_minute: dict[str, MinuteResult] = {}
        self._unsubscribe = clock.subscribe(self.on_tick)

    def close(self) -> None:
        self._unsubscribe()

    # ----------------------------------------------------------------- instances

    def conduct_of(self, instance: Instance, now: float) -> Conduct:
        """How ``instance`` behaves at ``now`` (scenario behaviour of its version, its age)."""
        behaviour = self.scenario.behaviour(instance.version, self.baseline_version)
        return conduct(behaviour, now - instance.launched_at, self.scenario.outage_rate(now - self.origin))

    def after_apply(self, warm: bool = False) -> None:
        """Record instances moto launched during a stack update (``warm``: as if long running)."""
        now = self.clock.now()
        self.fleet.sync(now, launched_at=now - WARM_AGE if warm else None)
        if self.baseline_version is None:
            # The version the fleet ran when the sandbox first saw it is the old one.
            versions = [i.version for i in self.fleet.instances.values() if i.version is not None]
            if versions:
                self.baseline_version = max(set(versions), key=versions.count)

    def group_targets(self) -> dict[str, list[str]]:
        """Target group ARN -> names of the Auto Scaling groups attached to it (from moto)."""
        attached: dict[str, list[str]] = {}
        for group in self.aws.raw("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]:
            for arn in group.get("TargetGroupARNs", []):
                attached.setdefault(arn, []).append(group["AutoScalingGroupName"])
        return attached

    def targets(self, target_group_arn: str, now: float | None = None) -> list[tuple[Instance, Conduct]]:
        """The target group's registered targets (its groups' instances) and their conduct."""
        now = self.clock.now() if now is None else now
        groups = self.group_targets().get(target_group_arn, [])
        return [(i, self.conduct_of(i, now)) for i in self.fleet.of_groups(groups)]

    def firing(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` in ALARM in moto (as the evaluator last set them)."""
        if not names:
            return []
        answer = self.aws.raw("cloudwatch").describe_alarms(AlarmNames=list(names))
        return [a["AlarmName"] for a in answer.get("MetricAlarms", []) if a["StateValue"] == "ALARM"]

    # ----------------------------------------------------------------- time

    def on_tick(self, start: float, end: float) -> None:
        """Clock listener: run the physics for the virtual time [start, end)."""
        simulated = False
        while self.cursor + PERIOD <= end:
            self.refreshes.tick(self.cursor + PERIOD / 2)
            self.simulate_minute(self.cursor)
            self.cursor += PERIOD
            simulated = True
        self.refreshes.tick(end)
        self.record.publish(end)
        if simulated:
            self.alarms.evaluate_all(end)
            self.refreshes.tick(end)

    def simulate_minute(self, t0: float) -> None:
        """One minute [t0, t0 + 60) of traffic for every service; datapoints stamped ``t0``."""
        topology = self.topology()
        if not topology:
            return
        attached = self.group_targets()
        middle = t0 + PERIOD / 2
        for service, out in sorted(topology.items()):
            members: dict[str, list[Conduct]] = {}
            cpu: dict[str, list[Conduct]] = {}
            for slot in out.slots.values():
                cpu[slot.asg_name] = [self.conduct_of(i, middle) for i in self.fleet.of_group(slot.asg_name)]
                for asg in attached.get(slot.target_group_arn, []):
                    conducts = [self.conduct_of(i, middle) for i in self.fleet.of_group(asg)]
                    members.setdefault(slot.target_group_arn, []).extend(conducts)
            result = simulate_minute(
                self.rng,
                self._requests(),
                self.routes(out.traffic_arn),
                members,
                self.scenario.error_bursts,
                self.scenario.baseline.error_rate,
                self.latency_rng,
            )
            self.last_minute[service] = result
            self._record_minute(t0, out, result, cpu)

    def _requests(self) -> int:
        traffic = self.scenario.traffic
        drawn = self.rng.normal(traffic.requests_per_minute, traffic.requests_per_minute * traffic.noise)
        return max(0, round(float(drawn)))

    def listener_config(self, listener_arn: str) -> Snapshot:
        """The listener's default actions and rules as moto holds them now."""
        elbv2 = self.aws.raw("elbv2")
        listener = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
        rules = elbv2.describe_rules(ListenerArn=listener_arn)["Rules"]
        return {"DefaultActions": list(listener.get("DefaultActions", [])), "Rules": list(rules)}

    def visible_listener(self, listener_arn: str) -> Snapshot:
        """What readers and routing see now: a stale configuration while a change propagates."""
        stale = self.lag.visible(listener_arn, self.clock.now())
        return stale if stale is not None else self.listener_config(listener_arn)

    def routes(self, listener_arn: str) -> list[Route]:
        """How the listener splits requests: header rules take the forced share, the default the rest.

        For a listener rule ARN (a service behind a shared load balancer) the service's requests
        are those its rule matches: the rule's forward is the default, and its header rules are
        the rules of its priority block above it."""
        shared = listener_of_rule(listener_arn)
        config = self.visible_listener(shared or listener_arn)
        candidates: list[Mapping[str, Any]] = [r for r in config["Rules"] if not r.get("IsDefault")]
        if shared is None:
            default = forward_targets(forward_action(config["DefaultActions"]))
        else:
            own, candidates = rule_block(candidates, listener_arn)
            # a rule still propagating is not there yet: the service's requests meet the 404
            default = forward_targets(forward_action(own.get("Actions", []))) if own else {}
        rules = [r for r in candidates if header_conditions(r.get("Conditions", []))]
        forced = self.scenario.traffic.forced_share if rules else 0.0
        routes = [Route(1.0 - forced, default)]
        routes += [
            Route(forced / len(rules), forward_targets(forward_action(r.get("Actions", [])))) for r in rules
        ]
        return routes

    # ----------------------------------------------------------------- metrics

    def _visible_at(self, t0: float) -> float:
        flaky = self.scenario.metrics
        draw = float(self.rng.random())
        if draw < flaky.missing:
            return NEVER
        if draw < flaky.missing + flaky.delayed:
            return t0 + PERIOD + flaky.delay
        return t0 + PERIOD

    def _add(
        self,
        definition: metric.MetricDefinition,
        dims: Sequence[tuple[str, str]],
        t0: float,
        summary: Summary,
        visible: float,
    ) -> None:
        key = metric_key(definition.namespace, definition.name, dims)
        self.record.add(key, t0, summary, visible, definition.unit)

    def _record_minute(
        self, t0: float, out: ServiceOutputs, result: MinuteResult, cpu: Mapping[str, Sequence[Conduct]]
    ) -> None:
        lb = out.load_balancer_dimension
        served = errors = 0
        for slot in out.slots.values():
            group = result.groups.get(slot.target_group_arn)
            if group is None:
                continue
            served += group.requests
            errors += group.errors
            dims = metric.REQUESTS.dimension_pairs(target_group=slot.target_group_dimension, load_balancer=lb)
            visible = self._visible_at(t0)
            self._add(metric.REQUESTS, dims, t0, _count(group.requests), visible)
            self._add(metric.ERRORS, dims, t0, _count(group.errors), visible)
            self._add(metric.HEALTHY_HOSTS, dims, t0, _count(group.healthy), visible)
            self._add(metric.UNHEALTHY_HOSTS, dims, t0, _count(group.unhealthy), visible)
            if group.latency is not None:
                self._add(metric.P99, dims, t0, group.latency, visible)
        visible = self._visible_at(t0)
        whole = metric.LB_REQUESTS.dimension_pairs(load_balancer=lb)
        self._add(metric.LB_REQUESTS, whole, t0, _count(served + result.elb_errors), visible)
        self._add(metric.LB_ERRORS, whole, t0, _count(errors), visible)
        self._add(metric.LB_ELB_ERRORS, whole, t0, _count(result.elb_errors), visible)
        for asg, conducts in cpu.items():
            sample = cpu_sample(self.rng, conducts)
            if sample is not None:
                self._add(metric.CPU, metric.CPU.dimension_pairs(asg=asg), t0, sample, self._visible_at(t0))

    # ----------------------------------------------------------------- persistence

    def to_json(self) -> dict[str, Any]:
        """Everything moto does not hold: instance records, refreshes, metrics, randomness."""
        return {
            "now": self.clock.now(),
            "cursor": self.cursor,
            "origin": self.origin,
            "baselineVersion": self.baseline_version,
            "rng": self.rng.bit_generator.state,
            "latencyRng": self.latency_rng.bit_generator.state,
            "templates": self.templates.to_json(),
            "instances": [i.to_json() for i in self.fleet.instances.values()],
            "refreshes": self.refreshes.to_json(),
            "metrics": self.record.to_json(),
            "listenerLag": self.lag.to_json(),
        }

    def load_json(self, data: Mapping[str, Any]) -> list[Instance]:
        """Restore from :meth:`to_json`; returns the recorded instances for :meth:`Fleet.adopt`."""
        self.clock.set(max(self.clock.now(), float(data["now"])))
        self.cursor = float(data["cursor"])
        self.origin = float(data.get("origin", self.cursor))
        self.baseline_version = data.get("baselineVersion") or self.baseline_version
        self.rng.bit_generator.state = data["rng"]
        if "latencyRng" in data:  # (sessions saved before it was kept start it afresh)
            self.latency_rng.bit_generator.state = data["latencyRng"]
        self.templates.load_json(data.get("templates", {}))
        self.refreshes.load_json(data.get("refreshes", {}))
        self.record.load_json(data.get("metrics", []))
        self.lag.load_json(data.get("listenerLag", {}))
        return [Instance.from_json(i) for i in data.get("instances", [])]


def _count(n: int | float) -> Summary:
    return Summary(count=1.0, sum=float(n), minimum=float(n), maximum=float(n), p99=float(n))
