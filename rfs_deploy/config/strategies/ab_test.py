"""A/B test settings: both slots live, users split by weight with stickiness, then a decision."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from rfs_deploy.config.base import MAX_DURATION, Duration, Int, PauseStep, parse_steps
from rfs_deploy.config.strategies import StrategyInfo, StrategySettings


class ABTest(StrategySettings):
    """Both slots live; users split by weight with stickiness; forced variants by header."""

    type: Literal["ab-test"] = "ab-test"
    #: Share of users sent to variant B (the new version).
    split: Int = Field(default=50, ge=1, le=99)
    #: Seconds the test runs before the decision (fits the default deploymentTimeout).
    duration: Duration = Field(default=1200, ge=60, le=MAX_DURATION)
    header: str = Field(default="X-Variant", pattern=r"^[A-Za-z0-9-]+$", max_length=64)
    cookie: str = Field(default="variant", pattern=r"^[A-Za-z0-9_-]+$", max_length=64)
    stickiness_duration: Duration = Field(default=86400, ge=1, le=604800)
    #: Listener rule priorities used: this and the next three.
    rule_priority: Int = Field(default=100, ge=1, le=49996)
    #: Pauses after B has won, before it is promoted (``{pause: 10m}``, ``{pause: {}}`` = until promoted).
    steps: list[PauseStep] | None = Field(default=None, max_length=100)

    @field_validator("steps", mode="before")
    @classmethod
    def _step_list(cls, steps: Any) -> Any:
        return parse_steps(steps, ("pause",))


STRATEGY = StrategyInfo(
    name="ab-test",
    settings=ABTest,
    description="both versions live, users split with stickiness; the new one promoted if it wins",
    order=40,
    probe=True,
    baseline=True,
    seed_name="A_B_TESTING",
    seed_fields={"ab_split": "split", "ab_duration": "duration"},
)
