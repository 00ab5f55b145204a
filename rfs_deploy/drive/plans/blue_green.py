"""Blue-green: the new version on the idle slot, validated, then all traffic in one switch."""

from __future__ import annotations

from rfs_deploy.config.model import ReleaseState, ServiceConfig
from rfs_deploy.config.strategies.blue_green import BlueGreen
from rfs_deploy.drive.plans.common import (
    analysis_interval,
    check_start,
    pause_steps,
    prepare_idle,
    retire_old,
)
from rfs_deploy.drive.steps import Analyze, Pause, SetWeight, Step


def plan(
    service: ServiceConfig, strategy: BlueGreen, release: ReleaseState, version: str
) -> tuple[Step, ...]:
    """Deploy idle → healthy → validate and probe → switch delay → switch → bake → promote → scale down.

    The validate step also runs the load probe (``validation.probe``): the switch moves every
    user at once, so the new slot is judged under load through the test listener before it.

    A step list (pauses only) holds after validation, before the switch delay: ``{pause: {}}``
    waits there until the deployment is promoted.

    The bake (``validationDuration``) judges the new slot alone: after the switch the old slot has
    no traffic to compare with. A zero switch delay or validation duration drops that step.
    """
    check_start(service, release, version)
    steps: list[Step] = list(prepare_idle(service, version, strategy.type, release=release))
    steps.extend(pause_steps(strategy.steps, "before the switch"))
    if strategy.switch_delay > 0:
        steps.append(Pause(seconds=strategy.switch_delay, reason="switch delay"))
    steps.append(SetWeight(weight=100))
    if strategy.validation_duration > 0:
        duration = strategy.validation_duration
        steps.append(
            Analyze(duration=duration, interval=analysis_interval(service, duration), baseline=False)
        )
    steps.extend(retire_old(strategy.scale_down_delay))
    return tuple(steps)
