"""What every config model is built from: the base model and the number types.

Apart from :mod:`rfs_deploy.config.model` so that the strategy settings
(:mod:`rfs_deploy.config.strategies`), which the model's ``ServiceConfig`` is made of, can use them
without importing the model itself. :mod:`rfs_deploy.config.model` re-exports every name.
"""

from __future__ import annotations

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


class Model(BaseModel):
    """Base: camelCase keys in YAML, unknown keys rejected, values re-validated on assignment."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
