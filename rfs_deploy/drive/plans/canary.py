"""Canary: the new version on the idle slot; traffic moves in steps, each judged against the live slot."""

from __future__ import annotations

from rfs_deploy.config.base import AnalyzeStep, PauseStep, StepItem, WeightStep
from rfs_deploy.config.model import ReleaseState, ServiceConfig
from rfs_deploy.config.strategies.canary import Canary
from rfs_deploy.drive.plans.common import analysis_interval, check_start, pause_step, prepare_idle, retire_old
from rfs_deploy.drive.steps import Analyze, SetWeight, Step


def plan(service: ServiceConfig, strategy: Canary, release: ReleaseState, version: str) -> tuple[Step, ...]:
    """Deploy idle → healthy → validate → (set weight → analyze vs baseline)* → 100 % → analyze
    → promote → scale down.

    Each partial weight is held ``canaryInterval`` seconds and compared with the live slot; at
    100 % the live slot has no traffic left, so the last analysis uses thresholds only, and the
    switch drops stickiness so no client stays pinned to the old slot.

    An explicit step list (``setWeight``/``analyze``/``pause`` entries) is obeyed as written
    instead: a weight is judged only where the list says ``analyze``. When the list does not reach
    100 % the usual last two steps follow it (100 %, then ``canaryInterval`` of analysis).
    """
    check_start(service, release, version)
    prepared = prepare_idle(service, version, strategy.type)
    explicit = strategy.explicit_steps()
    if explicit is not None:
        return (*prepared, *_explicit(service, strategy, explicit), *retire_old(strategy.scale_down_delay))
    duration = strategy.canary_interval
    interval = analysis_interval(service, duration)
    steps: list[Step] = list(prepared)
    for weight in strategy.weights():
        if weight >= 100:
            break
        steps.append(SetWeight(weight=weight, stickiness=strategy.stickiness_duration))
        steps.append(Analyze(duration=duration, interval=interval, baseline=True))
    steps.append(SetWeight(weight=100))
    steps.append(Analyze(duration=duration, interval=interval, baseline=False))
    steps.extend(retire_old(strategy.scale_down_delay))
    return tuple(steps)


def _explicit(service: ServiceConfig, strategy: Canary, items: list[StepItem]) -> list[Step]:
    steps: list[Step] = []
    weight = 0
    for item in items:
        if isinstance(item, WeightStep):
            weight = item.set_weight
            stickiness = strategy.stickiness_duration if weight < 100 else None
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
        steps.append(SetWeight(weight=100))
        steps.append(
            Analyze(duration=duration, interval=analysis_interval(service, duration), baseline=False)
        )
    return steps
