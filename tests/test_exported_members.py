"""The seed-compatible public surface is pinned, so it cannot drift by accident."""

from __future__ import annotations

import inspect

import pytest

import rfs_deploy.deployment as deployment
import rfs_deploy.result as result
import rfs_deploy.rollback as rollback
import rfs_deploy.strategies as strategies

SURFACE = {
    strategies: {
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
    },
    deployment: {
        "Deployment",
        "DeploymentConfig",
        "DeploymentStatus",
        "DeploymentStrategy",
        "ProductionDeployer",
        "deploy",
        "get_deployment_history",
        "get_deployment_status",
        "get_production_deployer",
    },
    rollback: {"Checkpoint", "RollbackManager"},
    result: {"Failure", "Result", "Success"},
}


@pytest.mark.parametrize("module", list(SURFACE), ids=lambda m: m.__name__)
def test_exported_members(module: object) -> None:
    assert set(module.__all__) == SURFACE[module]  # type: ignore[attr-defined]
    for name in module.__all__:  # type: ignore[attr-defined]
        assert hasattr(module, name)


def test_seed_enum_members_and_statuses() -> None:
    assert {t.name for t in strategies.DeploymentType} == {"BLUE_GREEN", "CANARY", "ROLLING", "A_B_TESTING"}
    assert {s.name for s in deployment.DeploymentStatus} == {
        "PENDING",
        "IN_PROGRESS",
        "VALIDATING",
        "COMPLETED",
        "FAILED",
        "ROLLED_BACK",
    }


def test_seed_signatures() -> None:
    abstract = strategies.DeploymentStrategy
    for name in ("deploy", "health_check", "collect_metrics", "should_rollback", "rollback"):
        assert callable(getattr(abstract, name))
    assert list(inspect.signature(abstract.deploy).parameters)[:3] == ["self", "service_name", "new_version"]
    params = inspect.signature(rollback.RollbackManager.create_checkpoint).parameters
    assert list(params)[1:] == ["service_name", "version", "configuration", "environment_variables"]
    fields = set(strategies.DeploymentMetrics.__dataclass_fields__)
    assert {
        "start_time",
        "end_time",
        "deployment_duration",
        "success_rate",
        "error_rate",
        "p99_latency",
        "cpu_usage",
        "instance_count",
        "healthy_instances",
    } <= fields
    config = deployment.DeploymentConfig()
    assert config.max_rollback_attempts == 3
    assert config.deployment_timeout == 1800
    assert config.health_check_url == "/health"
