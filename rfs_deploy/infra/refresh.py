"""Instance refresh preferences derived from the rolling settings: a pure mapping.

Every slot's Auto Scaling group carries an ``instance_refresh`` block. AWS starts a refresh when
the group's launch template version changes, which happens in two situations:

- a **rolling release** changes the live slot's version in place: the refresh *is* the release;
- a slot whose version changes while it is scaled from 0 (blue-green, canary, A/B deploying the
  idle slot): the new instances already run the new template, and ``skip_matching`` makes the
  refresh a no-op.

So one mapping serves every strategy. The rolling settings in force are, in order: the release
state's ``rolling`` (a rolling release chosen per deployment), the service's strategy when it is
:class:`~rfs_deploy.config.Rolling`, else Rolling's defaults.

The mapping (``n`` = the service's ``instanceCount``, ``b`` = ``min(batchSize, n)``):

=========================  ===============================================================
preference                 value
=========================  ===============================================================
min_healthy_percentage     ``floor(100 * (n - b) / n)``: at most ``b`` instances are out of
                           service at a time, so AWS replaces one batch per step
max_healthy_percentage     100: old instances go before new ones start (the seed's batches)
checkpoint_percentages     ``floor(100 * k * b / n)`` for k = 1, 2, ... (deduplicated, at
                           least 1, ending at 100): a pause after every batch
checkpoint_delay           ``batchInterval`` seconds (the pause between batches)
instance_warmup            ``instanceWarmup`` or else the group's health check grace period
skip_matching              true: instances already on the desired template stay
auto_rollback              the service's ``deploy.autoRollback``, while a rolling release runs
alarm_specification        the slot's 5xx-rate and p99-latency alarms, while a rolling release runs
=========================  ===============================================================

The alarms guard the *forward* refresh of a rolling release only (the release state's
``rolling`` is set from the release's first update until its last). The refresh that takes a
slot back to its checkpoint must not be guarded by them: they are still firing from the bad
version, and AWS would stop — or roll back — the refresh that repairs it.

``floor`` for the checkpoints, because AWS pauses once the replaced share *reaches* the
checkpoint: with 3 instances and batches of 1 the first batch is 33.3 %, so the checkpoint is 33.
The CPU alarm is left out of the alarm specification: it watches the Auto Scaling group itself,
so naming it would make the group depend on an alarm that depends on the group; and CPU is
expected to run high while new instances boot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from rfs_deploy.config.model import ReleaseState, Rolling, Strategy


@dataclass(frozen=True)
class RefreshPreferences:
    """The ``instance_refresh.preferences`` of one Auto Scaling group, in plain numbers."""

    min_healthy_percentage: int
    max_healthy_percentage: int
    checkpoint_percentages: tuple[int, ...]
    checkpoint_delay: int
    instance_warmup: int
    skip_matching: bool
    auto_rollback: bool
    #: Whether the slot's alarms stop (and, with auto_rollback, undo) the refresh.
    guarded: bool = True

    def to_args(
        self, alarm_names: Sequence[pulumi.Input[str]]
    ) -> aws.autoscaling.GroupInstanceRefreshPreferencesArgs:
        """The provider's preferences block, with the alarms that stop (and roll back) a refresh.

        ``checkpoint_delay`` and ``instance_warmup`` are strings in the provider's schema.
        """
        return aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
            min_healthy_percentage=self.min_healthy_percentage,
            max_healthy_percentage=self.max_healthy_percentage,
            checkpoint_percentages=list(self.checkpoint_percentages),
            checkpoint_delay=str(self.checkpoint_delay),
            instance_warmup=str(self.instance_warmup),
            skip_matching=self.skip_matching,
            auto_rollback=self.auto_rollback,
            alarm_specification=(
                aws.autoscaling.GroupInstanceRefreshPreferencesAlarmSpecificationArgs(
                    alarms=list(alarm_names)
                )
                if self.guarded
                else None
            ),
        )


def rolling_settings(strategy: Strategy, release: ReleaseState) -> Rolling:
    """The rolling settings in force for a service (see the module docstring for the order)."""
    if release.rolling is not None:
        return release.rolling
    if isinstance(strategy, Rolling):
        return strategy
    return Rolling()


def refresh_preferences(
    rolling: Rolling,
    *,
    instance_count: int,
    grace_period: int,
    auto_rollback: bool = True,
    guarded: bool = True,
) -> RefreshPreferences:
    """Map rolling settings and the fleet size to instance refresh preferences.

    ``guarded`` (a rolling release is in progress) attaches the alarms and AWS's auto rollback.
    """
    count = max(instance_count, 1)
    batch = rolling.batch(instance_count)
    return RefreshPreferences(
        min_healthy_percentage=100 * (count - batch) // count,
        max_healthy_percentage=100,
        checkpoint_percentages=checkpoints(count, batch),
        checkpoint_delay=rolling.batch_interval,
        instance_warmup=rolling.warmup(grace_period),
        skip_matching=True,
        auto_rollback=auto_rollback and guarded,
        guarded=guarded,
    )


def checkpoints(count: int, batch: int) -> tuple[int, ...]:
    """Percentages of ``count`` instances replaced after each batch of ``batch``, ending at 100."""
    points: list[int] = []
    replaced = 0
    while replaced < count:
        replaced = min(replaced + batch, count)
        pct = max(1, 100 * replaced // count)
        if not points or pct > points[-1]:
            points.append(pct)
    return tuple(points)
