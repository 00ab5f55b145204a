"""The seed's strategy API (``rfs.production.strategies`` → ``rfs_deploy.strategies``).

Every concrete strategy runs the real driver: a plan of stack updates behind the ALB, CloudWatch
analysis and rollback to the pre-deployment checkpoint. Which world it runs against is chosen by
the environment: ``RFS_DEPLOY_BACKEND=sim`` (scenario ``RFS_DEPLOY_SCENARIO``) for the sandbox,
otherwise Pulumi and AWS; the stack is ``DeploymentConfig.environment`` (default ``production``).

``deploy()`` is async and returns ``Success(DeploymentMetrics)`` or ``Failure(message)``; it never
raises for a failed deployment.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from rfs_deploy.config.strategies import strategy_info
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.errors import RfsDeployError
from rfs_deploy.result import Failure, Result, Success


class DeploymentType(enum.Enum):
    """The seed's four strategies; values are the config's strategy names.

    Written out, as the seed named them, so that type checkers know the members; a test pins the
    members to the registry (:mod:`rfs_deploy.config.strategies`: ``seed_name`` -> ``name``). Which
    ``DeploymentConfig`` attributes set each strategy's settings is registered there too.
    """

    BLUE_GREEN = "blue-green"
    CANARY = "canary"
    ROLLING = "rolling"
    A_B_TESTING = "ab-test"


class HealthStatus(enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


@dataclass
class DeploymentConfig:
    """Strategy settings with the seed's defaults. Values override the stack config for one deployment."""

    deployment_type: DeploymentType = DeploymentType.BLUE_GREEN
    health_check_interval: int = 30
    health_check_timeout: int = 10
    max_deployment_time: int = 600
    auto_rollback: bool = True
    rollback_on_error_rate: float = 0.05
    #: p99 latency in seconds.
    rollback_on_latency: float = 2.0
    rollback_on_cpu: float = 90.0
    switch_delay: int = 60
    validation_duration: int = 300
    canary_percentage: int = 10
    canary_increment: int = 10
    canary_interval: int = 60
    batch_size: int = 2
    batch_interval: int = 30
    ab_split: int = 50
    ab_duration: int = 1200
    max_rollback_attempts: int = 3
    #: The stack to deploy to.
    environment: str = "production"
    #: Extra keyword overrides of the service's strategy section (camelCase or snake_case keys).
    extra: dict[str, Any] = field(default_factory=dict)

    def strategy_settings(self) -> dict[str, Any]:
        """The strategy section this config stands for."""
        info = strategy_info(self.deployment_type.value)
        seed = {name: getattr(self, attr) for attr, name in info.seed_fields.items()}
        return {"type": info.name, **seed, **self.extra}

    def service_overrides(self) -> dict[str, Any]:
        """Analysis and deploy settings this config stands for."""
        return {
            "analysis": {
                "max_error_rate": self.rollback_on_error_rate,
                "max_p99_latency": self.rollback_on_latency,
                "max_cpu": self.rollback_on_cpu,
            },
            "deploy": {
                "health_check_interval": self.health_check_interval,
                "health_check_timeout": self.health_check_timeout,
                "max_deployment_time": self.max_deployment_time,
                "auto_rollback": self.auto_rollback,
                "max_rollback_attempts": self.max_rollback_attempts,
            },
        }


@dataclass
class DeploymentMetrics:
    """What a deployment measured (the seed's fields)."""

    start_time: datetime
    end_time: datetime | None = None
    deployment_duration: float = 0.0
    success_rate: float = 0.0
    error_rate: float = 0.0
    #: p99 latency in seconds.
    p99_latency: float = 0.0
    cpu_usage: float = 0.0
    instance_count: int = 0
    healthy_instances: int = 0
    deployment_id: str | None = None
    status: DeploymentStatus | None = None

    @classmethod
    def from_record(cls, record: DeploymentRecord) -> DeploymentMetrics:
        from rfs_deploy.drive.summary import summarize

        s = summarize(record)
        return cls(
            start_time=datetime.fromtimestamp(record.started_at),
            end_time=None if record.ended_at is None else datetime.fromtimestamp(record.ended_at),
            deployment_duration=record.duration or 0.0,
            success_rate=s.success_rate,
            error_rate=s.error_rate,
            p99_latency=s.p99_latency,
            cpu_usage=s.cpu_usage,
            instance_count=s.instance_count,
            healthy_instances=s.healthy_instances,
            deployment_id=record.deployment_id,
            status=record.status,
        )


class DeploymentStrategy(abc.ABC):
    """Base of every strategy. Subclass it and implement ``deploy`` for a custom strategy."""

    def __init__(self, config: DeploymentConfig | None = None) -> None:
        self.config = config or DeploymentConfig()
        self.metrics: DeploymentMetrics | None = None

    @abc.abstractmethod
    async def deploy(
        self, service_name: str, new_version: str, **kwargs: Any
    ) -> Result[DeploymentMetrics, str]:
        """Release ``new_version`` of ``service_name``."""

    async def health_check(self, service_name: str, version: str) -> HealthStatus:
        """Target health of the slot running ``version`` (HEALTHY when every target is healthy)."""
        from rfs_deploy.seed_support import slot_health

        try:
            return HealthStatus(await slot_health(self.config.environment, service_name, version))
        except RfsDeployError:
            return HealthStatus.UNKNOWN

    async def collect_metrics(self, service_name: str, version: str) -> Result[DeploymentMetrics, str]:
        """The last metric period of the slot running ``version``."""
        from rfs_deploy.seed_support import current_metrics

        try:
            return Success(await current_metrics(self.config.environment, service_name, version))
        except RfsDeployError as exc:
            return Failure(str(exc))

    def should_rollback(self, metrics: DeploymentMetrics) -> bool:
        """The seed's rule: error rate, p99 latency or CPU above the configured limits."""
        c = self.config
        return (
            metrics.error_rate > c.rollback_on_error_rate
            or metrics.p99_latency > c.rollback_on_latency
            or metrics.cpu_usage > c.rollback_on_cpu
        )

    async def rollback(self, service_name: str) -> Result[DeploymentMetrics, str]:
        """Restore the service's last pre-deployment checkpoint (or abort an open deployment)."""
        from rfs_deploy.seed_support import rollback_service

        try:
            record = await rollback_service(self.config.environment, service_name)
        except RfsDeployError as exc:
            return Failure(str(exc))
        return Success(DeploymentMetrics.from_record(record))


class _DriverStrategy(DeploymentStrategy):
    """A built-in strategy: runs the driver with this strategy's settings."""

    deployment_type: DeploymentType

    def __init__(self, config: DeploymentConfig | None = None) -> None:
        super().__init__(config or DeploymentConfig(deployment_type=self.deployment_type))
        if self.config.deployment_type is not self.deployment_type:
            self.config.deployment_type = self.deployment_type

    async def deploy(
        self, service_name: str, new_version: str, **kwargs: Any
    ) -> Result[DeploymentMetrics, str]:
        from rfs_deploy.seed_support import run_deployment

        start = datetime.now()
        self.metrics = DeploymentMetrics(start_time=start)
        try:
            record = await run_deployment(self.config, service_name, new_version, **kwargs)
        except RfsDeployError as exc:
            return Failure(str(exc))
        self.metrics = DeploymentMetrics.from_record(record)
        if record.status is DeploymentStatus.COMPLETED:
            return Success(self.metrics)
        reason = record.errors[-1] if record.errors else record.status.value
        return Failure(f"{record.status.value}: {reason}")


class BlueGreenStrategy(_DriverStrategy):
    deployment_type = DeploymentType.BLUE_GREEN


class CanaryStrategy(_DriverStrategy):
    deployment_type = DeploymentType.CANARY


class RollingStrategy(_DriverStrategy):
    deployment_type = DeploymentType.ROLLING


class ABTestingStrategy(_DriverStrategy):
    deployment_type = DeploymentType.A_B_TESTING


class DeploymentStrategyFactory:
    """Creates the built-in strategy for a DeploymentType."""

    _registry: ClassVar[dict[DeploymentType, type[DeploymentStrategy]]] = {
        DeploymentType.BLUE_GREEN: BlueGreenStrategy,
        DeploymentType.CANARY: CanaryStrategy,
        DeploymentType.ROLLING: RollingStrategy,
        DeploymentType.A_B_TESTING: ABTestingStrategy,
    }

    @classmethod
    def create(
        cls, deployment_type: DeploymentType, config: DeploymentConfig | None = None
    ) -> DeploymentStrategy:
        config = config or DeploymentConfig(deployment_type=deployment_type)
        config.deployment_type = deployment_type
        return cls._registry[deployment_type](config)

    @classmethod
    def register(cls, deployment_type: DeploymentType, strategy: type[DeploymentStrategy]) -> None:
        cls._registry[deployment_type] = strategy


__all__ = [
    "ABTestingStrategy",
    "BlueGreenStrategy",
    "CanaryStrategy",
    "DeploymentConfig",
    "DeploymentMetrics",
    "DeploymentStrategy",
    "DeploymentStrategyFactory",
    "DeploymentType",
    "Failure",
    "HealthStatus",
    "Result",
    "RollingStrategy",
    "Success",
]
