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

from pydantic import AllowInfNan, BaseModel, BeforeValidator, ConfigDict
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
