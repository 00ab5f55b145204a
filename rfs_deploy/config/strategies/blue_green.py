"""Blue-green settings: the new version on the idle slot, validated, then all traffic in one switch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from rfs_deploy.config.base import MAX_DURATION, Duration, PauseStep, parse_steps
from rfs_deploy.config.strategies import StrategyInfo, StrategySettings


class BlueGreen(StrategySettings):
    """New version on the idle slot, validated through the test listener, one switch."""

    type: Literal["blue-green"] = "blue-green"
    switch_delay: Duration = Field(default=60, ge=0, le=MAX_DURATION)
    validation_duration: Duration = Field(default=300, ge=0, le=MAX_DURATION)
    #: How long the old slot stays up (at zero traffic) after the switch before scale-down.
    scale_down_delay: Duration = Field(default=300, ge=0, le=MAX_DURATION)
    #: Pauses before the switch, after validation (``{pause: 2m}``, ``{pause: {}}`` = until promoted).
    steps: list[PauseStep] | None = Field(default=None, max_length=100)

    @field_validator("steps", mode="before")
    @classmethod
    def _step_list(cls, steps: Any) -> Any:
        return parse_steps(steps, ("pause",))


STRATEGY = StrategyInfo(
    name="blue-green",
    settings=BlueGreen,
    description="the new version on the idle slot, validated and probed, then all traffic in one switch",
    order=10,
    probe=True,
    baseline=False,
    seed_name="BLUE_GREEN",
    seed_fields={"switch_delay": "switch_delay", "validation_duration": "validation_duration"},
)
