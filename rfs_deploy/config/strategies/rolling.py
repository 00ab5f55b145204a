"""Rolling settings: the live slot refreshed in place by an Auto Scaling instance refresh.

The batch arithmetic lives here, once: the program's instance refresh preferences
(:mod:`rfs_deploy.infra.refresh`) and the plan's expected refresh time
(:func:`rfs_deploy.drive.plans.common.refresh_duration`) both ask these methods.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from rfs_deploy.config.base import MAX_DURATION, Duration, Int
from rfs_deploy.config.strategies import StrategyInfo, StrategySettings


class Rolling(StrategySettings):
    """Refresh the live slot in place with an Auto Scaling instance refresh."""

    type: Literal["rolling"] = "rolling"
    batch_size: Int = Field(default=2, ge=1, le=1000)
    #: The instance refresh's checkpoint delay (AWS allows at most two days).
    batch_interval: Duration = Field(default=30, ge=0, le=172_800)
    #: Seconds a new instance gets before it counts; defaults to the health check grace.
    instance_warmup: Duration | None = Field(default=None, ge=0, le=MAX_DURATION)

    def batch(self, instance_count: int) -> int:
        """Instances replaced at a time in a fleet of ``instance_count`` (at least one fleet of 1)."""
        return min(self.batch_size, max(instance_count, 1))

    def batches(self, instance_count: int) -> int:
        """Batches one refresh of ``instance_count`` instances takes."""
        return math.ceil(max(instance_count, 1) / self.batch(instance_count))

    def warmup(self, grace_period: int) -> int:
        """Seconds a new instance gets: ``instanceWarmup``, else the group's health check grace."""
        return self.instance_warmup if self.instance_warmup is not None else grace_period


STRATEGY = StrategyInfo(
    name="rolling",
    settings=Rolling,
    description="the live slot refreshed in place, batch by batch, by an instance refresh",
    order=30,
    probe=False,
    baseline=False,
    seed_name="ROLLING",
    seed_fields={"batch_size": "batch_size", "batch_interval": "batch_interval"},
)
