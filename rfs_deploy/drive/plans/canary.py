"""Canary: the new version on the idle slot; traffic moves in steps, each judged against the live slot."""

from __future__ import annotations

from rfs_deploy.config.base import AnalyzeStep, PauseStep, StepItem, WeightStep
from rfs_deploy.config.model import ReleaseState, ServiceConfig
from rfs_deploy.config.strategies.canary import Canary
from rfs_deploy.drive.plans.common import (
    analysis_interval,
    check_start,
    pause_step,
    prepare_idle,
    retire_old,
    wait_healthy_timeout,
)
from rfs_deploy.drive.steps import Analyze, ScaleIdle, SetWeight, Step


def plan(service: ServiceConfig, strategy: Canary, release: ReleaseState, version: str) -> tuple[Step, ...]:
    """Deploy idle → healthy → validate → (scale → set weight → analyze vs baseline)* → full size
    → 100 % → analyze → promote → scale down.

    The idle slot is sized for the traffic it takes: it starts at its first weight's share of
    ``instanceCount`` (at least ``canaryMinCapacity``), and before a weight that needs more
    instances a scale step grows it and waits until the new instances are healthy, so the weight
    only moves to capacity that is already serving; it is at full size before 100 %. A scale step
    grows the slot to twice the weight's share (at most the full size), so a canary of ten weights
    waits for new instances two or three times, not ten: each wait is a boot and a health check.

    Each partial weight is held ``canaryInterval`` seconds and compared with the live slot; at
    100 % the live slot has no traffic left, so the last analysis uses thresholds only, and the
    switch drops stickiness so no client stays pinned to the old slot.

    An explicit step list (``setWeight``/``analyze``/``pause`` entries) is obeyed as written
    instead: a weight is judged only where the list says ``analyze``. When the list does not reach
    100 % the usual last two steps follow it (100 %, then ``canaryInterval`` of analysis).
    """
    check_start(service, release, version)
    sizer = _Sizer(service, strategy)
    prepared = prepare_idle(service, version, strategy.type, capacity=sizer.capacity, release=release)
    explicit = strategy.explicit_steps()
    if explicit is not None:
        return (
            *prepared,
            *_explicit(service, strategy, explicit, sizer),
            *retire_old(strategy.scale_down_delay),
        )
    duration = strategy.canary_interval
    interval = analysis_interval(service, duration)
    steps: list[Step] = list(prepared)
    for weight in strategy.weights():
        if weight >= 100:
            break
        steps.extend(sizer.grow_for(weight))
        steps.append(SetWeight(weight=weight, stickiness=strategy.stickiness_duration))
        steps.append(Analyze(duration=duration, interval=interval, baseline=True))
    steps.extend(sizer.grow_for(100))
    steps.append(SetWeight(weight=100))
    steps.append(Analyze(duration=duration, interval=interval, baseline=False))
    steps.extend(retire_old(strategy.scale_down_delay))
    return tuple(steps)


class _Sizer:
    """The idle slot's capacity along the plan: it only grows, step by step with the weight."""

    def __init__(self, service: ServiceConfig, strategy: Canary) -> None:
        self._service = service
        self._strategy = strategy
        self.capacity = strategy.capacity_for(strategy.weights()[0], service.instance_count, service.warmup)

    def grow_for(self, weight: int) -> tuple[Step, ...]:
        """A scale step when ``weight`` needs more instances than the slot has, else nothing.

        It grows the slot to the capacity of twice ``weight`` (the headroom for the next weights).
        """
        service = self._service
        count, warmup = service.instance_count, service.warmup
        if self._strategy.capacity_for(weight, count, warmup) <= self.capacity:
            return ()
        self.capacity = self._strategy.capacity_for(min(100, 2 * weight), count, warmup)
        return (
            ScaleIdle(
                capacity=self.capacity,
                weight=weight,
                timeout=wait_healthy_timeout(service),
                # A service that warms up only gets here when canaryMinCapacity asks for a small
                # slot: the added instances take the current weight's share while cold, but the
                # next weight is judged only once they are warm.
                warmup=warmup,
            ),
        )


def _explicit(service: ServiceConfig, strategy: Canary, items: list[StepItem], sizer: _Sizer) -> list[Step]:
    steps: list[Step] = []
    weight = 0
    for item in items:
        if isinstance(item, WeightStep):
            weight = item.set_weight
            stickiness = strategy.stickiness_duration if weight < 100 else None
            steps.extend(sizer.grow_for(weight))
            steps.append(SetWeight(weight=weight, stickiness=stickiness))
        elif isinstance(item, AnalyzeStep):
            duration = item.duration if item.duration is not None else strategy.canary_interval
            interval = item.interval if item.interval is not None else analysis_interval(service, duration)
            # At 100 % the live slot has no traffic left to compare with: thresholds only.
            steps.append(Analyze(duration=duration, interval=min(interval, duration), baseline=weight < 100))
        elif isinstance(item, PauseStep):
            steps.append(pause_step(item, f"canary at {weight} %" if weight else "canary before any traffic"))
    if weight < 100:
        duration = strategy.canary_interval
        steps.extend(sizer.grow_for(100))
        steps.append(SetWeight(weight=100))
        steps.append(
            Analyze(duration=duration, interval=analysis_interval(service, duration), baseline=False)
        )
    return steps
