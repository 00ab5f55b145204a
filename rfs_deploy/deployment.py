"""The seed's deployer API (``rfs.production.deployment`` → ``rfs_deploy.deployment``).

``ProductionDeployer`` runs a release of one service to an environment (a stack) with the chosen
strategy, runs the pre- and post-deployment hooks, and keeps the history of its deployments.
``deploy()`` returns ``Success(Deployment)`` when the deployment *ran* — inspect ``status`` for
COMPLETED or ROLLED_BACK — and ``Failure(message)`` when it could not run at all (bad input, the
stack busy) or ended FAILED; it never raises for a failed deployment.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.errors import RfsDeployError
from rfs_deploy.result import Failure, Result, Success

#: A deployment as the seed's examples read it: ``deployment_id``, ``status``, ``version``,
#: ``errors``, ``progress``, plus everything else the driver records.
Deployment = DeploymentRecord


class DeploymentStrategy(enum.Enum):
    """Strategy names for the deployer (values are the config's strategy names).

    The seed's members, written out for type checkers; a test pins them to the registry
    (:mod:`rfs_deploy.config.strategies`), as it does :class:`rfs_deploy.strategies.DeploymentType`.
    """

    BLUE_GREEN = "blue-green"
    CANARY = "canary"
    ROLLING = "rolling"
    A_B_TESTING = "ab-test"


@dataclass
class DeploymentConfig:
    """The deployer's settings (the seed's defaults)."""

    strategy: DeploymentStrategy = DeploymentStrategy.BLUE_GREEN
    target_environment: str = "production"
    health_check_url: str = "/health"
    rollback_on_failure: bool = True
    max_rollback_attempts: int = 3
    deployment_timeout: int = 1800
    pre_deployment_hooks: list[Callable[..., Any]] = field(default_factory=list)
    post_deployment_hooks: list[Callable[..., Any]] = field(default_factory=list)
    validation_hooks: list[Callable[..., Any]] = field(default_factory=list)
    #: Run after a rollback restored the checkpoint (not part of the seed; docs/hooks.md).
    post_rollback_hooks: list[Callable[..., Any]] = field(default_factory=list)
    #: The service to release; None means the stack's only service.
    service_name: str | None = None


class ProductionDeployer:
    """Releases a service with the configured strategy and keeps its deployment history."""

    def __init__(self, config: DeploymentConfig | None = None) -> None:
        self.config = config or DeploymentConfig()
        self._history: list[DeploymentRecord] = []

    async def deploy(
        self,
        version: str,
        environment: str | None = None,
        strategy: DeploymentStrategy | None = None,
        service_name: str | None = None,
    ) -> Result[DeploymentRecord, str]:
        from rfs_deploy.seed_support import run_deployer

        env = environment or self.config.target_environment
        chosen = strategy or self.config.strategy
        try:
            record = await run_deployer(self.config, env, version, chosen.value, service_name)
        except RfsDeployError as exc:
            return Failure(str(exc))
        self._history.insert(0, record)
        if record.status is DeploymentStatus.FAILED:
            return Failure(f"deployment {record.deployment_id} failed: {'; '.join(record.errors[-2:])}")
        return Success(record)

    def get_deployment_history(self) -> list[DeploymentRecord]:
        """This deployer's deployments and those recorded for its environment, newest first."""
        from rfs_deploy.seed_support import recorded_deployments

        seen = {r.deployment_id for r in self._history}
        others = [
            r for r in recorded_deployments(self.config.target_environment) if r.deployment_id not in seen
        ]
        return sorted(self._history + others, key=lambda r: r.started_at, reverse=True)

    def get_deployment_status(self, deployment_id: str) -> DeploymentRecord | None:
        """The deployment's record, or None when it is unknown."""
        for record in self.get_deployment_history():
            if record.deployment_id == deployment_id:
                return record
        return None


_default: ProductionDeployer | None = None


def get_production_deployer(config: DeploymentConfig | None = None) -> ProductionDeployer:
    """The process-wide deployer (created on first use)."""
    global _default
    if _default is None or config is not None:
        _default = ProductionDeployer(config)
    return _default


async def deploy(
    version: str, environment: str = "production", strategy: DeploymentStrategy | None = None
) -> Result[DeploymentRecord, str]:
    """Deploy with the process-wide deployer."""
    return await get_production_deployer().deploy(version, environment, strategy)


def get_deployment_history() -> list[DeploymentRecord]:
    return get_production_deployer().get_deployment_history()


def get_deployment_status(deployment_id: str) -> DeploymentRecord | None:
    return get_production_deployer().get_deployment_status(deployment_id)


__all__ = [
    "Deployment",
    "DeploymentConfig",
    "DeploymentStatus",
    "DeploymentStrategy",
    "ProductionDeployer",
    "deploy",
    "get_deployment_history",
    "get_deployment_status",
    "get_production_deployer",
]
