"""What the seed-compatible facades (strategies, deployment, rollback) share: one driver per stack.

The facades keep the seed's shapes; this module turns their settings into driver calls. Seams are
opened once per (stack, backend) in a process, so a sandbox keeps its simulated world between the
calls of one script (deploy, then history, then status).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rfs_deploy.connect import backend_kind, open_seams
from rfs_deploy.drive.context import Hooks, Seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.errors import InvalidInput, PreconditionFailed

if TYPE_CHECKING:
    from rfs_deploy import deployment as deployment_api
    from rfs_deploy import strategies as strategies_api

_seams: dict[tuple[str, str], Seams] = {}


def seams_for(stack: str) -> Seams:
    """The process's seams for ``stack`` on the backend the environment selects."""
    key = (stack, backend_kind())
    if key not in _seams:
        _seams[key] = open_seams(stack)
    return _seams[key]


def reset() -> None:
    """Forget the process's seams (tests; a new scenario)."""
    for seams in _seams.values():
        close = getattr(seams, "close", None)
        if callable(close):
            close()
    _seams.clear()


def _only_service(seams: Seams, service: str | None) -> str:
    services = sorted(seams.backend.read_config().services)
    if service is not None:
        return service
    if len(services) != 1:
        raise InvalidInput(f"the stack has services {', '.join(services)}; say which with service_name")
    return services[0]


async def run_deployment(
    config: strategies_api.DeploymentConfig, service: str, version: str, **kwargs: Any
) -> DeploymentRecord:
    """A strategy facade's deploy(): the driver with the config's settings as overrides."""
    seams = seams_for(config.environment)
    overrides: dict[str, Any] = {"strategy": config.strategy_settings(), **config.service_overrides()}
    if "instance_count" in kwargs:
        overrides["instance_count"] = int(kwargs.pop("instance_count"))
    if kwargs:
        raise InvalidInput(f"unknown deploy() argument {sorted(kwargs)[0]!r}")
    return await Driver(seams).deploy(service, version, config.deployment_type.value, overrides)


async def run_deployer(
    config: deployment_api.DeploymentConfig,
    environment: str,
    version: str,
    strategy: str,
    service: str | None,
) -> DeploymentRecord:
    """ProductionDeployer.deploy(): hooks from the deployer's config, settings from the stack."""
    seams = seams_for(environment)
    seams.hooks = Hooks(
        pre_deployment=list(config.pre_deployment_hooks),
        validation=list(config.validation_hooks),
        post_deployment=list(config.post_deployment_hooks),
    )
    name = _only_service(seams, service or config.service_name)
    overrides: dict[str, Any] = {
        "deploy": {
            "auto_rollback": config.rollback_on_failure,
            "max_rollback_attempts": config.max_rollback_attempts,
            "deployment_timeout": config.deployment_timeout,
        },
        "validation": {"health_path": config.health_check_url},
    }
    try:
        return await Driver(seams).deploy(name, version, strategy, overrides)
    finally:
        seams.hooks = Hooks()


def recorded_deployments(environment: str) -> list[DeploymentRecord]:
    seams = seams_for(environment)
    if seams.records is None:
        return []
    return seams.records.all(stack=seams.backend.stack_name)


async def slot_health(environment: str, service: str, version: str) -> str:
    """healthy / degraded / unhealthy / unknown for the slot running ``version``."""
    from rfs_deploy.config.model import SLOTS
    from rfs_deploy.outputs import parse_outputs

    seams = seams_for(environment)
    release = seams.backend.read_config().release[service]
    out = parse_outputs(seams.backend.outputs(), service)
    for slot in SLOTS:
        state = release.slot(slot)
        if state.version == version and state.capacity > 0:
            health = seams.traffic.target_health(out.slot(slot).target_group_arn)
            if health.healthy >= state.capacity:
                return "healthy"
            return "degraded" if health.healthy > 0 else "unhealthy"
    return "unknown"


async def current_metrics(environment: str, service: str, version: str) -> Any:
    """The last metric period of the slot running ``version`` as DeploymentMetrics.

    When that period has no request data yet (a stack that has just been created, such as a
    fresh sandbox), one more period is observed; with still none, PreconditionFailed: zeros would
    read as a perfectly healthy version.
    """
    from datetime import datetime

    from rfs_deploy.aws.cloudwatch import service_queries
    from rfs_deploy.config.model import SLOTS
    from rfs_deploy.drive.analysis import _aggregate
    from rfs_deploy.outputs import parse_outputs
    from rfs_deploy.strategies import DeploymentMetrics

    seams = seams_for(environment)
    config = seams.backend.read_config()
    release = config.release[service]
    period = config.service(service).analysis.period
    out = parse_outputs(seams.backend.outputs(), service)
    slot = next((s for s in SLOTS if release.slot(s).version == version and release.slot(s).capacity), None)
    if slot is None:
        raise InvalidInput(f"no slot of {service} runs {version}")
    queries = service_queries(out, [slot], period)
    for attempt in range(2):
        if attempt:
            await seams.clock.sleep(period)
        now = seams.clock.now()
        m = _aggregate(seams.metrics.get_metric_data(queries, now - period, now), slot)
        if m is not None:
            break
    else:
        raise PreconditionFailed(f"no request metrics for {service} {version} in the last {2 * period}s")
    health = seams.traffic.target_health(out.slot(slot).target_group_arn)
    rate = m.error_rate if m.error_rate is not None else 0.0
    return DeploymentMetrics(
        start_time=datetime.fromtimestamp(now - period),
        end_time=datetime.fromtimestamp(now),
        deployment_duration=0.0,
        success_rate=1.0 - rate if m.requests else 0.0,
        error_rate=rate,
        p99_latency=m.p99 or 0.0,
        cpu_usage=m.cpu or 0.0,
        instance_count=release.slot(slot).capacity,
        healthy_instances=health.healthy,
    )


async def rollback_service(environment: str, service: str) -> DeploymentRecord:
    """Abort the service's open deployment, or restore its last resting checkpoint."""
    from rfs_deploy.drive import journal

    seams = seams_for(environment)
    driver = Driver(seams)
    if journal.find_open_deployment(seams.backend.history(), service) is not None:
        return await driver.abort(service)
    return await driver.rollback(service)
