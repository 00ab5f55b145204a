"""The seed's ProductionDeployer example; only the import paths, the language of its output and the
call at the bottom changed (and it says when the deployment failed). Run it with
RFS_DEPLOY_BACKEND=sim (see docs/examples.md)."""

import sys

from rfs_deploy.deployment import DeploymentConfig, DeploymentStrategy, ProductionDeployer
from rfs_deploy.seed_support import run_example

# The deployment manager
deployer_config = DeploymentConfig(
    strategy=DeploymentStrategy.BLUE_GREEN,
    target_environment="production",
    health_check_url="/health",
    rollback_on_failure=True,
    max_rollback_attempts=3,
    deployment_timeout=1800,  # 30 minutes
)

deployer = ProductionDeployer(deployer_config)


# Deployment hooks
async def pre_deployment_hook(result):
    """Runs before the deployment"""
    print("Migrating the database before the deployment...")
    # migration logic


async def post_deployment_hook(result):
    """Runs after the deployment"""
    print("Clearing the cache...")
    # cache clearing logic


deployer.config.pre_deployment_hooks.append(pre_deployment_hook)
deployer.config.post_deployment_hooks.append(post_deployment_hook)


# Run the deployment
async def deploy_to_production():
    result = await deployer.deploy(
        version="v2.0.0",
        environment="production",
        strategy=DeploymentStrategy.CANARY
    )

    if result.is_success():
        deployment = result.value
        print(f"Deployment ID: {deployment.deployment_id}")
        print(f"Status: {deployment.status}")
        print(f"Version: {deployment.version}")

        # The deployment history
        history = deployer.get_deployment_history()
        for dep in history[:5]:
            print(f"- {dep.deployment_id}: {dep.status}")
    else:
        print(f"Deployment failed: {result.error}")
    return result


if __name__ == "__main__":
    sys.exit(run_example(deploy_to_production))
