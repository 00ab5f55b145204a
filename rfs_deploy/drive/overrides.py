"""A deployment's settings: the stack's service settings plus its per-deployment overrides.

``deploy --strategy/--set`` (and :meth:`rfs_deploy.drive.driver.Driver.deploy`'s ``strategy``
and ``overrides``) change one deployment's settings without touching the stack file; the merged
settings are recorded (:func:`deployment_settings`) so ``resume`` rebuilds the same plan.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic.alias_generators import to_camel

from rfs_deploy.config.model import STRATEGY_NAMES, ServiceConfig, Strategy
from rfs_deploy.errors import InvalidInput


def resolve(
    service: ServiceConfig, strategy: str | Strategy | None, overrides: dict[str, Any] | None = None
) -> tuple[ServiceConfig, Strategy]:
    """The service settings and strategy of one deployment (config plus per-deployment overrides).

    ``strategy`` may be a strategy name (the service's own settings are used when it is that
    strategy, the defaults otherwise), a strategy object, or None for the service's default.
    ``overrides`` holds ``strategy`` / ``analysis`` / ``deploy`` sections (snake_case or camelCase).
    """
    # one spelling throughout (the config's camelCase): a snake_case override merged onto a
    # camelCase key would otherwise be a second, unknown key for the same setting
    overrides = _camel(dict(overrides or {}))
    data = service.model_dump(by_alias=True)
    strategy_data = overrides.pop("strategy", None)
    if isinstance(strategy, str):
        if strategy not in STRATEGY_NAMES:
            raise InvalidInput(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGY_NAMES)}")
        if service.strategy.type != strategy:
            data["strategy"] = {"type": strategy}
    elif strategy is not None:
        data["strategy"] = strategy.model_dump(by_alias=True)
    if strategy_data:
        data["strategy"] = {**data["strategy"], **strategy_data}
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    try:
        merged = ServiceConfig.model_validate(data)
    except ValueError as exc:
        from pydantic import ValidationError

        from rfs_deploy.config.loading import format_error

        if isinstance(exc, ValidationError):
            raise format_error(exc, ServiceConfig, prefix="deployment settings") from None
        raise
    return merged, merged.strategy


_SNAKE = re.compile(r"\A[a-z][a-z0-9]*(?:_[a-z0-9]+)+\Z")


def _camel(value: Any) -> Any:
    """``value`` with snake_case setting names camelCased (other keys — AMI versions, header
    names — are left as they are)."""
    if isinstance(value, dict):
        return {
            (to_camel(k) if isinstance(k, str) and _SNAKE.match(k) else k): _camel(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def with_image(service: ServiceConfig, version: str, image: str | None) -> ServiceConfig:
    """``service`` with ``image`` as ``version``'s AMI (for the plan's checks; the image itself
    travels in the release state, not in the settings)."""
    if image is None:
        return service
    amis = {**service.artifact.amis, version: image}
    return service.model_copy(update={"artifact": service.artifact.model_copy(update={"amis": amis})})


def deployment_settings(service: ServiceConfig) -> dict[str, Any]:
    """What ``resume`` needs to rebuild a deployment's plan on top of the stack config: its
    strategy and the sections a deployment may override, as JSON (validation headers left out:
    they are secrets, and resume takes them from the config)."""
    return {
        "strategy": service.strategy.model_dump(mode="json", by_alias=True),
        "analysis": service.analysis.model_dump(mode="json", by_alias=True),
        "deploy": service.deploy.model_dump(mode="json", by_alias=True),
        "validation": service.validation.model_dump(mode="json", by_alias=True, exclude={"headers"}),
    }
