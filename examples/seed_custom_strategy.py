"""The seed's custom-strategy example; only the import paths, the language of its output and the call
at the bottom changed (and the names it uses without importing them are imported from
rfs_deploy.strategies). Run it with RFS_DEPLOY_BACKEND=sim (see docs/examples.md)."""

import sys
from datetime import datetime

from rfs_deploy.seed_support import run_example
from rfs_deploy.strategies import (
    DeploymentMetrics,
    DeploymentStrategy,
    Failure,
    HealthStatus,
    Result,
    Success,
)


class CustomStrategy(DeploymentStrategy):
    """A custom deployment strategy"""

    async def deploy(self, service_name: str, new_version: str, **kwargs) -> Result[DeploymentMetrics, str]:
        self.metrics = DeploymentMetrics(start_time=datetime.now())

        try:
            # 1. Custom deployment logic
            print(f"Custom deployment started: {service_name} -> {new_version}")

            # 2. Health check
            health_result = await self.health_check(service_name, new_version)
            if health_result != HealthStatus.HEALTHY:
                return Failure("Health check failed")

            # 3. Collect metrics
            metrics_result = await self.collect_metrics(service_name, new_version)
            if self.should_rollback(metrics_result.value):
                await self.rollback(service_name)
                return Failure("Metrics below the thresholds")

            # 4. Done
            self.metrics.end_time = datetime.now()
            self.metrics.success_rate = 0.99

            return Success(self.metrics)

        except Exception as e:
            return Failure(f"Deployment failed: {e!s}")


async def main():
    result = await CustomStrategy().deploy("api-service", "v1.0.0")
    print(result)
    return result


if __name__ == "__main__":
    sys.exit(run_example(main))
