"""The seed's Blue-Green example; only the import paths, the language of its output and the call at
the bottom changed. Run it with RFS_DEPLOY_BACKEND=sim (see docs/examples.md)."""

import sys

from rfs_deploy.seed_support import run_example
from rfs_deploy.strategies import DeploymentConfig, DeploymentStrategyFactory, DeploymentType

# Blue-Green deployment settings
config = DeploymentConfig(
    deployment_type=DeploymentType.BLUE_GREEN,
    switch_delay=60,  # wait 60 seconds before switching traffic
    health_check_interval=30,
    auto_rollback=True,
    rollback_on_error_rate=0.05,  # roll back at a 5% error rate
)

# Create the deployment strategy
strategy = DeploymentStrategyFactory.create(DeploymentType.BLUE_GREEN, config)


# Run the deployment
async def deploy_blue_green():
    result = await strategy.deploy(service_name="api-service", new_version="v2.0.0")

    if result.is_success():
        metrics = result.value
        print("Deployment succeeded!")
        print(f"Duration: {metrics.deployment_duration}")
        print(f"Success rate: {metrics.success_rate:.2%}")
    else:
        print(f"Deployment failed: {result.error}")
    return result


if __name__ == "__main__":
    sys.exit(run_example(deploy_blue_green))
