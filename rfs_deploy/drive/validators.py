"""The validate step: users' validation hooks, then the HTTP checks through the test listener."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfs_deploy.config.model import ReleaseState, ServiceConfig, ValidationSettings
from rfs_deploy.drive import events
from rfs_deploy.drive.hooks import HookContext, HookPhase, run_hooks
from rfs_deploy.drive.judge import SlotMetrics
from rfs_deploy.drive.probe import Batch, probe_paths, run_probe
from rfs_deploy.drive.records import DeploymentRecord, Sample, VerdictRecord
from rfs_deploy.drive.validation import validate
from rfs_deploy.outputs import ServiceOutputs

if TYPE_CHECKING:
    from rfs_deploy.drive.context import Seams
    from rfs_deploy.drive.runner import StepOutcome


def validation_settings(service: ServiceConfig) -> ValidationSettings:
    """The service's validation settings; unless ``validation.timeout`` is set, each check gets
    the seed's ``deploy.healthCheckTimeout``."""
    settings = service.validation
    if "timeout" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"timeout": float(service.deploy.health_check_timeout)})


async def run_validation(
    seams: Seams, record: DeploymentRecord, service: ServiceConfig, outputs: ServiceOutputs, version: str
) -> StepOutcome:
    """Pass only when every validation hook and every HTTP check passes."""
    from rfs_deploy.drive.runner import StepOutcome

    context = HookContext(
        deployment_id=record.deployment_id,
        service=record.service,
        version=version,
        environment=record.stack,
        phase=HookPhase.VALIDATION,
        strategy=record.strategy,
        previous_version=record.previous_version,
        base_url=outputs.test_url,
    )
    hooks = await run_hooks(seams.hooks.validation, context, HookPhase.VALIDATION)
    if not hooks.ok:
        return StepOutcome(False, hooks.summary)
    report = await validate(
        outputs.test_url,
        version,
        validation_settings(service),
        transport=seams.http_transport,
        clock=seams.clock,
    )
    if not report.ok:
        return StepOutcome(False, report.summary)
    ran = len(hooks.results)
    extra = f" and {ran} validation hook{'s' if ran != 1 else ''}" if ran else ""
    return StepOutcome(True, f"{report.summary}{extra}")


async def run_load_probe(
    seams: Seams,
    record: DeploymentRecord,
    service: ServiceConfig,
    outputs: ServiceOutputs,
    index: int,
    release: ReleaseState,
) -> StepOutcome:
    """Judge the idle slot under ``validation.probe`` load.

    Every batch is recorded like an analysis tick: its verdict, and a sample with what each
    slot answered (the probe's requests are the only traffic the idle slot has served).
    """
    from rfs_deploy.drive.runner import StepOutcome

    settings = validation_settings(service)
    probe = settings.probe
    weights: dict[str, int] = {slot: w for slot, w in release.weights.items()}

    def recorded(batch: Batch) -> None:
        now = seams.clock.now()
        verdict = batch.verdict
        # the live slot's batch is the verdict's baseline_* numbers
        numbers = dict(verdict.numbers, probe=True)
        reason = f"probe: {verdict.reason}"
        record.verdicts.append(VerdictRecord(now, index, verdict.outcome.value, reason, numbers))
        slots: dict[str, dict[str, float | None]] = {release.idle: _slot_numbers(batch.new)}
        if batch.live is not None:
            slots[release.live] = _slot_numbers(batch.live)
        record.samples.append(Sample(now, weights, slots, new_slot=release.idle, step=index))
        seams.notify(
            events.Tick(
                at=now,
                deployment_id=record.deployment_id,
                step=index,
                weights=weights,
                outcome=verdict.outcome.value,
                reason=reason,
                numbers=numbers,
            )
        )

    result = await run_probe(
        outputs.test_url,
        outputs.url if probe.compare_live else None,
        settings,
        service.analysis,
        transport=seams.http_transport,
        clock=seams.clock,
        on_batch=recorded,
    )
    paths = ", ".join(probe_paths(settings))
    what = f"load probe of {result.requests} requests ({paths})"
    if not result.passed:
        return StepOutcome(False, f"{what} failed: {result.verdict.reason}")
    return StepOutcome(True, f"{what} passed: {result.verdict.reason}")


def _slot_numbers(metrics: SlotMetrics) -> dict[str, float | None]:
    return {
        "requests": metrics.requests,
        "errors": metrics.errors,
        "error_rate": metrics.error_rate,
        "p99": metrics.p99,
        "cpu": None,
    }
