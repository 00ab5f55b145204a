"""A/B test: both slots live, users split by weight with stickiness; decide, then promote."""

from __future__ import annotations

from rfs_deploy.config.model import ReleaseState, ServiceConfig
from rfs_deploy.config.strategies.ab_test import ABTest
from rfs_deploy.drive.plans.common import (
    analysis_interval,
    check_start,
    pause_steps,
    prepare_idle,
    retire_old,
)
from rfs_deploy.drive.steps import Decide, StartVariants, Step


def plan(service: ServiceConfig, strategy: ABTest, release: ReleaseState, version: str) -> tuple[Step, ...]:
    """Deploy idle → healthy → validate → start variants → decide → promote → scale down.

    B (the new version, on the idle slot) gets ``split`` percent of users. The plan is written
    for B winning; when :func:`rfs_deploy.drive.ab.decide_ab` keeps A (or B is past the hard
    limit before the test's duration is up), the runner rolls back to the checkpoint before the
    variants started instead of promoting. A test too thin to decide ends as
    ``analysis.onInconclusive`` says: ``pause`` holds after the decide step with both variants
    live, and ``promote`` goes on to promote B.

    A step list (pauses only) holds after the decision, before promotion, with both variants
    still live: ``{pause: {}}`` lets a person confirm B's promotion.
    """
    check_start(service, release, version)
    return (
        *prepare_idle(service, version, strategy.type, release=release),
        StartVariants(
            split=strategy.split,
            stickiness=strategy.stickiness_duration,
            header=strategy.header,
            cookie=strategy.cookie,
            rule_priority=strategy.rule_priority,
        ),
        Decide(duration=strategy.duration, interval=analysis_interval(service, strategy.duration)),
        *pause_steps(strategy.steps, "B won, before promotion"),
        *retire_old(0),
    )
