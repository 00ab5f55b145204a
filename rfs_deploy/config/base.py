"""What every config model is built from: the base model and the number types.

Apart from :mod:`rfs_deploy.config.model` so that the strategy settings
(:mod:`rfs_deploy.config.strategies`), which the model's ``ServiceConfig`` is made of, can use them
without importing the model itself. :mod:`rfs_deploy.config.model` re-exports every name.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_serializer,
)
from pydantic.alias_generators import to_camel

#: The longest duration any setting takes (seconds): one week.
MAX_DURATION = 7 * 24 * 3600


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


#: Whole numbers that are not booleans.
Int = Annotated[int, BeforeValidator(_not_bool)]
#: Finite numbers that are not booleans.
Num = Annotated[float, BeforeValidator(_not_bool), AllowInfNan(False)]

#: Seconds in each unit a duration may be written in, largest first (the order they must come in).
DURATION_UNITS = {"d": 86_400, "h": 3600, "m": 60, "s": 1}
# At most nine digits a part: anything longer is out of every bound anyway, and the regex and
# int() stay cheap on hostile input.
_DURATION = re.compile(r"(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?", re.ASCII)
_DURATION_HINT = 'use 90, "90s", "5m", "1h" or "1h30m"'


def parse_duration(value: Any) -> Any:
    """Whole seconds from ``90``, ``"90"``, ``"90s"``, ``"5m"``, ``"1h"``, ``"1h30m"``, ``"1d"``.

    Units come largest first, each at most once; no fractions, signs or spaces. Anything else
    that is not a string or number is passed on for the int validation to refuse; bounds are the
    field's own.
    """
    if isinstance(value, bool):
        raise ValueError(f"a boolean is not a duration ({_DURATION_HINT})")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"{value!r} is not a duration: durations are whole seconds ({_DURATION_HINT})")
        return int(value)
    if not isinstance(value, str):
        return value
    if len(value) <= 9 and value.isascii() and value.isdigit():
        return int(value)
    match = _DURATION.fullmatch(value) if len(value) <= 40 else None
    if match is None or not any(match.groups()):
        shown = json.dumps(value if len(value) <= 40 else value[:37] + "...")
        raise ValueError(f"{shown} is not a duration ({_DURATION_HINT})")
    return sum(
        int(part) * unit for part, unit in zip(match.groups(), DURATION_UNITS.values(), strict=True) if part
    )


#: Whole seconds, written as a number or with units (``"90s"``, ``"5m"``, ``"1h30m"``, ``"1d"``);
#: an ``int`` once validated. The field's ``Field(ge=..., le=...)`` bounds the seconds.
Duration = Annotated[int, BeforeValidator(parse_duration)]


class Model(BaseModel):
    """Base: camelCase keys in YAML, unknown keys rejected, values re-validated on assignment."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


# --------------------------------------------------------------------------- step lists


class WeightStep(Model):
    """``{setWeight: 20}``: the new slot's share of traffic from here on."""

    set_weight: Int = Field(ge=1, le=100)

    # Dumped as written (``{setWeight: 20}``), so a dumped config loads back as the same list.
    @model_serializer
    def _as_written(self) -> dict[str, Any]:
        return {"setWeight": self.set_weight}


class AnalyzeStep(Model):
    """``{analyze: 5m}`` or ``{analyze: {duration: 5m, interval: 1m}}``: judge the new slot.

    Without a duration the strategy's own interval is used (``canaryInterval``); without an
    interval, the usual judging interval (``deploy.healthCheckInterval``, at least one metric
    period, at most the duration).
    """

    duration: Duration | None = Field(default=None, ge=1, le=MAX_DURATION)
    interval: Duration | None = Field(default=None, ge=1, le=MAX_DURATION)

    @model_serializer
    def _as_written(self) -> dict[str, Any]:
        given = {"duration": self.duration, "interval": self.interval}
        return {"analyze": {key: value for key, value in given.items() if value is not None}}


class PauseStep(Model):
    """``{pause: 2m}`` waits two minutes; ``{pause: {}}`` (or ``{pause: until-promoted}``) holds
    until the deployment is promoted."""

    duration: Duration | None = Field(default=None, ge=1, le=MAX_DURATION)

    @model_serializer
    def _as_written(self) -> dict[str, Any]:
        return {"pause": {} if self.duration is None else {"duration": self.duration}}

    @property
    def until_promoted(self) -> bool:
        return self.duration is None


#: One entry of an explicit step list.
StepItem = WeightStep | AnalyzeStep | PauseStep

#: The YAML key of each kind of entry.
STEP_KEYS: dict[str, type[StepItem]] = {"setWeight": WeightStep, "analyze": AnalyzeStep, "pause": PauseStep}
UNTIL_PROMOTED = "until-promoted"


def _step_error(index: int, message: str) -> ValueError:
    return ValueError(f"steps[{index}]: {message}")


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(to_camel(str(part)) if isinstance(part, str) else str(part) for part in first["loc"])
    reason = first["msg"].removeprefix("Value error, ")
    return f"{where}: {reason}" if where else reason


def _step_item(index: int, item: Any, allowed: tuple[str, ...]) -> StepItem:
    kinds = " or ".join(f"{{{key}: ...}}" for key in allowed)
    if not isinstance(item, dict) or len(item) != 1:
        if isinstance(item, int) and not isinstance(item, bool) and "setWeight" in allowed:
            raise _step_error(index, f"a bare weight among step entries; write {{setWeight: {item}}}")
        raise _step_error(index, f"each step is one of {kinds}")
    ((key, value),) = item.items()
    if key in STEP_KEYS and key not in allowed:
        raise _step_error(index, f"{{{key}: ...}} is not a step of this strategy; use {kinds}")
    if key not in allowed:
        raise _step_error(index, f"unknown step {str(key)[:40]!r}; use {kinds}")
    try:
        if key == "setWeight":
            return WeightStep(set_weight=value)
        if key == "analyze":
            return AnalyzeStep.model_validate(value if isinstance(value, dict) else {"duration": value})
        if value is None or value == UNTIL_PROMOTED:
            return PauseStep()
        return PauseStep.model_validate(value if isinstance(value, dict) else {"duration": value})
    except ValidationError as exc:
        where = _first_error(exc)
        if key == "setWeight" or not isinstance(value, dict):
            where = where.split(": ", 1)[-1]
        raise _step_error(index, f"{key}: {where}") from None


def parse_steps(value: Any, allowed: tuple[str, ...]) -> Any:
    """A step list: plain weights (``[5, 25, 50]``, checked and passed on) or mappings, each with
    one key of ``allowed``, as :data:`StepItem`s.

    Raises one ValueError naming the first bad entry by its index (from 0): a weight outside
    1..100 or not above the one before it, a kind the strategy does not allow, a bad duration.
    """
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("steps must be a list")
    if len(value) > 100:
        raise ValueError(f"at most 100 steps, not {len(value)}")
    if "setWeight" in allowed and all(isinstance(v, int) for v in value):
        for index, weight in enumerate(value):
            if isinstance(weight, bool) or not 1 <= weight <= 100:
                raise _step_error(index, f"{weight!r} is not a weight (a whole percent, 1 to 100)")
        return value
    items: list[StepItem] = []
    weight = 0
    for index, raw in enumerate(value):
        item = (
            raw if isinstance(raw, (WeightStep, AnalyzeStep, PauseStep)) else _step_item(index, raw, allowed)
        )
        if isinstance(item, WeightStep):
            if item.set_weight <= weight:
                raise _step_error(
                    index,
                    f"setWeight {item.set_weight} is not above the weight before it ({weight}); weights rise",
                )
            weight = item.set_weight
        elif isinstance(item, AnalyzeStep) and weight == 0:
            raise _step_error(index, "analyze before any setWeight: the new version has no traffic to judge")
        items.append(item)
    return items
