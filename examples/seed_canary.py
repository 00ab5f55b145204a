"""The seed's Canary example; only the import paths, the language of its output and the call at the
bottom changed. Run it with RFS_DEPLOY_BACKEND=sim (see docs/examples.md)."""

import sys

from rfs_deploy.seed_support import run_example
from rfs_deploy.strategies import CanaryStrategy, DeploymentConfig, DeploymentType

# Canary deployment settings
config = DeploymentConfig(
    deployment_type=DeploymentType.CANARY,
    canary_percentage=10,  # 10% of the traffic first
    canary_increment=10,  # then 10% more at a time
    canary_interval=60,  # every 60 seconds
    auto_rollback=True,
    rollback_on_error_rate=0.02,  # roll back at a 2% error rate
)

strategy = CanaryStrategy(config)


async def deploy_canary():
    """Progressive canary deployment"""
    result = await strategy.deploy(service_name="api-service", new_version="v2.0.0")
    # Watching the deployment:
    # 10% -> 20% -> 30% -> ... -> 100%
    # each step goes ahead on its own once its metrics pass
    print("success" if result.is_success() else f"failed: {result.error}")
    return result


if __name__ == "__main__":
    sys.exit(run_example(deploy_canary))
