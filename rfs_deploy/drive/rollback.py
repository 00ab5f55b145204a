"""Restoring a checkpoint: write its release state back and run an update, with retries.

Importing an old state file would change no cloud resource, so a rollback is always a forward
update to the old release state: the load balancer weights, the fleets and their launch
templates really return to what they were. Secrets and other config keys are never rewritten.

Nothing here needs a plan: :func:`roll_back` works on a
:class:`~rfs_deploy.drive.stack.DeploymentStack` (the deployment's record, its checkpoint, the
journaled update) and the service's ``deploy`` settings. The runner calls it when a step fails or
a cancel asks for an abort; the driver calls it directly for ``abort``, ``rollback`` and the end
of an interrupted restore.
"""

from __future__ import annotations

from rfs_deploy.config.hooks import ServiceHooks
from rfs_deploy.config.model import DeploySettings, ReleaseState
from rfs_deploy.drive import events
from rfs_deploy.drive.cancel import CancelRequested
from rfs_deploy.drive.command_hook import run_phase
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.hooks import HookContext, HookPhase
from rfs_deploy.drive.journal import Checkpoint, latest_deployment
from rfs_deploy.drive.outcomes import StepFailed
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.drive.stack import DeploymentStack, Sleep
from rfs_deploy.errors import RfsDeployError
from rfs_deploy.journal_tags import RESTORED, Phase
from rfs_deploy.logs import get_logger
from rfs_deploy.releases import ReleaseConflict

log = get_logger(__name__)

#: Longest pause between rollback attempts (seconds); attempts back off 10, 20, 40, ...
MAX_BACKOFF = 60
#: How long a refresh back to the old version may take after a rolling rollback.
REFRESH_WAIT = 1800


async def roll_back(
    stack: DeploymentStack,
    deploy: DeploySettings,
    reason: str,
    status_reason: str = "rolled back",
    on_request: bool = False,
    phase: Phase = "rollback",
    sleep: Sleep | None = None,
    hooks: ServiceHooks | None = None,
) -> None:
    """Restore the deployment's checkpoint, retrying up to ``maxRollbackAttempts`` times, and
    finish its record (status, errors, the recovery command when it failed).

    Once the checkpoint is restored the post-rollback hooks run (the service's command ``hooks``,
    then the seams' Python ones); a failed one is recorded in ``errors`` and logged, and the
    deployment stays ROLLED_BACK.

    ``deploy.autoRollback`` off stops only the automatic rollback of a failed deployment;
    a rollback or abort asked for (``on_request``) always runs. ``phase`` tags the updates
    in history (``abort`` for an abort, so the journal shows the deployment aborted).
    ``sleep`` paces the load balancer checks (default: the stack's own heartbeat wait).
    """
    rec = stack.record
    seams = stack.seams
    checkpoint = stack.checkpoint
    cancel = seams.cancellation
    if cancel is not None:
        cancel.stage = "restoring"  # a first cancel request no longer interrupts its waits
        cancel.record = cancel.record or rec
    if not on_request and not deploy.auto_rollback:
        rec.status = DeploymentStatus.FAILED
        rec.ended_at = seams.clock.now()
        # history shows the deployment open, so rollback would refuse it: abort finishes it
        rec.recovery = f"{seams.command_prefix} abort --stack {rec.stack}"
        rec.errors.append(f"{reason}; auto rollback is off")
        stack.emit(events.DeploymentFinished, status=rec.status.value, reason=reason)
        stack.save()
        return
    stack.emit(events.RollbackStarted, reason=reason, target_version=checkpoint.version)
    rec.rollback_attempts = 0
    stopped: str | None = None
    try:
        ok = await restore(stack, deploy.max_rollback_attempts, reason, phase=phase, sleep=sleep)
    except CancelRequested as exc:  # a second signal, or the cancel grace period ran out
        ok, stopped = False, str(exc)
    rec.ended_at = seams.clock.now()
    if ok:
        rec.status = DeploymentStatus.ROLLED_BACK
        rec.rolled_back_to = checkpoint.version
    else:
        rec.status = DeploymentStatus.FAILED
        rec.recovery = recovery_command(seams, rec, checkpoint)
    if stopped is not None:
        if rec.rollback_attempts == 0:
            # no restoring update ran: stack history still shows the deployment open
            rec.recovery = cancel_commands(seams, rec)["abort"]
        rec.errors.append(f"{phase} stopped right after the update in flight: {stopped}")
        found = latest_deployment(seams.backend.history(), rec.service)
        if found is not None and found.deployment_id == rec.deployment_id and found.awaiting_world:
            # the restoring update itself succeeded; the wait for AWS to show it was cut short,
            # so the journal keeps the restore open until a new process confirms it
            rec.errors.append(
                f"its update to stack version {checkpoint.version}'s release state succeeded; "
                "the check that the load balancer and instances show it did not finish"
            )
            rec.recovery = cancel_commands(seams, rec)["resume"]
        if cancel is not None:
            cancel.outcome = "stopped"
    elif ok:
        await _post_rollback(stack, hooks, f"{status_reason}: {reason}", on_request)
    if cancel is not None:
        cancel.stage = "finished"
    stack.emit(events.DeploymentFinished, status=rec.status.value, reason=f"{status_reason}: {reason}")
    stack.save()


async def _post_rollback(
    stack: DeploymentStack, hooks: ServiceHooks | None, reason: str, on_request: bool
) -> None:
    rec = stack.record
    extra = {"rolled_back_to": str(rec.rolled_back_to), "on_request": "true" if on_request else "false"}
    context = HookContext.from_record(rec, HookPhase.POST_ROLLBACK, result=rec, reason=reason, extra=extra)
    report = await run_phase(stack.seams.hooks.post_rollback, hooks, context, HookPhase.POST_ROLLBACK)
    if not report.ok:
        rec.errors.append(f"{report.summary} (the rollback stands)")
        log.warning("%s of %s: %s; the rollback stands", rec.deployment_id, rec.service, report.summary)


def cancel_commands(seams: Seams, record: DeploymentRecord) -> dict[str, str]:
    """The commands that continue (``resume``) or finish (``abort``) a deployment left open."""
    where = f"--stack {record.stack} --service {record.service}"
    prefix = seams.command_prefix
    return {"resume": f"{prefix} resume {where}", "abort": f"{prefix} abort {where}"}


def recovery_command(seams: Seams, record: DeploymentRecord, checkpoint: Checkpoint) -> str:
    """The command that finishes a failed restore of ``checkpoint``."""
    return (
        f"{seams.command_prefix} rollback --stack {record.stack} "
        f"--service {record.service} --to {checkpoint.version}"
    )


async def restore(
    stack: DeploymentStack,
    attempts: int,
    reason: str,
    phase: Phase = "rollback",
    sleep: Sleep | None = None,
) -> bool:
    """Bring the service back to the stack's checkpoint in up to ``attempts`` attempts; True when
    the stack and the load balancer agree (and the fleet settled)."""
    rec = stack.record
    checkpoint = stack.checkpoint
    target = checkpoint.release[rec.service]
    cancelled = await _stop_refresh(stack, target)

    async def update(attempt: int, kind: str, text: str, wait: bool) -> None:
        await stack.update(
            target, step=attempt - 1, total=attempts, kind=kind, phase=phase, text=text[:200], wait=wait
        )

    for attempt in range(1, attempts + 1):
        rec.rollback_attempts = attempt
        try:
            await update(attempt, phase, f"restore stack version {checkpoint.version}: {reason}", wait=True)
            await stack.verify(target, sleep)
            await _settle(stack, cancelled)
            # only now is the restore finished: history says so with one more (empty) update
            done = f"stack version {checkpoint.version} restored: weights verified, fleet settled"
            await update(attempt, RESTORED, done, wait=False)
            return True
        except ReleaseConflict:
            # another process changed this service since the restore was decided (a live
            # deployment finished, say): retrying would write the checkpoint over its work.
            # The caller says what the stack now shows. (A stack lock that stayed taken is
            # retried like any failed attempt.)
            raise
        except RfsDeployError as exc:  # StepFailed included: a check that did not pass
            rec.errors.append(f"{phase} attempt {attempt}/{attempts} failed: {exc}")
            if attempt < attempts:
                await stack.seams.clock.sleep(min(MAX_BACKOFF, 10 * 2 ** (attempt - 1)))
    return False


async def _stop_refresh(stack: DeploymentStack, target: ReleaseState) -> str | None:
    """A refresh still replacing instances with the bad version is cancelled first; returns
    the id of the refresh it cancelled.

    Not when the stack config already holds the target: an earlier attempt (killed, or failed
    after its update) wrote it, cancelled the bad refresh then, and any refresh running now is
    the one back to the target — cancelling it would leave the slot half old, half new.
    """
    release = stack.release()
    if release == target:
        return None
    fleet = stack.seams.fleet
    try:
        asg = stack.outputs().slot(release.live).asg_name
        status = fleet.latest_refresh(asg)
        if status is not None and status.status in ("Pending", "InProgress", "Baking"):
            fleet.cancel_refresh(asg)
            stack.record.errors.append(
                f"cancelled instance refresh {status.refresh_id} at {status.percentage_complete}%"
            )
            return status.refresh_id
    except RfsDeployError as exc:
        stack.record.errors.append(f"could not cancel the instance refresh: {exc}")
    return None


#: Refresh states after which the fleet runs the launch template the refresh was started for
#: (AWS's own rollback of a refresh puts the previous one back).
SETTLED = frozenset({"Successful", "RollbackSuccessful"})


async def _settle(stack: DeploymentStack, cancelled: str | None) -> None:
    """Wait until the restored live slot's fleet runs one version: its newest instance refresh
    (the one back, started by the restoring update) ended Successful, or there is none.

    A refresh that ended otherwise leaves the fleet running both versions, so the restore is not
    finished — unless it is the forward refresh this restore ``cancelled`` itself, whose
    successor (the refresh back) may take a few polls to show; none showing means nothing needed
    replacing. A refresh running is followed to its end, whoever started it (a killed earlier
    attempt, say): cancelling that one would leave the slot half old, half new.
    """
    release = stack.release()
    asg = stack.outputs().slot(release.live).asg_name
    waited = 0
    poll = 30
    while waited <= REFRESH_WAIT:
        status = stack.seams.fleet.latest_refresh(asg)
        if status is None or status.status in SETTLED:
            return
        if status.done and status.refresh_id == cancelled:
            if waited >= 4 * poll:
                return
        elif status.done:
            raise StepFailed(
                f"instance refresh {status.refresh_id} of the live slot ended {status.status}"
                f"{': ' + status.status_reason if status.status_reason else ''}; its fleet may run both "
                f"versions: start an instance refresh of {asg} once its cause is fixed, then resume"
            )
        await stack.seams.clock.sleep(poll)
        waited += poll
    raise StepFailed(f"refresh back to the old version still running after {REFRESH_WAIT}s")
