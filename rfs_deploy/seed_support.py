"""What the seed-compatible facades (strategies, deployment, rollback) share: one driver per stack.

The facades keep the seed's shapes; this module turns their settings into driver calls. Seams are
opened once per (stack, backend) in a process, so a sandbox keeps its simulated world between the
calls of one script (deploy, then history, then status).

:func:`run_example` runs one of the seed's examples (``examples/seed_*.py``): on the sandbox it
starts every stack the example touches from a fresh session, so an example gives the same result
however often and in whatever order it runs (``RFS_DEPLOY_KEEP_SANDBOX=1`` keeps the saved
session instead), and it turns the example's result into the process exit code.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rfs_deploy.connect import backend_kind, open_seams
from rfs_deploy.drive.context import Hooks, Seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.errors import InvalidInput, PreconditionFailed

if TYPE_CHECKING:
    from rfs_deploy import deployment as deployment_api
    from rfs_deploy import strategies as strategies_api
    from rfs_deploy.result import Result

#: Set to 1 to let an example continue the saved sandbox session instead of starting a fresh one.
KEEP_SANDBOX_ENV = "RFS_DEPLOY_KEEP_SANDBOX"

_seams: dict[tuple[str, str], Seams] = {}
#: While an example runs with fresh sessions: the stacks already started fresh (None: not fresh).
_started_fresh: set[str] | None = None


def seams_for(stack: str) -> Seams:
    """The process's seams for ``stack`` on the backend the environment selects."""
    kind = backend_kind()
    key = (stack, kind)
    if key not in _seams:
        fresh = kind == "sim" and _started_fresh is not None and stack not in _started_fresh
        _seams[key] = open_seams(stack, fresh=fresh)
        if fresh and _started_fresh is not None:
            _started_fresh.add(stack)
    return _seams[key]


def reset() -> None:
    """Forget the process's seams (tests; a new scenario). A sandbox saves its session on close."""
    for seams in _seams.values():
        close = getattr(seams, "close", None)
        if callable(close):
            close()
    _seams.clear()


def _keep_sandbox() -> bool:
    return os.environ.get(KEEP_SANDBOX_ENV, "").strip().lower() in ("1", "true", "yes")


def completed(result: Result[Any, Any]) -> bool:
    """Whether an example's result stands for a deployment that completed.

    A ``Failure`` never does; a ``Success`` whose value carries a deployment status (the
    deployer's records) does only when that status is COMPLETED.
    """
    if not result.is_success():
        return False
    status = getattr(result.value, "status", None)
    return status is None or status is DeploymentStatus.COMPLETED


def run_example(main: Callable[[], Awaitable[Result[Any, Any]]]) -> int:
    """Run a seed example's coroutine function; the exit code: 0 completed, 1 not.

    On the sandbox (``RFS_DEPLOY_BACKEND=sim``) each stack the example uses starts from a fresh
    session (the stack file's release live, the scenario from ``RFS_DEPLOY_SCENARIO``), as
    ``rfs-deploy simulate`` does, unless ``RFS_DEPLOY_KEEP_SANDBOX=1``. The sessions are saved when
    the example ends, so ``rfs-deploy status`` and ``history`` show what it did.
    """
    global _started_fresh
    _started_fresh = None if _keep_sandbox() else set()
    try:
        result = asyncio.run(_awaited(main))
    except KeyboardInterrupt:
        print("interrupted; run `rfs-deploy resume` or `rfs-deploy abort` for the stack", file=sys.stderr)
        return 130
    finally:
        reset()
        _started_fresh = None
    return 0 if completed(result) else 1


async def _awaited(main: Callable[[], Awaitable[Result[Any, Any]]]) -> Result[Any, Any]:
    return await main()


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
        post_rollback=list(config.post_rollback_hooks),
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
    """The local records of the deployments the stack's history knows, newest first.

    Records of deployments that never reached this stack's history (an earlier sandbox session
    since replaced, a stack removed and created again) are left out.
    """
    from rfs_deploy.drive import journal

    seams = seams_for(environment)
    if seams.records is None:
        return []
    known = {tag.deployment_id for e in seams.backend.history() if (tag := journal.decode(e.message))}
    return [r for r in seams.records.all(stack=seams.backend.stack_name) if r.deployment_id in known]


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

    from rfs_deploy.config.model import SLOTS
    from rfs_deploy.metrics import provider_for, slot_sources
    from rfs_deploy.outputs import parse_outputs
    from rfs_deploy.strategies import DeploymentMetrics

    seams = seams_for(environment)
    config = seams.backend.read_config()
    release = config.release[service]
    analysis = config.service(service).analysis
    period = analysis.period
    out = parse_outputs(seams.backend.outputs(), service)
    slot = next((s for s in SLOTS if release.slot(s).version == version and release.slot(s).capacity), None)
    if slot is None:
        raise InvalidInput(f"no slot of {service} runs {version}")
    provider = provider_for(analysis.metrics, seams.metrics)
    sources = slot_sources(service, out, [slot], release)
    for attempt in range(2):
        if attempt:
            await seams.clock.sleep(period)
        now = seams.clock.now()
        m = provider.read(sources, now - period, now, period).slots.get(slot)
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
