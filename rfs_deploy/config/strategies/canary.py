"""Canary settings: traffic moves to the new version in steps, each judged against the live slot."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import Field, field_validator

from rfs_deploy.config.base import MAX_DURATION, Duration, Int
from rfs_deploy.config.strategies import StrategyInfo, StrategySettings


class Canary(StrategySettings):
    """New version on the idle slot; traffic moves in steps, judged at every step."""

    type: Literal["canary"] = "canary"
    canary_percentage: Int = Field(default=10, ge=1, le=100)
    canary_increment: Int = Field(default=10, ge=1, le=100)
    canary_interval: Duration = Field(default=60, ge=1, le=MAX_DURATION)
    #: Explicit weights for the new slot, ascending, e.g. [5, 25, 50]; 100 is added at the end.
    steps: list[Annotated[Int, Field(ge=1, le=100)]] | None = Field(default=None, max_length=100)
    #: Keep a client on one slot for this many seconds (ALB target group stickiness).
    stickiness_duration: Duration | None = Field(default=None, ge=1, le=604800)
    scale_down_delay: Duration = Field(default=0, ge=0, le=MAX_DURATION)

    @field_validator("steps")
    @classmethod
    def _ascending(cls, steps: list[int] | None) -> list[int] | None:
        if steps is not None and any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must be strictly ascending")
        return steps

    def weights(self) -> list[int]:
        """The new slot's weight at each step, ending at 100."""
        if self.steps is not None:
            ws = list(self.steps)
        else:
            ws = list(range(self.canary_percentage, 100, self.canary_increment))
        if not ws or ws[-1] != 100:
            ws.append(100)
        return ws


STRATEGY = StrategyInfo(
    name="canary",
    settings=Canary,
    description="traffic moves to the new version in steps, each judged against the live slot",
    order=20,
    probe=True,
    baseline=True,
    seed_name="CANARY",
    seed_fields={
        "canary_percentage": "canary_percentage",
        "canary_increment": "canary_increment",
        "canary_interval": "canary_interval",
    },
)
