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
    await _stop_refresh(runner, target)
    for attempt in range(1, attempts + 1):
        rec.rollback_attempts = attempt
        tag = journal.JournalTag(
            deployment_id=rec.deployment_id,
            service=rec.service,
            step=attempt - 1,
            total=attempts,
            kind=phase,
            phase=phase,
            version=rec.version,
            strategy=rec.strategy,
            checkpoint=checkpoint.version,
            owner=journal.this_owner(),
            lease=runner.lease(),
        )
        message = journal.encode(tag, f"restore stack version {checkpoint.version}: {reason}"[:200])
        try:
            before = runner.release()
            previous = _latest_refresh_id(runner)
            await runner.update(target, message)
            await runner.verify(target)
            # follow the refresh back when this update changed the live version, or when one is
            # running anyway: a killed earlier attempt wrote the config and its update started it
            changed = before.slot(before.live).version != target.slot(target.live).version
            if changed or _refresh_active(runner):
                await _wait_refresh(runner, previous)
            return True
        except (RfsDeployError, StepFailed) as exc:
            rec.errors.append(f"{phase} attempt {attempt}/{attempts} failed: {exc}")
            if attempt < attempts:
                await runner.seams.clock.sleep(min(MAX_BACKOFF, 10 * 2 ** (attempt - 1)))
    return False


async def _stop_refresh(runner: Runner, target: ReleaseState) -> None:
    """A refresh still replacing instances with the bad version is cancelled first.

    Not when the stack config already holds the target: an earlier attempt (killed, or failed
    after its update) wrote it, cancelled the bad refresh then, and any refresh running now is
    the one back to the target — cancelling it would leave the slot half old, half new.
    """
    release = runner.release()
    if release == target:
        return
    try:
        asg = runner.outputs().slot(release.live).asg_name
        status = runner.seams.fleet.latest_refresh(asg)
        if status is not None and status.status in ("Pending", "InProgress", "Baking"):
            runner.seams.fleet.cancel_refresh(asg)
            runner.record.errors.append(
                f"cancelled instance refresh {status.refresh_id} at {status.percentage_complete}%"
            )
    except RfsDeployError as exc:
        runner.record.errors.append(f"could not cancel the instance refresh: {exc}")


def _refresh_active(runner: Runner) -> bool:
    release = runner.release()
    status = runner.seams.fleet.latest_refresh(runner.outputs().slot(release.live).asg_name)
    return status is not None and not status.done


def _latest_refresh_id(runner: Runner) -> str | None:
    release = runner.release()
    status = runner.seams.fleet.latest_refresh(runner.outputs().slot(release.live).asg_name)
    return None if status is None else status.refresh_id


async def _wait_refresh(runner: Runner, previous_id: str | None) -> None:
    """After restoring a live slot's version, follow the refresh back until it ends.

    The update starts a new refresh (the program's instance refresh triggers on a launch template
    change); one that never appears within a few polls means nothing needed replacing.
    """
    from rfs_deploy.drive.runner import StepFailed

    release = runner.release()
    asg = runner.outputs().slot(release.live).asg_name
    waited = 0
    poll = 30
    while waited <= REFRESH_WAIT:
        status = runner.seams.fleet.latest_refresh(asg)
        if status is None or status.status == "Successful":
            return
        if not status.done:
            pass  # one is running (this update's, or a killed attempt's): wait for it to end
        elif status.refresh_id == previous_id:
            if waited >= 4 * poll:
                return
        elif status.done:
            raise StepFailed(f"refresh back to the old version ended {status.status}: {status.status_reason}")
        await runner.seams.clock.sleep(poll)
        waited += poll
    raise StepFailed(f"refresh back to the old version still running after {REFRESH_WAIT}s")
