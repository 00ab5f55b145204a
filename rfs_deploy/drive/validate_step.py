"""The validate step: users' validation hooks (the stack file's, then Python ones), then the
HTTP checks through the test listener.

(:mod:`rfs_deploy.drive.validation` is the HTTP checks themselves; this module runs a plan's
validate step with them.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfs_deploy.config.model import ServiceConfig, ValidationSettings
from rfs_deploy.drive.command_hook import run_phase
from rfs_deploy.drive.hooks import HookContext, HookPhase
from rfs_deploy.drive.outcomes import StepOutcome
from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.drive.validation import validate
from rfs_deploy.outputs import ServiceOutputs

if TYPE_CHECKING:
    from rfs_deploy.drive.context import Seams


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
    context = HookContext.from_record(
        record, HookPhase.VALIDATION, version=version, base_url=outputs.test_url, result=record
    )
    hooks = await run_phase(seams.hooks.validation, service.hooks, context, HookPhase.VALIDATION)
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
