"""The strategy registry: one module per strategy, each registering itself once.

A strategy is two modules named alike: its settings here (``rfs_deploy.config.strategies.<name>``:
the settings model and a :class:`StrategyInfo` called ``STRATEGY``) and its plan in
``rfs_deploy.drive.plans.<name>`` (a function ``plan``). Everything else that names strategies is
derived from :data:`REGISTRY`: the config's discriminated union and ``STRATEGY_NAMES``
(:mod:`rfs_deploy.config.model`), the strategies a load probe may name, the CLI's ``--strategy``
choices, the plan dispatch (:mod:`rfs_deploy.drive.plans`), the seed API's strategy settings
(:mod:`rfs_deploy.strategies`) and the table in ``docs/strategies.md``. The seed's two enums keep
the member names the seed gave them; a test pins their values to the registry.

The modules are found by listing this package, so a new strategy needs no line elsewhere; its
``order`` places it in the union, the error messages and the CLI's choices.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rfs_deploy.config.base import Model


class StrategySettings(Model):
    """Base of every strategy's settings model: ``type`` is the strategy's registered name."""

    type: str


@dataclass(frozen=True)
class StrategyInfo:
    """One strategy as the rest of the program sees it."""

    #: The config's ``strategy.type`` and the CLI's ``--strategy`` value.
    name: str
    settings: type[StrategySettings]
    #: One line for the docs and ``--help``.
    description: str
    #: Place among the strategies (the union's order, which error messages and choices follow).
    order: int
    #: The validate step may run the load probe: the new version waits on an idle slot behind
    #: the test listener before any user traffic (``validation.probe.strategies`` may name it).
    probe: bool
    #: Some analysis compares the new slot with the live slot (``analysis.baselineComparison``).
    baseline: bool
    #: The member name in the seed's enums (``DeploymentType``, ``deployment.DeploymentStrategy``);
    #: None for a strategy the seed did not have.
    seed_name: str | None = None
    #: The seed ``DeploymentConfig`` attributes that set this strategy's settings:
    #: attribute -> settings field.
    seed_fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def module(self) -> str:
        """The short module name both halves of the strategy use (``ab_test`` for ``ab-test``)."""
        return self.name.replace("-", "_")


def _discover() -> tuple[StrategyInfo, ...]:
    found: list[StrategyInfo] = []
    for module in pkgutil.iter_modules(__path__):
        info = importlib.import_module(f"{__name__}.{module.name}").STRATEGY
        if not isinstance(info, StrategyInfo) or info.module != module.name:
            raise TypeError(f"{__name__}.{module.name}.STRATEGY must be the StrategyInfo of {module.name!r}")
        found.append(info)
    return tuple(sorted(found, key=lambda info: info.order))


#: Every strategy, in order.
STRATEGIES: tuple[StrategyInfo, ...] = _discover()
#: Name -> strategy.
REGISTRY: Mapping[str, StrategyInfo] = MappingProxyType({info.name: info for info in STRATEGIES})
#: Every strategy name, in order.
STRATEGY_NAMES: tuple[str, ...] = tuple(REGISTRY)
#: Strategies whose validate step may run the load probe.
PROBED_NAMES: tuple[str, ...] = tuple(info.name for info in STRATEGIES if info.probe)


def strategy_info(name: str) -> StrategyInfo:
    """The registered strategy ``name`` (KeyError when there is none)."""
    return REGISTRY[name]


__all__ = [
    "PROBED_NAMES",
    "REGISTRY",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "StrategyInfo",
    "StrategySettings",
    "strategy_info",
]
