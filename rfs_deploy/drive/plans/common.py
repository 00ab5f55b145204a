"""What every plan shares: the starting-point checks and the timings derived from the config."""

from __future__ import annotations

from rfs_deploy.config.base import PauseStep
from rfs_deploy.config.model import ReleaseState, ServiceConfig
from rfs_deploy.config.strategies.rolling import Rolling
from rfs_deploy.drive.steps import DeployIdle, Gate, Pause, Promote, ScaleDown, Step, Validate, WaitHealthy
from rfs_deploy.errors import InvalidInput


def check_start(service: ServiceConfig, release: ReleaseState, version: str) -> None:
    """Refuse a release that cannot start from ``release`` (InvalidInput, one line, nothing changed)."""
    if not version.strip():
        raise InvalidInput("the version to deploy must not be empty")
    live = release.slot(release.live)
    if live.version == version:
        raise InvalidInput(f"version {version!r} is already live (slot {release.live})")
    idle_weight = release.weights[release.idle]
    if idle_weight > 0 or release.variants is not None:
        raise InvalidInput(
            f"slot {release.idle} still carries {idle_weight}% of traffic: a deployment is in progress; "
            "resume or abort it first"
        )
    if not service.artifact.has_image(version):
        raise InvalidInput(
            f"version {version!r} has no image: add it to artifact.amis or set artifact.defaultAmi"
        )


def wait_healthy_timeout(service: ServiceConfig) -> int:
    """How long a new slot may take to become healthy.

    The deployment's time budget (``deploy.maxDeploymentTime``), but never less than the health
    check itself needs to call an instance healthy: the grace period plus ``healthyThreshold``
    checks ``interval`` seconds apart.
    """
    return max(service.deploy.max_deployment_time, boot_seconds(service))


def boot_seconds(service: ServiceConfig) -> int:
    """Seconds a new instance needs before its health check can call it healthy: the grace
    period plus ``healthyThreshold`` checks ``interval`` seconds apart."""
    check = service.health_check
    return service.health_check_grace_period + check.interval * check.healthy_threshold


def refresh_duration(service: ServiceConfig, rolling: Rolling) -> int:
    """Seconds an instance refresh should take: one batch after another, each booting and
    passing its health checks (the warm-up runs alongside) and then pausing for ``batchInterval``."""
    grace = service.health_check_grace_period
    check = service.health_check
    healthy = grace + check.interval * check.healthy_threshold
    batches = rolling.batches(service.instance_count)
    return batches * (max(healthy, rolling.warmup(grace)) + rolling.batch_interval)


def analysis_interval(service: ServiceConfig, duration: int) -> int:
    """Seconds between judgements: the seed's health check interval, but at least one metric
    period (a shorter window has no new CloudWatch data) and at most the step itself."""
    interval = max(service.deploy.health_check_interval, service.analysis.period)
    return max(1, min(interval, duration))


def adopts_fleet(service: ServiceConfig, release: ReleaseState) -> bool:
    """Whether a release from ``release`` starts from the live group's size (:func:`adopt_fleet`):
    the service autoscales and no release runs."""
    return service.autoscaling is not None and release.at_rest


def adopt_fleet(
    service: ServiceConfig, release: ReleaseState, size: int | None
) -> tuple[ServiceConfig, ReleaseState]:
    """The service and release state a release of an autoscaled service starts from: the live
    group's ``size`` now (what its scaling policy made it; None: the recorded capacity), moved into
    ``autoscaling``'s bounds, is both the live slot's capacity and the ``instanceCount`` the new
    version is released at (docs/sizing.md). Unchanged without ``autoscaling`` or when a release
    is not at rest. ``deploy`` reads the size from the group; ``resume`` and ``promote`` take it
    from the release state of the deployment's first update, so they rebuild the same plan."""
    if not adopts_fleet(service, release):
        return service, release
    scaling = service.autoscaling
    assert scaling is not None  # adopts_fleet says so
    recorded = release.slot(release.live).capacity
    count = min(scaling.max, max(scaling.min, recorded if size is None else size))
    sized = release if count == recorded else release.with_slot(release.live, capacity=count)
    return service.model_copy(update={"instance_count": count}), sized


def fleet_line(service: ServiceConfig, recorded: ReleaseState) -> str:
    """What :func:`adopt_fleet` did, for ``rfs-deploy plan``: ``service`` is the adopted one,
    ``recorded`` the release state before it."""
    before = recorded.slot(recorded.live).capacity
    return (
        f"the live fleet runs {service.instance_count} instances (its scaling policy's size; "
        f"{before} on record): the release is made for {service.instance_count}"
    )


def pinned_live(service: ServiceConfig, release: ReleaseState) -> int | None:
    """The live slot's capacity the first change of an autoscaled service's release pins (its
    group's bounds leave the policy's hands then); None without ``autoscaling``."""
    return release.slot(release.live).capacity if service.autoscaling is not None else None


def prepare_idle(
    service: ServiceConfig,
    version: str,
    strategy: str,
    capacity: int | None = None,
    release: ReleaseState | None = None,
) -> tuple[Step, ...]:
    """The new version on the idle slot, healthy and validated, before any traffic moves.

    The slot starts with ``capacity`` instances (default: ``instanceCount``, the full size). Given
    the ``release`` the plan starts from, the live slot is pinned where :func:`pinned_live` says
    (every shipped plan passes it; without it an autoscaled live slot is pinned at its recorded
    capacity).
    The validate step also judges the slot under load when ``strategy`` is one of
    ``validation.probe.strategies`` (blue-green by default) and the probe sends requests.
    """
    probe = service.validation.probe
    return (
        DeployIdle(
            version=version,
            capacity=service.instance_count if capacity is None else capacity,
            live_capacity=None if release is None else pinned_live(service, release),
        ),
        WaitHealthy(timeout=wait_healthy_timeout(service), warmup=service.warmup),
        Validate(version=version, probe=strategy in probe.strategies and probe.requests > 0),
    )


def retire_old(scale_down_delay: int) -> tuple[Step, ...]:
    """Promote the new slot, keep the old one up for ``scale_down_delay`` seconds, scale it down."""
    pause: tuple[Step, ...] = (Pause(seconds=scale_down_delay, reason="scale-down delay"),)
    return (Promote(), *(pause if scale_down_delay > 0 else ()), ScaleDown())


def pause_step(pause: PauseStep, where: str) -> Step:
    """A step list's ``pause`` entry: a timed wait, or a gate held until the deployment is promoted."""
    if pause.duration is None:
        return Gate(reason=where)
    return Pause(seconds=pause.duration, reason=f"pause, {where}")


def pause_steps(pauses: list[PauseStep] | None, where: str) -> tuple[Step, ...]:
    """Every ``pause`` entry of a pauses-only step list (blue-green, A/B), in order."""
    return tuple(pause_step(pause, where) for pause in pauses or ())
