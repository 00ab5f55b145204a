"""Canary: the new version on the idle slot; traffic moves in steps, each judged against the live slot."""

from __future__ import annotations

from rfs_deploy.config.model import ReleaseState, ServiceConfig
from rfs_deploy.config.strategies.canary import Canary
from rfs_deploy.drive.plans.common import analysis_interval, check_start, prepare_idle, retire_old
from rfs_deploy.drive.steps import Analyze, SetWeight, Step


def plan(service: ServiceConfig, strategy: Canary, release: ReleaseState, version: str) -> tuple[Step, ...]:
    """Deploy idle → healthy → validate → (set weight → analyze vs baseline)* → 100 % → analyze
    → promote → scale down.

    Each partial weight is held ``canaryInterval`` seconds and compared with the live slot; at
    100 % the live slot has no traffic left, so the last analysis uses thresholds only, and the
    switch drops stickiness so no client stays pinned to the old slot.
    """
    check_start(service, release, version)
    duration = strategy.canary_interval
    interval = analysis_interval(service, duration)
    steps: list[Step] = list(prepare_idle(service, version, strategy.type))
    for weight in strategy.weights():
        if weight >= 100:
            break
        steps.append(SetWeight(weight=weight, stickiness=strategy.stickiness_duration))
        steps.append(Analyze(duration=duration, interval=interval, baseline=True))
    steps.append(SetWeight(weight=100))
    steps.append(Analyze(duration=duration, interval=interval, baseline=False))
    steps.extend(retire_old(strategy.scale_down_delay))
    return tuple(steps)
