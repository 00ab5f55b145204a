"""The seed's Canary example; only the import paths changed (and the call at the bottom)."""

import asyncio

from rfs_deploy.strategies import CanaryStrategy, DeploymentConfig, DeploymentType

# Canary 배포 설정
config = DeploymentConfig(
    deployment_type=DeploymentType.CANARY,
    canary_percentage=10,  # 초기 10% 트래픽
    canary_increment=10,  # 10%씩 증가
    canary_interval=60,  # 60초마다 증가
    auto_rollback=True,
    rollback_on_error_rate=0.02,  # 2% 에러율 시 롤백
)

strategy = CanaryStrategy(config)


async def deploy_canary():
    """점진적 Canary 배포"""
    result = await strategy.deploy(service_name="api-service", new_version="v2.0.0")
    # 배포 과정 모니터링
    # 10% -> 20% -> 30% -> ... -> 100%
    # 각 단계에서 메트릭 확인 후 자동 진행
    return result


if __name__ == "__main__":
    r = asyncio.run(deploy_canary())
    print("success" if r.is_success() else f"failed: {r.error}")
