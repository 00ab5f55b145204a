"""Restoring a checkpoint: write its release state back and run an update, with retries.

Importing an old state file would change no cloud resource, so a rollback is always a forward
update to the old release state: the load balancer weights, the fleets and their launch
templates really return to what they were. Secrets and other config keys are never rewritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfs_deploy.config.model import ReleaseState
from rfs_deploy.drive import journal
from rfs_deploy.errors import RfsDeployError
from rfs_deploy.releases import ReleaseConflict

if TYPE_CHECKING:
    from rfs_deploy.drive.runner import Checkpoint, Runner

#: Longest pause between rollback attempts (seconds); attempts back off 10, 20, 40, ...
MAX_BACKOFF = 60
#: How long a refresh back to the old version may take after a rolling rollback.
REFRESH_WAIT = 1800


async def restore(
    runner: Runner, checkpoint: Checkpoint, reason: str, phase: journal.Phase = "rollback"
) -> bool:
    """Bring the service back to ``checkpoint``; True when the stack and the load balancer agree."""
    from rfs_deploy.drive.runner import StepFailed

    rec = runner.record
    target = checkpoint.release[rec.service]
    attempts = runner.service.deploy.max_rollback_attempts
    cancelled = await _stop_refresh(runner, target)

    def message(attempt: int, kind: str, text: str, wait: bool) -> str:
        tag = journal.JournalTag(
            deployment_id=rec.deployment_id,
            service=rec.service,
            step=attempt - 1,
            total=attempts,
            kind=kind,
            phase=phase,
            version=rec.version,
            strategy=rec.strategy,
            checkpoint=checkpoint.version,
            owner=journal.this_owner(),
            lease=runner.lease(),
            wait=wait,
        )
        return journal.encode(tag, text[:200])

    for attempt in range(1, attempts + 1):
        rec.rollback_attempts = attempt
        try:
            restoring = f"restore stack version {checkpoint.version}: {reason}"
            await runner.update(target, message(attempt, phase, restoring, wait=True))
            await runner.verify(target)
            await _settle(runner, cancelled)
            # only now is the restore finished: history says so with one more (empty) update
            done = f"stack version {checkpoint.version} restored: weights verified, fleet settled"
            await runner.update(target, message(attempt, journal.RESTORED, done, wait=False))
            return True
        except ReleaseConflict:
            # another process changed this service since the restore was decided (a live
            # deployment finished, say): retrying would write the checkpoint over its work.
            # The caller says what the stack now shows. (A stack lock that stayed taken is
            # retried like any failed attempt.)
            raise
        except (RfsDeployError, StepFailed) as exc:
            rec.errors.append(f"{phase} attempt {attempt}/{attempts} failed: {exc}")
            if attempt < attempts:
                await runner.seams.clock.sleep(min(MAX_BACKOFF, 10 * 2 ** (attempt - 1)))
    return False


async def _stop_refresh(runner: Runner, target: ReleaseState) -> str | None:
    """A refresh still replacing instances with the bad version is cancelled first; returns
    the id of the refresh it cancelled.

    Not when the stack config already holds the target: an earlier attempt (killed, or failed
    after its update) wrote it, cancelled the bad refresh then, and any refresh running now is
    the one back to the target — cancelling it would leave the slot half old, half new.
    """
    release = runner.release()
    if release == target:
        return None
    try:
        asg = runner.outputs().slot(release.live).asg_name
        status = runner.seams.fleet.latest_refresh(asg)
        if status is not None and status.status in ("Pending", "InProgress", "Baking"):
            runner.seams.fleet.cancel_refresh(asg)
            runner.record.errors.append(
                f"cancelled instance refresh {status.refresh_id} at {status.percentage_complete}%"
            )
            return status.refresh_id
    except RfsDeployError as exc:
        runner.record.errors.append(f"could not cancel the instance refresh: {exc}")
    return None


#: Refresh states after which the fleet runs the launch template the refresh was started for
#: (AWS's own rollback of a refresh puts the previous one back).
SETTLED = frozenset({"Successful", "RollbackSuccessful"})


async def _settle(runner: Runner, cancelled: str | None) -> None:
    """Wait until the restored live slot's fleet runs one version: its newest instance refresh
    (the one back, started by the restoring update) ended Successful, or there is none.

    A refresh that ended otherwise leaves the fleet running both versions, so the restore is not
    finished — unless it is the forward refresh this restore ``cancelled`` itself, whose
    successor (the refresh back) may take a few polls to show; none showing means nothing needed
    replacing. A refresh running is followed to its end, whoever started it (a killed earlier
    attempt, say): cancelling that one would leave the slot half old, half new.
    """
    from rfs_deploy.drive.runner import StepFailed

    release = runner.release()
    asg = runner.outputs().slot(release.live).asg_name
    waited = 0
    poll = 30
    while waited <= REFRESH_WAIT:
        status = await runner._io(runner.seams.fleet.latest_refresh, asg)
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
        await runner.seams.clock.sleep(poll)
        waited += poll
    raise StepFailed(f"refresh back to the old version still running after {REFRESH_WAIT}s")
