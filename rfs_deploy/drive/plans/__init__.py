"""Plans: the ordered, pure list of steps that takes one service from its release state to a version.

``plan(service, strategy, release, version)`` picks the strategy's module (one per strategy, as in
Argo Rollouts). A plan refuses a bad starting point with :class:`~rfs_deploy.errors.InvalidInput`
before anything changes. :func:`replay` applies a plan's changes to a release state without
touching the world — the release state the stack will hold once the plan has run (or has run up
to a step), which is also how the tests prove every plan keeps the release state valid.
"""

from __future__ import annotations

from collections.abc import Iterable

from rfs_deploy.config.model import (
    ABTest,
    BlueGreen,
    Canary,
    ReleaseState,
    Rolling,
    ServiceConfig,
    SlotName,
    Strategy,
)
from rfs_deploy.drive.plans import ab_test, blue_green, canary, rolling
from rfs_deploy.drive.plans.common import check_start
from rfs_deploy.drive.steps import Change, Step

__all__ = ["analyzed_slot", "check_start", "describe", "plan", "replay"]


def plan(service: ServiceConfig, strategy: Strategy, release: ReleaseState, version: str) -> tuple[Step, ...]:
    """The steps that release ``version`` of ``service`` from ``release`` with ``strategy``."""
    if isinstance(strategy, BlueGreen):
        return blue_green.plan(service, strategy, release, version)
    if isinstance(strategy, Canary):
        return canary.plan(service, strategy, release, version)
    if isinstance(strategy, Rolling):
        return rolling.plan(service, strategy, release, version)
    if isinstance(strategy, ABTest):
        return ab_test.plan(service, strategy, release, version)
    raise TypeError(f"no plan for strategy {strategy!r}")


def replay(release: ReleaseState, steps: Iterable[Step]) -> ReleaseState:
    """Apply every change step of ``steps`` in order (observations change nothing)."""
    for step in steps:
        if isinstance(step, Change):
            release = step.apply(release)
    return release


def describe(steps: Iterable[Step]) -> list[str]:
    """One numbered line per step, for ``rfs-deploy plan``."""
    return [f"{index:2d}. {step.describe()}" for index, step in enumerate(steps, start=1)]


def analyzed_slot(release: ReleaseState) -> SlotName:
    """The slot an Analyze or Decide step judges, given the release state the plan has reached.

    The idle slot while it carries traffic (canary steps, blue-green after the switch, variant B
    of an A/B test); otherwise the live slot (rolling refreshes the live slot in place). The
    baseline, when a step compares, is always the live slot.
    """
    return release.idle if release.weights[release.idle] > 0 else release.live
