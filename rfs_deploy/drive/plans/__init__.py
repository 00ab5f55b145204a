"""Plans: the ordered, pure list of steps that takes one service from its release state to a version.

``plan(service, strategy, release, version)`` picks the strategy's module (one per strategy, as in
Argo Rollouts): ``rfs_deploy.drive.plans.<name>`` of every strategy in the registry
(:mod:`rfs_deploy.config.strategies`), found by name, so a new strategy is its settings module
and its plan module. A plan refuses a bad starting point with :class:`~rfs_deploy.errors.InvalidInput`
before anything changes. :func:`replay` applies a plan's changes to a release state without
touching the world — the release state the stack will hold once the plan has run (or has run up
to a step), which is also how the tests prove every plan keeps the release state valid.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from rfs_deploy.config.model import ReleaseState, ServiceConfig, Strategy
from rfs_deploy.config.strategies import STRATEGIES
from rfs_deploy.drive.plans.common import check_start
from rfs_deploy.drive.steps import (
    Analyze,
    Change,
    Decide,
    Gate,
    Pause,
    ScaleIdle,
    Step,
    WaitHealthy,
    WatchRefresh,
)

__all__ = ["PLANS", "PlanFunction", "check_start", "describe", "plan", "planned_seconds", "replay"]

#: ``plan(service, settings, release, version)`` of one strategy; ``settings`` is its own model.
PlanFunction = Callable[[ServiceConfig, Any, ReleaseState, str], tuple[Step, ...]]


def _plan_of(module: str) -> PlanFunction:
    found: PlanFunction = importlib.import_module(f"{__name__}.{module}").plan
    return found


#: Strategy name -> its plan, from ``rfs_deploy.drive.plans.<module>`` of every registered strategy.
PLANS: Mapping[str, PlanFunction] = MappingProxyType(
    {info.name: _plan_of(info.module) for info in STRATEGIES}
)


def plan(service: ServiceConfig, strategy: Strategy, release: ReleaseState, version: str) -> tuple[Step, ...]:
    """The steps that release ``version`` of ``service`` from ``release`` with ``strategy``."""
    try:
        chosen = PLANS[strategy.type]
    except KeyError:
        raise TypeError(f"no plan for strategy {strategy!r}") from None
    return chosen(service, strategy, release, version)


def replay(release: ReleaseState, steps: Iterable[Step]) -> ReleaseState:
    """Apply every change step of ``steps`` in order (observations change nothing)."""
    for step in steps:
        if isinstance(step, Change):
            release = step.apply(release)
    return release


def describe(steps: Iterable[Step]) -> list[str]:
    """One numbered line per step, for ``rfs-deploy plan``."""
    return [f"{index:2d}. {step.describe()}" for index, step in enumerate(steps, start=1)]


#: The seconds each kind of step schedules for itself; a step not named schedules none (its
#: time is a timeout, an allowance, not a plan).
_SCHEDULED: Mapping[type[Step], Callable[[Any], float]] = MappingProxyType(
    {
        Analyze: lambda step: step.duration,
        Decide: lambda step: step.duration,
        Pause: lambda step: step.seconds,
        # A gate waits for a person, not for the clock: it schedules nothing.
        Gate: lambda step: 0,
        WaitHealthy: lambda step: step.warmup,
        ScaleIdle: lambda step: step.warmup,
        WatchRefresh: lambda step: step.expected,
    }
)


def planned_seconds(steps: Iterable[Step]) -> float:
    """The time a plan schedules for itself (bakes, intervals, delays, warm-up, A/B duration,
    the instance refresh's expected duration). Health waits, a canary's scale steps included,
    schedule only their warm-up: booting is what the budget's overrun allows for."""
    return float(sum(_SCHEDULED.get(type(step), lambda _: 0)(step) for step in steps))
