"""The seed's ProductionDeployer example; only the import paths changed (and the call at the bottom)."""

import asyncio

from rfs_deploy.deployment import DeploymentConfig, DeploymentStrategy, ProductionDeployer

# 통합 배포 관리자
deployer_config = DeploymentConfig(
    strategy=DeploymentStrategy.BLUE_GREEN,
    target_environment="production",
    health_check_url="/health",
    rollback_on_failure=True,
    max_rollback_attempts=3,
    deployment_timeout=1800,  # 30분
)

deployer = ProductionDeployer(deployer_config)

calls = []


# 배포 훅 설정
async def pre_deployment_hook(result):
    """배포 전 실행"""
    print("배포 전 데이터베이스 마이그레이션...")
    calls.append("pre")


async def post_deployment_hook(result):
    """배포 후 실행"""
    print("캐시 초기화...")
    calls.append("post")


deployer.config.pre_deployment_hooks.append(pre_deployment_hook)
deployer.config.post_deployment_hooks.append(post_deployment_hook)


# 배포 실행
async def deploy_to_production():
    result = await deployer.deploy(
        version="v2.0.0",
        environment="production",
        strategy=DeploymentStrategy.CANARY
    )

    if result.is_success():
        deployment = result.value
        print(f"배포 ID: {deployment.deployment_id}")
        print(f"상태: {deployment.status}")
        print(f"버전: {deployment.version}")

        # 배포 히스토리 조회
        history = deployer.get_deployment_history()
        for dep in history[:5]:
            print(f"- {dep.deployment_id}: {dep.status}")
    return result


if __name__ == "__main__":
    asyncio.run(deploy_to_production())
