"""The seed's custom-strategy example; only the import paths changed (and the names it uses
without importing them are imported from rfs_deploy.strategies)."""

import asyncio
from datetime import datetime

from rfs_deploy.strategies import (
    DeploymentMetrics,
    DeploymentStrategy,
    Failure,
    HealthStatus,
    Result,
    Success,
)


class CustomStrategy(DeploymentStrategy):
    """커스텀 배포 전략"""

    async def deploy(self, service_name: str, new_version: str, **kwargs) -> Result[DeploymentMetrics, str]:
        self.metrics = DeploymentMetrics(start_time=datetime.now())

        try:
            # 1. 커스텀 배포 로직
            print(f"커스텀 배포 시작: {service_name} -> {new_version}")

            # 2. 헬스체크
            health_result = await self.health_check(service_name, new_version)
            if health_result != HealthStatus.HEALTHY:
                return Failure("헬스체크 실패")

            # 3. 메트릭 수집
            metrics_result = await self.collect_metrics(service_name, new_version)
            if self.should_rollback(metrics_result.value):
                await self.rollback(service_name)
                return Failure("메트릭 기준 미달")

            # 4. 완료
            self.metrics.end_time = datetime.now()
            self.metrics.success_rate = 0.99

            return Success(self.metrics)

        except Exception as e:
            return Failure(f"배포 실패: {e!s}")


if __name__ == "__main__":
    result = asyncio.run(CustomStrategy().deploy("api-service", "v1.0.0"))
    print(result)
