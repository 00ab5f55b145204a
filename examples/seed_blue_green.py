"""The seed's Blue-Green example; only the import paths changed (and the call at the bottom)."""

import asyncio

from rfs_deploy.strategies import DeploymentConfig, DeploymentStrategyFactory, DeploymentType

# Blue-Green 배포 설정
config = DeploymentConfig(
    deployment_type=DeploymentType.BLUE_GREEN,
    switch_delay=60,  # 트래픽 전환 전 60초 대기
    health_check_interval=30,
    auto_rollback=True,
    rollback_on_error_rate=0.05,  # 5% 에러율 시 롤백
)

# 배포 전략 생성
strategy = DeploymentStrategyFactory.create(DeploymentType.BLUE_GREEN, config)


# 배포 실행
async def deploy_blue_green():
    result = await strategy.deploy(service_name="api-service", new_version="v2.0.0")

    if result.is_success():
        metrics = result.value
        print("배포 성공!")
        print(f"소요 시간: {metrics.deployment_duration}")
        print(f"성공률: {metrics.success_rate:.2%}")
    else:
        print(f"배포 실패: {result.error}")
    return result


if __name__ == "__main__":
    asyncio.run(deploy_blue_green())
