"""The seed's Rolling example; only the import paths changed (and the call at the bottom)."""

import asyncio

from rfs_deploy.strategies import DeploymentConfig, DeploymentType, RollingStrategy

# Rolling 배포 설정
config = DeploymentConfig(
    deployment_type=DeploymentType.ROLLING,
    batch_size=2,  # 한 번에 2개 인스턴스 업데이트
    batch_interval=30,  # 배치 간 30초 대기
    health_check_timeout=10,
    auto_rollback=True,
)

strategy = RollingStrategy(config)


async def deploy_rolling():
    """순차적 Rolling 배포"""
    result = await strategy.deploy(
        service_name="api-service",
        new_version="v2.0.0",
        instance_count=10,  # 총 10개 인스턴스
    )

    if result.is_success():
        metrics = result.value
        print("모든 인스턴스 업데이트 완료")
        print(f"건강한 인스턴스: {metrics.healthy_instances}/{metrics.instance_count}")
    else:
        print(f"배포 실패: {result.error}")
    return result


if __name__ == "__main__":
    asyncio.run(deploy_rolling())
