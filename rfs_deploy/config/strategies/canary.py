"""Canary settings: traffic moves to the new version in steps, each judged against the live slot."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from rfs_deploy.config.base import (
    MAX_DURATION,
    AnalyzeStep,
    Duration,
    Int,
    PauseStep,
    StepItem,
    WeightStep,
    parse_steps,
)
from rfs_deploy.config.strategies import StrategyInfo, StrategySettings

#: The step kinds a canary's step list may hold.
CANARY_STEPS = ("setWeight", "analyze", "pause")


class Canary(StrategySettings):
    """New version on the idle slot; traffic moves in steps, judged at every step."""

    type: Literal["canary"] = "canary"
    canary_percentage: Int = Field(default=10, ge=1, le=100)
    canary_increment: Int = Field(default=10, ge=1, le=100)
    canary_interval: Duration = Field(default=60, ge=1, le=MAX_DURATION)
    #: Explicit weights for the new slot, ascending, e.g. [5, 25, 50], each judged for
    #: ``canaryInterval``; or an explicit step list (``{setWeight: 10}``, ``{analyze: 5m}``,
    #: ``{pause: 2m}``, ``{pause: {}}``) obeyed as written. 100 is added at the end when missing.
    steps: list[Annotated[Int, Field(ge=1, le=100)]] | list[StepItem] | None = Field(
        default=None, max_length=100
    )
    #: Keep a client on one slot for this many seconds (ALB target group stickiness).
    stickiness_duration: Duration | None = Field(default=None, ge=1, le=604800)
    scale_down_delay: Duration = Field(default=0, ge=0, le=MAX_DURATION)
    #: The fewest instances the idle slot runs while it takes part of the traffic: it starts at
    #: its first weight's share of ``instanceCount`` (rounded up), never below this, and grows
    #: with the weight (at most ``instanceCount``). Unset: 1 for a service without ``warmup``, the
    #: whole fleet for one with (an instance added to a slot that serves takes its share of the
    #: traffic while still cold; docs/sizing.md).
    canary_min_capacity: Int | None = Field(default=None, ge=1, le=1000)

    @field_validator("steps", mode="before")
    @classmethod
    def _step_list(cls, steps: Any) -> Any:
        return parse_steps(steps, CANARY_STEPS)

    @field_validator("steps")
    @classmethod
    def _ascending(cls, steps: list[int] | list[StepItem] | None) -> list[int] | list[StepItem] | None:
        weights = [s for s in steps or () if isinstance(s, int)]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError("steps must be strictly ascending")
        return steps

    def explicit_steps(self) -> list[StepItem] | None:
        """The step list as written, when ``steps`` is one (None for weights alone or no steps)."""
        if not self.steps or all(isinstance(s, int) for s in self.steps):
            return None
        return [s for s in self.steps if isinstance(s, (WeightStep, AnalyzeStep, PauseStep))]

    def capacity_for(self, weight: int, instance_count: int, warmup: int = 0) -> int:
        """Instances the idle slot needs to carry ``weight`` percent of ``instance_count``'s
        traffic: the share rounded up, at least ``canaryMinCapacity``, at most the full count. A
        service that warms up for ``warmup`` seconds runs the full count unless
        ``canaryMinCapacity`` says otherwise."""
        share = -(-weight * instance_count // 100)
        minimum = self.canary_min_capacity
        if minimum is None:
            minimum = instance_count if warmup > 0 else 1
        return min(instance_count, max(minimum, share))

    def weights(self) -> list[int]:
        """The new slot's weight at each step, ending at 100."""
        explicit = self.explicit_steps()
        if explicit is not None:
            ws = [s.set_weight for s in explicit if isinstance(s, WeightStep)]
        elif self.steps is not None:
            ws = [s for s in self.steps if isinstance(s, int)]
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
