"""The seed's Rolling example; only the import paths, the language of its output and the call at the
bottom changed (and it says when the deployment failed). Run it with RFS_DEPLOY_BACKEND=sim (see
docs/examples.md)."""

import sys

from rfs_deploy.seed_support import run_example
from rfs_deploy.strategies import DeploymentConfig, DeploymentType, RollingStrategy

# Rolling deployment settings
config = DeploymentConfig(
    deployment_type=DeploymentType.ROLLING,
    batch_size=2,  # update 2 instances at a time
    batch_interval=30,  # wait 30 seconds between batches
    health_check_timeout=10,
    auto_rollback=True,
)

strategy = RollingStrategy(config)


async def deploy_rolling():
    """Instance-by-instance rolling deployment"""
    result = await strategy.deploy(
        service_name="api-service",
        new_version="v2.0.0",
        instance_count=10,  # 10 instances in all
    )

    if result.is_success():
        metrics = result.value
        print("All instances updated")
        print(f"Healthy instances: {metrics.healthy_instances}/{metrics.instance_count}")
    else:
        print(f"Deployment failed: {result.error}")
    return result


if __name__ == "__main__":
    sys.exit(run_example(deploy_rolling))
