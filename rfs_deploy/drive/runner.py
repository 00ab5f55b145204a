"""The runner: executes a plan step by step and rolls back when a step fails.

For every step: checkpoint (stack history already holds it), apply (one stack update carrying a
journal tag), verify the change is visible in AWS, observe, judge, then advance or roll back.
Each step kind has one small handler; the loop itself only sequences them.

Rollback target: the *pre-deployment checkpoint* — the stack history version and release state
in force before this deployment's first update. That is the last state known good for users:
rolling back a canary to its previous step would keep the bad version in production.

Time budget: ``deploy.deploymentTimeout`` is a hard cap; within it, a deployment may overrun its
plan's own schedule (bakes, intervals, delays) by ``deploy.maxDeploymentTime`` seconds or by the
schedule's own length, whichever is more — the time spent waiting on the world (health, listener
propagation, refresh progress, windows extended for lack of data). A long canary has more windows
that sparse metrics can stretch, so its allowance grows with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rfs_deploy.config.model import SLOTS, ReleaseState, ServiceConfig, SlotName
from rfs_deploy.drive import events, journal
from rfs_deploy.drive.analysis import Analyst
from rfs_deploy.drive.cancel import CancelRequested
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.journal import Checkpoint
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus, StepRecord
from rfs_deploy.drive.steps import (
    Analyze,
    Change,
    Decide,
    Pause,
    Step,
    Validate,
    WaitHealthy,
    WatchRefresh,
)
from rfs_deploy.errors import RfsDeployError, StackBusy
from rfs_deploy.outputs import ServiceOutputs, parse_outputs
from rfs_deploy.releases import ReleaseConflict

T = TypeVar("T")

#: Seconds between polls of the load balancer while a change propagates.
VERIFY_POLL = 5
#: How long a listener change may take to become visible before the step fails.
VERIFY_TIMEOUT = 120
#: Seconds between tries while another process holds the stack lock (see Seams.lock_wait).
LOCK_POLL = 10
#: Seconds a journal lease adds to the runner's time budget: time to roll back.
LEASE_MARGIN = 900


@dataclass(frozen=True)
class StepOutcome:
    passed: bool
    reason: str = ""
    #: A/B only: the test decided for A, so the deployment ends by restoring A (not a failure).
    keep_baseline: bool = False
    #: The step's wait was interrupted by a cancel request (see :mod:`rfs_deploy.drive.cancel`).
    cancelled: bool = False


class StepFailed(Exception):
    """Raised inside a handler to fail the current step with a one-line reason."""


class Runner:
    """Runs one deployment's plan from ``start`` to the end (or to a rollback)."""

    def __init__(
        self,
        seams: Seams,
        record: DeploymentRecord,
        service: ServiceConfig,
        steps: tuple[Step, ...],
        checkpoint: Checkpoint,
        planned_seconds: float,
        started_at: float | None = None,
        image: str | None = None,
    ) -> None:
        self.seams = seams
        self.record = record
        self.service = service
        self.steps = steps
        self.checkpoint = checkpoint
        self.analyst = Analyst(seams, record, service)
        #: The AMI this deployment brings for its version (None: the config's artifact).
        self.image = image
        self._outputs: ServiceOutputs | None = None
        self._settings = journal.settings_digest(service)
        overrun = max(service.deploy.max_deployment_time, planned_seconds)
        budget = min(planned_seconds + overrun, service.deploy.deployment_timeout)
        #: The budget runs from ``started_at`` (default: the record's start; resume: now).
        self.deadline = (record.started_at if started_at is None else started_at) + budget

    # ------------------------------------------------------------------ the loop

    async def run(self, start: int = 0) -> DeploymentRecord:
        rec = self.record
        rec.status = DeploymentStatus.IN_PROGRESS
        rec.total_steps = len(self.steps)
        rec.recovery = None  # a resumed deployment: the old way out no longer applies
        self._save()
        cancel = self.seams.cancellation
        for index in range(start, len(self.steps)):
            step = self.steps[index]
            if cancel is not None and cancel.requested:
                await self._cancelled(index)
                return rec
            if self.seams.clock.now() > self.deadline:
                reason = f"deployment exceeded its time budget before step {index + 1}"
                rec.errors.append(reason)
                await self.roll_back(reason)
                return rec
            outcome = await self._run_step(index, step)
            # a failed stack change while a cancel is pending is the cancel's: the engine may
            # have cancelled its update on the same signal (a failed judgement still rolls back)
            if outcome.cancelled or (
                cancel is not None and cancel.requested and not outcome.passed and isinstance(step, Change)
            ):
                await self._cancelled(index)
                return rec
            if outcome.keep_baseline:
                await self.roll_back(outcome.reason, status_reason="kept A")
                return rec
            if not outcome.passed:
                await self.roll_back(f"step {index + 1} ({step.kind}) failed: {outcome.reason}")
                return rec
        if cancel is not None and cancel.requested:
            await self._cancelled(len(self.steps))
            return rec
        if self.steps and not self.steps[-1].changes_stack:
            # the journal needs an update that says the deployment ended (see journal.py)
            last = len(self.steps) - 1
            await self.update(self.release(), self._message(last, self.steps[last], "done"))
        rec.status = DeploymentStatus.COMPLETED
        rec.ended_at = self.seams.clock.now()
        if cancel is not None:
            cancel.stage = "finished"
        self._emit(events.DeploymentFinished, status=rec.status.value, reason="all steps passed")
        self._save()
        return rec

    async def _run_step(self, index: int, step: Step) -> StepOutcome:
        rec = self.record
        rec.current_step = index
        srec = StepRecord(index, step.kind, step.describe(), self.seams.clock.now())
        rec.steps = [s for s in rec.steps if s.index != index] + [srec]
        if isinstance(step, Validate):
            rec.status = DeploymentStatus.VALIDATING
        self._emit(
            events.StepStarted,
            index=index,
            total=len(self.steps),
            kind=step.kind,
            description=step.describe(),
        )
        self._save()
        try:
            outcome = await self._handle(index, step, srec)
        except StepFailed as exc:
            outcome = StepOutcome(False, str(exc))
        except CancelRequested as exc:
            outcome = StepOutcome(False, f"{exc}; the step's wait was interrupted", cancelled=True)
        except (StackBusy, ReleaseConflict):
            raise  # another process holds or changed the stack: no step failure, no rollback
        except RfsDeployError as exc:
            outcome = StepOutcome(False, str(exc))
        rec.status = DeploymentStatus.IN_PROGRESS
        srec.ended_at = self.seams.clock.now()
        srec.outcome = "passed" if outcome.passed else "cancelled" if outcome.cancelled else "failed"
        srec.reason = outcome.reason
        if not outcome.passed and not outcome.cancelled:
            rec.errors.append(f"step {index + 1} ({step.kind}): {outcome.reason}")
        self._emit(
            events.StepFinished, index=index, kind=step.kind, outcome=srec.outcome, reason=outcome.reason
        )
        self._save()
        return outcome

    async def _handle(self, index: int, step: Step, srec: StepRecord) -> StepOutcome:
        if isinstance(step, Change):
            target = self._with_image(step.apply(self.release()))
            message = self._message(index, step, "step")
            srec.stack_version = await self.update(target, message)
            await self.verify(target)
            return StepOutcome(True, "change applied and visible")
        if isinstance(step, WaitHealthy):
            return await self._wait_healthy(step)
        if isinstance(step, Validate):
            return await self._validate(index, step)
        if isinstance(step, Pause):
            await self._sleep(step.seconds)
            return StepOutcome(True, f"waited {step.seconds}s")
        if isinstance(step, Analyze):
            return await self.analyst.analyze(index, step, self.release(), self.outputs())
        if isinstance(step, WatchRefresh):
            return await self.analyst.watch_refresh(index, step, self.release(), self.outputs())
        if isinstance(step, Decide):
            return await self.analyst.decide(index, step, self.release(), self.outputs())
        raise StepFailed(f"no handler for step kind {step.kind}")

    # ------------------------------------------------------------------ stack

    def release(self) -> ReleaseState:
        return self.seams.backend.read_config().release[self.record.service]

    def outputs(self) -> ServiceOutputs:
        if self._outputs is None:
            self._outputs = parse_outputs(self.seams.backend.outputs(), self.record.service)
        return self._outputs

    async def update(self, target: ReleaseState, message: str) -> int:
        """Write ``target`` as this service's release state and run one stack update.

        While another update holds the stack (another service's deployment, a ``pulumi up``)
        this waits for it, up to ``seams.lock_wait`` seconds of real time, saying so every
        :data:`LOCK_POLL` seconds; then StackBusy. ReleaseConflict (another process changed this
        service's live state) passes straight up: the update changed nothing."""
        backend = self.seams.backend
        releases = dict(backend.read_config().release)
        releases[self.record.service] = target
        waited = 0.0
        while True:
            backend.write_release(releases)
            try:
                result = await asyncio.to_thread(backend.up, message)
                break
            except StackBusy as exc:
                if waited >= self.seams.lock_wait:
                    raise StackBusy(f"{exc}; gave up after waiting {waited:.0f}s for the stack lock") from exc
                self._emit(
                    events.Heartbeat,
                    step=self.record.current_step,
                    label=f"waiting for the stack lock ({exc})",
                    waited=waited,
                    total=self.seams.lock_wait,
                )
                pause = min(LOCK_POLL, self.seams.lock_wait - waited)
                # another process holds the lock: wait in real time, not on the plan's clock, and
                # stop at once on a cancel (nothing is in flight between two tries)
                end = waited + pause
                while waited < end:
                    if self.seams.cancellation is not None:
                        self.seams.cancellation.check()
                    step = min(1.0, end - waited)
                    await asyncio.sleep(step)
                    waited += step
        self._outputs = None  # outputs may change with an update
        return result.version

    def _with_image(self, target: ReleaseState) -> ReleaseState:
        """``target`` with this deployment's AMI on the slots that run its version."""
        if self.image is None:
            return target
        for slot in SLOTS:
            state = target.slot(slot)
            if state.version == self.record.version and state.image is None:
                target = target.with_slot(slot, image=self.image)
        return target

    async def verify(self, target: ReleaseState) -> None:
        """Poll ELBv2 until the listeners show ``target``; fail the step after VERIFY_TIMEOUT."""
        waited = 0
        while True:
            problem = await self._io(self._listener_mismatch, target)
            if problem is None:
                return
            if waited >= VERIFY_TIMEOUT:
                raise StepFailed(f"load balancer does not show the change after {waited}s: {problem}")
            await self._sleep(VERIFY_POLL)
            waited += VERIFY_POLL

    def _listener_mismatch(self, target: ReleaseState) -> str | None:
        out = self.outputs()
        traffic = self.seams.traffic
        expected = {out.slot(s).target_group_arn: target.weights[s] for s in SLOTS if target.weights[s] > 0}
        actual = {arn: w for arn, w in traffic.forward_weights(out.listener_arn).items() if w > 0}
        if _normalise(actual) != _normalise(expected):
            return f"production listener weights {self._by_slot(actual)} instead of {self._by_slot(expected)}"
        idle_tg = out.slot(target.idle).target_group_arn
        test = {arn for arn, w in traffic.forward_weights(out.test_listener_arn).items() if w > 0}
        if test != {idle_tg}:
            shown = sorted(self._by_slot(dict.fromkeys(test, 1)))
            return f"test listener forwards to {shown}, not {target.idle}"
        sticky = traffic.stickiness(out.listener_arn)
        if (sticky or None) != target.stickiness:
            return f"stickiness {sticky} instead of {target.stickiness}"
        rules = traffic.rules(out.listener_arn)
        if (target.variants is None) != (not rules):
            return (
                f"{len(rules)} listener rules; expected {'none' if target.variants is None else 'A/B rules'}"
            )
        return None

    def _by_slot(self, weights: dict[str, int]) -> dict[str, int]:
        out = self.outputs()
        names = {out.slot(s).target_group_arn: s for s in SLOTS}
        return {names.get(arn, arn): w for arn, w in weights.items()}

    # ------------------------------------------------------------------ observations

    async def _wait_healthy(self, step: WaitHealthy) -> StepOutcome:
        """Every target healthy, then still healthy after ``step.warmup`` seconds of warm-up.

        A target that turns unhealthy during warm-up starts the warm-up again; the whole wait
        is bounded by ``step.timeout`` plus the warm-up.
        """
        release = self.release()
        slot: SlotName = release.idle
        want = release.slot(slot).capacity
        tg = self.outputs().slot(slot).target_group_arn
        poll = max(1, self.service.health_check.interval)
        waited = 0
        healthy_since: int | None = None
        while True:
            health = await self._io(self.seams.traffic.target_health, tg)
            all_healthy = (
                want > 0 and health.healthy >= want and health.unhealthy == 0 and health.initial == 0
            )
            if not all_healthy:
                healthy_since = None
            elif healthy_since is None:
                healthy_since = waited
            if healthy_since is not None and waited - healthy_since >= step.warmup:
                warm = f", warm for {waited - healthy_since}s" if step.warmup else ""
                return StepOutcome(
                    True, f"{health.healthy}/{want} targets healthy after {healthy_since}s{warm}"
                )
            if waited >= step.timeout + step.warmup:
                raise StepFailed(
                    f"new slot not healthy after {waited}s: {health.healthy}/{want} healthy, "
                    f"{health.unhealthy} unhealthy, {health.initial} starting"
                )
            await self._sleep(poll)
            waited += poll

    async def _validate(self, index: int, step: Validate) -> StepOutcome:
        from rfs_deploy.drive.validators import run_validation

        outcome = await run_validation(self.seams, self.record, self.service, self.outputs(), step.version)
        if not outcome.passed or not step.probe:
            return outcome
        probed = await self.analyst.probe(index, self.release(), self.outputs())
        if not probed.passed:
            return probed
        return StepOutcome(True, f"{outcome.reason}; {probed.reason}")

    # ------------------------------------------------------------------ rollback

    async def roll_back(
        self,
        reason: str,
        status_reason: str = "rolled back",
        on_request: bool = False,
        phase: journal.Phase = "rollback",
    ) -> None:
        """Restore the pre-deployment checkpoint, retrying up to ``maxRollbackAttempts`` times.

        ``deploy.autoRollback`` off stops only the automatic rollback of a failed deployment;
        a rollback or abort asked for (``on_request``) always runs. ``phase`` tags the updates
        in history (``abort`` for an abort, so the journal shows the deployment aborted).
        """
        from rfs_deploy.drive.rollback import restore

        rec = self.record
        cancel = self.seams.cancellation
        if cancel is not None:
            cancel.stage = "restoring"  # a first cancel request no longer interrupts its waits
            cancel.record = cancel.record or rec
        if not on_request and not self.service.deploy.auto_rollback:
            rec.status = DeploymentStatus.FAILED
            rec.ended_at = self.seams.clock.now()
            # history shows the deployment open, so rollback would refuse it: abort finishes it
            rec.recovery = f"{self.seams.command_prefix} abort --stack {self.record.stack}"
            rec.errors.append(f"{reason}; auto rollback is off")
            self._emit(events.DeploymentFinished, status=rec.status.value, reason=reason)
            self._save()
            return
        self._emit(events.RollbackStarted, reason=reason, target_version=self.checkpoint.version)
        rec.rollback_attempts = 0
        stopped: str | None = None
        try:
            ok = await restore(self, self.checkpoint, reason, phase=phase)
        except CancelRequested as exc:  # a second signal, or the cancel grace period ran out
            ok, stopped = False, str(exc)
        rec.ended_at = self.seams.clock.now()
        if ok:
            rec.status = DeploymentStatus.ROLLED_BACK
            rec.rolled_back_to = self.checkpoint.version
        else:
            rec.status = DeploymentStatus.FAILED
            rec.recovery = self._recovery_command()
        if stopped is not None:
            if rec.rollback_attempts == 0:
                # no restoring update ran: stack history still shows the deployment open
                rec.recovery = self._cancel_commands()["abort"]
            rec.errors.append(f"{phase} stopped right after the update in flight: {stopped}")
            found = journal.latest_deployment(self.seams.backend.history(), rec.service)
            if found is not None and found.deployment_id == rec.deployment_id and found.awaiting_world:
                # the restoring update itself succeeded; the wait for AWS to show it was cut short,
                # so the journal keeps the restore open until a new process confirms it
                rec.errors.append(
                    f"its update to stack version {self.checkpoint.version}'s release state succeeded; "
                    "the check that the load balancer and instances show it did not finish"
                )
                rec.recovery = self._cancel_commands()["resume"]
            if cancel is not None:
                cancel.outcome = "stopped"
        if cancel is not None:
            cancel.stage = "finished"
        self._emit(events.DeploymentFinished, status=rec.status.value, reason=f"{status_reason}: {reason}")
        self._save()

    # ------------------------------------------------------------------ cancellation

    async def _cancelled(self, next_index: int) -> None:
        """Act on a cancel request at a safe point, before plan step ``next_index`` (see
        :mod:`rfs_deploy.drive.cancel`): nothing changed yet, leave, or abort to the checkpoint."""
        cancel = self.seams.cancellation
        assert cancel is not None
        rec = self.record
        cancel.record = rec
        cancel.commands = self._cancel_commands()
        total = len(self.steps)
        where = f"before step {next_index + 1}/{total}" if next_index < total else "after the last step"
        why = f"cancelled by {cancel.name} {where}"
        if not self._touched():
            rec.status = DeploymentStatus.ROLLED_BACK
            rec.ended_at = self.seams.clock.now()
            rec.errors.append(f"{why}; nothing was changed")
            cancel.outcome, cancel.stage = "untouched", "finished"
            self._emit(events.DeploymentFinished, status=rec.status.value, reason=rec.errors[-1])
            self._save()
            return
        if cancel.on_cancel == "leave":
            resume, abort = cancel.commands["resume"], cancel.commands["abort"]
            rec.errors.append(f"{why}; left as it is (--on-cancel leave)")
            rec.recovery = f"{resume} (continue) or {abort} (roll back)"
            cancel.outcome, cancel.stage = "left", "finished"
            self._emit(events.Note, message=f"{why}: left as it is; continue: {resume}; roll back: {abort}")
            self._save()
            return
        if cancel.forced:
            # a second signal (or the end of the grace period) came before the rollback could start
            rec.status = DeploymentStatus.FAILED
            rec.ended_at = self.seams.clock.now()
            rec.recovery = cancel.commands["abort"]
            rec.errors.append(f"{why}; {cancel.stop_reason()} before the rollback started: still open")
            cancel.outcome, cancel.stage = "stopped", "finished"
            self._emit(events.DeploymentFinished, status=rec.status.value, reason=rec.errors[-1])
            self._save()
            return
        rec.errors.append(why)
        await self.roll_back(why, status_reason="cancelled", on_request=True, phase="abort")
        if cancel.outcome is None:
            cancel.outcome = "rolled-back" if rec.status is DeploymentStatus.ROLLED_BACK else "failed"

    def _touched(self) -> bool:
        """Whether stack history holds an update of this deployment."""
        found = journal.latest_deployment(self.seams.backend.history(), self.record.service)
        return found is not None and found.deployment_id == self.record.deployment_id

    def _cancel_commands(self) -> dict[str, str]:
        where = f"--stack {self.record.stack} --service {self.record.service}"
        prefix = self.seams.command_prefix
        return {"resume": f"{prefix} resume {where}", "abort": f"{prefix} abort {where}"}

    def _recovery_command(self) -> str:
        return (
            f"{self.seams.command_prefix} rollback --stack {self.record.stack} "
            f"--service {self.record.service} --to {self.checkpoint.version}"
        )

    # ------------------------------------------------------------------ plumbing

    def _message(self, index: int, step: Step, phase: journal.Phase) -> str:
        tag = journal.JournalTag(
            deployment_id=self.record.deployment_id,
            service=self.record.service,
            step=index,
            total=len(self.steps),
            kind=step.kind,
            phase=phase,
            version=self.record.version,
            strategy=self.record.strategy,
            checkpoint=self.checkpoint.version,
            settings=self._settings,
            owner=journal.this_owner(),
            lease=self.lease(),
        )
        return journal.encode(tag, step.describe())

    def lease(self) -> int:
        """The owner's lease for the journal: the wall-clock time by which this runner has
        either finished or given up (its time budget), plus time to roll back."""
        left = max(0.0, self.deadline - self.seams.clock.now())
        return int(time.time() + left + LEASE_MARGIN)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the clock, in chunks that end on multiples of
        ``events.HEARTBEAT_SECONDS`` of the current step's time; each chunk that leaves the step
        still waiting emits a Heartbeat, so a 300 s switch delay or a long run of health polls
        is never silent for more than that (CI kills jobs that print nothing)."""
        every = events.HEARTBEAT_SECONDS
        index = self.record.current_step
        step = self.steps[index] if 0 <= index < len(self.steps) else None
        srec = next((s for s in self.record.steps if s.index == index and s.ended_at is None), None)
        now = self.seams.clock.now()
        # inside a running step its time counts from the step's start; elsewhere (a resume
        # re-applying a step, a rollback's checks) from this wait's start
        base = srec.started_at if step is not None and srec is not None else now
        if isinstance(step, Pause) and srec is not None:
            label, total = step.reason, float(step.seconds)
        elif step is not None and srec is not None:
            label, total = step.describe(), None
        else:
            label, total = "restoring the stack", None
        end = now + seconds
        while True:
            chunk = min(end - now, every - round(now - base, 3) % every)
            await self.seams.clock.sleep(chunk)
            now += chunk
            done = now >= end
            on_beat = round(now - base, 3) % every == 0
            # a pause's last chunk ends its step, which reports itself; a poll that ends on a
            # beat reports, as more polls of the step may follow
            if not done or (on_beat and srec is not None and not isinstance(step, Pause)):
                self._emit(events.Heartbeat, step=index, label=label, waited=round(now - base), total=total)
            if done:
                return

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def _emit(self, event_type: type[events.Event], /, **fields: Any) -> None:
        event = event_type(at=self.seams.clock.now(), deployment_id=self.record.deployment_id, **fields)
        self.seams.notify(event)

    def _save(self) -> None:
        if self.seams.records is not None:
            self.seams.records.save(self.record)


def _normalise(weights: dict[str, int]) -> dict[str, float]:
    total = sum(weights.values()) or 1
    return {arn: round(100 * w / total, 1) for arn, w in weights.items()}
