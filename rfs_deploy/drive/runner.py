"""The runner: executes a plan step by step and rolls back when a step fails.

For every step: checkpoint (stack history already holds it), apply (one stack update carrying a
journal tag), verify the change is visible in AWS, observe, judge, then advance or roll back.
Each step kind has one handler, found in one table (:data:`HANDLERS`: step type -> handler): the
runner's own for changes, health, validation and pauses, the :class:`~rfs_deploy.drive.analysis.Analyst`'s
for the observing steps. The loop itself only sequences them. Stack reads and writes go through
:class:`~rfs_deploy.drive.stack.DeploymentStack`, rollback through :mod:`rfs_deploy.drive.rollback`.

Rollback target: the *pre-deployment checkpoint* — the stack history version and release state
in force before this deployment's first update. That is the last state known good for users:
rolling back a canary to its previous step would keep the bad version in production.

Time budget: ``deploy.deploymentTimeout`` is a hard cap; within it, a deployment may overrun its
plan's own schedule (bakes, intervals, delays) by ``deploy.maxDeploymentTime`` seconds or by the
schedule's own length, whichever is more — the time spent waiting on the world (health, listener
propagation, refresh progress, windows extended for lack of data). A long canary has more windows
that sparse metrics can stretch, so its allowance grows with it.

Pause requests (``rfs-deploy pause`` from another process, see docs/gates.md): the runner looks
in the journal for one before every step and, during an observing step (not a change, not a
restore), at its waits, at most once per ``events.HEARTBEAT_SECONDS`` of the clock. When it finds
one it holds exactly as at a gate (:meth:`Runner._hold`) after the last step it completed; an
observing step it interrupts runs again from its start on ``promote``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from rfs_deploy.config.model import SLOTS, ReleaseState, ServiceConfig, SlotName
from rfs_deploy.drive import events, webhooks
from rfs_deploy.drive.analysis import Analyst
from rfs_deploy.drive.cancel import CancelRequested
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.journal import Checkpoint, latest_deployment, settings_digest
from rfs_deploy.drive.outcomes import StepFailed, StepOutcome
from rfs_deploy.drive.protocols import Clock
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus, StepRecord
from rfs_deploy.drive.rollback import cancel_commands, roll_back
from rfs_deploy.drive.stack import DeploymentStack, time_budget
from rfs_deploy.drive.steps import (
    Analyze,
    Change,
    Decide,
    Gate,
    Pause,
    ScaleIdle,
    Step,
    Validate,
    WaitHealthy,
    WatchRefresh,
)
from rfs_deploy.drive.validate_step import run_validation
from rfs_deploy.errors import RfsDeployError, StackBusy
from rfs_deploy.journal_tags import PAUSED, Phase, pauser
from rfs_deploy.outputs import ServiceOutputs
from rfs_deploy.releases import ReleaseConflict

#: A step handler: ``(runner, index, step, its record)`` to the step's outcome.
Handler = Callable[["Runner", int, Any, StepRecord], Awaitable[StepOutcome]]


class PauseRequested(BaseException):
    """Raised from a wait of an observing step when the journal holds a pause request for the
    deployment. A BaseException, like CancelRequested, so that code catching ``Exception`` around
    a wait (retries, best-effort reads) lets it through to the runner."""

    def __init__(self, by: str) -> None:
        super().__init__(f"pause requested by {by}")
        self.by = by


class _PauseWatch:
    """The seams' clock while a plan runs: each wait first asks the runner to look for a pause
    request (which it does only inside an observing step, and only now and then)."""

    def __init__(self, inner: Clock, runner: Runner) -> None:
        self.inner = inner
        self.runner = runner

    def now(self) -> float:
        return self.inner.now()

    async def sleep(self, seconds: float) -> None:
        self.runner.check_pause_request()
        await self.inner.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


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
        self.analyst = Analyst(seams, record, service)
        #: The AMI this deployment brings for its version (None: the config's artifact).
        self.image = image
        #: The budget runs from ``started_at`` (default: the record's start; resume: now).
        self.deadline = (record.started_at if started_at is None else started_at) + time_budget(
            service, planned_seconds
        )
        self.stack = DeploymentStack(seams, record, checkpoint, self.deadline, settings_digest(service))
        self.analyst.deadline = self.deadline
        webhooks.open_delivery(seams, service.webhooks, record)
        #: The confirm webhook types each plan index asks before it runs.
        self.confirmations = webhooks.confirmations(steps)
        #: A plan index a person confirmed (the step ``promote`` continues with): not asked.
        self.confirmed: int | None = None
        #: The newest history version when this run started: older pause requests were asked of
        #: another process (one that died before it saw them) and are not this run's to answer.
        self._since: int | None = None
        #: Inside an observing step: its waits may be cut short by a pause request.
        self._pausable = False
        self._checked_at = -math.inf
        self._asked_by: str | None = None

    # ------------------------------------------------------------------ the loop

    async def run(self, start: int = 0, skip: frozenset[int] = frozenset()) -> DeploymentRecord:
        """Run plan steps ``start`` to the end, to a rollback, or to a gate (the record's
        ``paused`` is then set and the pause is in the journal). Steps in ``skip`` are recorded
        as skipped without running (``promote --full``)."""
        rec = self.record
        rec.status = DeploymentStatus.IN_PROGRESS
        rec.total_steps = len(self.steps)
        rec.recovery = None  # a resumed deployment: the old way out no longer applies
        rec.paused = None
        self.stack.save()
        history = self.seams.backend.history(limit=1)
        self._since = history[0].version if history else 0
        clock = self.seams.clock
        self.seams.clock = _PauseWatch(clock, self)
        try:
            return await self._run(start, skip)
        finally:
            self.seams.clock = clock

    async def _run(self, start: int, skip: frozenset[int]) -> DeploymentRecord:
        rec = self.record
        cancel = self.seams.cancellation
        for index in range(start, len(self.steps)):
            step = self.steps[index]
            if index in skip:
                self._skipped(index, step)
                continue
            if cancel is not None and cancel.requested:
                await self._cancelled(index)
                return rec
            asked = self._pause_asked() if index > 0 else None
            if asked is not None:
                await self._hold(index - 1, f"pause requested by {asked}", by=asked)
                return rec
            thin = await self._thin_budget(index) if self.seams.clock.now() > self.deadline else False
            if thin:
                return rec
            if thin is None:
                reason = f"deployment exceeded its time budget before step {index + 1}"
                rec.errors.append(reason)
                await self.roll_back(reason)
                return rec
            if await self._unconfirmed(index, step):
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
            if outcome.paused and isinstance(step, Gate):
                await self._hold(index, step.reason)
                return rec
            if outcome.undecided:
                # too little traffic to decide, and analysis.onInconclusive says pause: a person
                # promotes (the next step runs) or rolls back, as at a gate
                held = index - 1 if outcome.again else index
                await self._hold(held, f"step {index + 1} ({step.kind}) {outcome.reason}")
                return rec
            if outcome.paused:
                # a pause request cut this observing step short: hold after the step before it,
                # so that promote runs this one again from its start
                by = self._asked_by or "another process"
                await self._hold(index - 1, f"pause requested by {by}", by=by)
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
            await self.apply(last, self.release(), "done")
        rec.status = DeploymentStatus.COMPLETED
        rec.ended_at = self.seams.clock.now()
        if cancel is not None:
            cancel.stage = "finished"
        self.stack.emit(events.DeploymentFinished, status=rec.status.value, reason="all steps passed")
        self.stack.save()
        return rec

    async def _thin_budget(self, index: int) -> bool | None:
        """The time budget ran out before step ``index``: when the thin windows that extended the
        analysis steps account for the overrun (without them the deployment would still be in
        its budget), the release is undecided for lack of traffic and ends as
        ``analysis.onInconclusive`` says: ``pause`` holds after the step before (True), ``rollback``
        rolls back (True), ``promote`` goes on (False: the budget is stretched by the thin
        windows' time, so a later overrun for another reason still rolls back). None when the
        budget ran out for another reason (the caller rolls back, as for any overrun)."""
        thin = self.analyst.thin_seconds
        if thin <= 0 or self.seams.clock.now() - thin > self.deadline:
            return None
        choice = self.service.analysis.on_inconclusive
        what = (
            f"the deployment's time budget ran out before step {index + 1}, "
            f"{round(thin)}s of it in analysis windows too thin to judge"
        )
        if choice == "promote":
            self.stack.emit(events.Note, message=f"{what}: going on, as analysis.onInconclusive says")
            return False
        if choice == "rollback":
            reason = f"not enough data: {what} (analysis.onInconclusive: rollback)"
            self.record.errors.append(reason)
            await self.roll_back(reason)
            return True
        await self._hold(index - 1, f"undecided: {what}: waiting for a person")
        return True

    async def _run_step(self, index: int, step: Step) -> StepOutcome:
        rec = self.record
        rec.current_step = index
        srec = StepRecord(index, step.kind, step.describe(), self.seams.clock.now())
        rec.steps = [s for s in rec.steps if s.index != index] + [srec]
        if isinstance(step, Validate):
            rec.status = DeploymentStatus.VALIDATING
        self.stack.emit(
            events.StepStarted,
            index=index,
            total=len(self.steps),
            kind=step.kind,
            description=step.describe(),
        )
        self.stack.save()
        # a change and its check are never cut short: a pause waits for the step after it
        self._pausable = index > 0 and not isinstance(step, Change | Gate)
        self._checked_at = -math.inf
        try:
            outcome = await handler_for(step)(self, index, step, srec)
        except PauseRequested as exc:
            self._asked_by = exc.by
            outcome = StepOutcome(False, f"interrupted: pause requested by {exc.by}", paused=True)
        except StepFailed as exc:
            outcome = StepOutcome(False, str(exc))
        except CancelRequested as exc:
            outcome = StepOutcome(False, f"{exc}; the step's wait was interrupted", cancelled=True)
        except (StackBusy, ReleaseConflict):
            raise  # another process holds or changed the stack: no step failure, no rollback
        except RfsDeployError as exc:
            outcome = StepOutcome(False, str(exc))
        finally:
            self._pausable = False
        rec.status = DeploymentStatus.IN_PROGRESS
        srec.ended_at = self.seams.clock.now()
        srec.outcome = (
            "interrupted"
            if outcome.paused and not isinstance(step, Gate)
            else "paused"
            if outcome.paused or outcome.undecided
            else "passed"
            if outcome.passed
            else "cancelled"
            if outcome.cancelled
            else "failed"
        )
        srec.reason = outcome.reason
        if srec.outcome == "interrupted":
            srec.reason += "; the step runs again from its start on promote"
        if not outcome.passed and not outcome.cancelled and not outcome.paused and not outcome.undecided:
            rec.errors.append(f"step {index + 1} ({step.kind}): {outcome.reason}")
        self.stack.emit(
            events.StepFinished, index=index, kind=step.kind, outcome=srec.outcome, reason=outcome.reason
        )
        self.stack.save()
        return outcome

    # ------------------------------------------------------------------ the runner's handlers

    async def _change(self, index: int, step: Change, srec: StepRecord) -> StepOutcome:
        target = self.with_image(step.apply(self.release()))
        srec.stack_version = await self.apply(index, target, "step")
        await self.stack.verify(target, self._sleep)
        return StepOutcome(True, "change applied and visible")

    async def _scale_idle(self, index: int, step: ScaleIdle, srec: StepRecord) -> StepOutcome:
        """The idle slot's new capacity, then every one of its instances healthy (and warm)."""
        await self._change(index, step, srec)
        healthy = await self._wait_healthy(index, step.health_wait(), srec)
        return StepOutcome(True, f"scaled to {step.capacity} instances; {healthy.reason}")

    async def _pause(self, index: int, step: Pause, srec: StepRecord) -> StepOutcome:
        await self._sleep(step.seconds)
        return StepOutcome(True, f"waited {step.seconds}s")

    async def _gate(self, index: int, step: Gate, srec: StepRecord) -> StepOutcome:
        # the loop records the pause (:meth:`_hold`): a handler only says what the step came to
        return StepOutcome(True, f"paused until promoted ({step.reason})", paused=True)

    async def _hold(self, index: int, reason: str, by: str | None = None) -> None:
        """Record the pause after step ``index`` (a gate, or the last step completed when a pause
        was requested) in the journal: one update that writes the release state as it is
        (weights untouched), kind ``paused``, its lease released; the process then ends, and
        ``rfs-deploy promote`` from anywhere continues from the next step. ``by``: who asked
        (default: this process's user)."""
        rec = self.record
        by = by or pauser()
        version = await self.stack.update(
            self.release(),
            step=index,
            total=len(self.steps),
            kind=PAUSED,
            phase="step",
            text=f"paused at step {index + 1}: {reason}",
            by=by,
        )
        rec.paused = {"step": index, "reason": reason, "by": by, "at": self.seams.clock.now()}
        if self.service.deploy.pause_counts_towards_deadline:
            # promote rolls back once this passes (docs/gates.md); status says when it does
            rec.paused["deadline"] = self.deadline
        srec = next((s for s in rec.steps if s.index == index), None)
        if srec is not None:
            srec.stack_version = version
        cancel = self.seams.cancellation
        if cancel is not None:
            cancel.stage = "finished"
        self.stack.emit(
            events.Paused,
            message=f"paused at step {index + 1}/{len(self.steps)} ({reason}) by {by}",
            step=index,
            reason=reason,
            by=by,
        )
        self.stack.save()

    def check_pause_request(self) -> None:
        """Inside an observing step, now and then: PauseRequested when the journal asks this
        deployment to hold (see the module docstring)."""
        if not self._pausable:
            return
        now = self.seams.clock.now()
        if now - self._checked_at < events.HEARTBEAT_SECONDS:
            return
        self._checked_at = now
        asked = self._pause_asked()
        if asked is not None:
            raise PauseRequested(asked)

    def _pause_asked(self) -> str | None:
        """Who asked this deployment to hold (a pending pause request newer than this run's
        start, see :attr:`JournalDeployment.pending_pause`); None: nobody."""
        found = latest_deployment(self.seams.backend.history(), self.record.service)
        if found is None or found.deployment_id != self.record.deployment_id:
            return None
        pending = found.pending_pause
        if pending is None or (self._since is not None and pending[0].version <= self._since):
            return None
        return pending[1].by or "another process"

    async def _unconfirmed(self, index: int, step: Step) -> bool:
        """Ask the confirm webhooks of step ``index`` (:func:`webhooks.confirm`); True when the
        deployment stopped instead: cancelled while it asked, or held after the step before as at
        a gate (promote then runs this step) because no 2xx came in time. A step that changed
        nothing yet ends the deployment untouched instead. Nothing is rolled back."""
        kinds = self.confirmations.get(index, ())
        hooks = [h for h in self.service.webhooks if h.type in kinds]
        if not hooks or index == self.confirmed:
            return False
        try:
            answer = await webhooks.confirm(
                self.seams,
                hooks,
                self.record,
                index,
                len(self.steps),
                step,
                kinds,
                until=self.deadline,
                wait=lambda seconds, label: self.stack.sleep(seconds, label),
                note=lambda message: self.stack.emit(events.Note, message=message),
            )
        except CancelRequested:
            await self._cancelled(index)
            return True
        if answer.confirmed:
            return False
        rec = self.record
        if index > 0:
            await self._hold(index - 1, answer.reason)
            return True
        rec.status = DeploymentStatus.ROLLED_BACK
        rec.ended_at = self.seams.clock.now()
        rec.errors.append(f"{answer.reason}; nothing was changed")
        if self.seams.cancellation is not None:
            self.seams.cancellation.stage = "finished"
        self.stack.emit(events.DeploymentFinished, status=rec.status.value, reason=rec.errors[-1])
        self.stack.save()
        return True

    def _skipped(self, index: int, step: Step) -> None:
        now = self.seams.clock.now()
        srec = StepRecord(index, step.kind, step.describe(), now, ended_at=now, outcome="skipped")
        srec.reason = "skipped by promote --full"
        self.record.steps = [s for s in self.record.steps if s.index != index] + [srec]
        self.stack.emit(
            events.StepFinished, index=index, kind=step.kind, outcome="skipped", reason=srec.reason
        )

    # ------------------------------------------------------------------ stack

    def release(self) -> ReleaseState:
        return self.stack.release()

    def outputs(self) -> ServiceOutputs:
        return self.stack.outputs()

    async def apply(self, index: int, target: ReleaseState, phase: Phase) -> int:
        """Write ``target`` with one stack update tagged as plan step ``index`` in ``phase``
        (``step``, ``resume`` or ``done``); returns the new stack version."""
        step = self.steps[index]
        return await self.stack.update(
            target, step=index, total=len(self.steps), kind=step.kind, phase=phase, text=step.describe()
        )

    async def reapply(self, index: int, target: ReleaseState) -> None:
        """After a crash: write plan step ``index``'s release state again (phase ``resume``) and
        wait until the load balancer shows it."""
        await self.apply(index, target, "resume")
        await self.stack.verify(target, self._sleep)

    def with_image(self, target: ReleaseState) -> ReleaseState:
        """``target`` with this deployment's AMI on the slots that run its version."""
        if self.image is None:
            return target
        for slot in SLOTS:
            state = target.slot(slot)
            if state.version == self.record.version and state.image is None:
                target = target.with_slot(slot, image=self.image)
        return target

    # ------------------------------------------------------------------ observations

    async def _wait_healthy(self, index: int, step: WaitHealthy, srec: StepRecord) -> StepOutcome:
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
            health = self.seams.traffic.target_health(tg)
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

    async def _validate(self, index: int, step: Validate, srec: StepRecord) -> StepOutcome:
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
        phase: Phase = "rollback",
    ) -> None:
        """Restore the pre-deployment checkpoint (:func:`rfs_deploy.drive.rollback.roll_back`),
        its load balancer checks paced by this runner's heartbeats."""
        await roll_back(
            self.stack,
            self.service.deploy,
            reason,
            status_reason=status_reason,
            on_request=on_request,
            phase=phase,
            sleep=self._sleep,
            hooks=self.service.hooks,
        )

    # ------------------------------------------------------------------ cancellation

    async def _cancelled(self, next_index: int) -> None:
        """Act on a cancel request at a safe point, before plan step ``next_index`` (see
        :mod:`rfs_deploy.drive.cancel`): nothing changed yet, leave, or abort to the checkpoint."""
        cancel = self.seams.cancellation
        assert cancel is not None
        rec = self.record
        cancel.record = rec
        cancel.commands = cancel_commands(self.seams, rec)
        total = len(self.steps)
        where = f"before step {next_index + 1}/{total}" if next_index < total else "after the last step"
        why = f"cancelled by {cancel.name} {where}"
        if not self._touched():
            rec.status = DeploymentStatus.ROLLED_BACK
            rec.ended_at = self.seams.clock.now()
            rec.errors.append(f"{why}; nothing was changed")
            cancel.outcome, cancel.stage = "untouched", "finished"
            self.stack.emit(events.DeploymentFinished, status=rec.status.value, reason=rec.errors[-1])
            self.stack.save()
            return
        if cancel.on_cancel == "leave":
            resume, abort = cancel.commands["resume"], cancel.commands["abort"]
            rec.errors.append(f"{why}; left as it is (--on-cancel leave)")
            rec.recovery = f"{resume} (continue) or {abort} (roll back)"
            cancel.outcome, cancel.stage = "left", "finished"
            self.stack.emit(
                events.Note, message=f"{why}: left as it is; continue: {resume}; roll back: {abort}"
            )
            self.stack.save()
            return
        if cancel.forced:
            # a second signal (or the end of the grace period) came before the rollback could start
            rec.status = DeploymentStatus.FAILED
            rec.ended_at = self.seams.clock.now()
            rec.recovery = cancel.commands["abort"]
            rec.errors.append(f"{why}; {cancel.stop_reason()} before the rollback started: still open")
            cancel.outcome, cancel.stage = "stopped", "finished"
            self.stack.emit(events.DeploymentFinished, status=rec.status.value, reason=rec.errors[-1])
            self.stack.save()
            return
        rec.errors.append(why)
        await self.roll_back(why, status_reason="cancelled", on_request=True, phase="abort")
        if cancel.outcome is None:
            cancel.outcome = "rolled-back" if rec.status is DeploymentStatus.ROLLED_BACK else "failed"

    def _touched(self) -> bool:
        """Whether stack history holds an update of this deployment."""
        found = latest_deployment(self.seams.backend.history(), self.record.service)
        return found is not None and found.deployment_id == self.record.deployment_id

    # ------------------------------------------------------------------ plumbing

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` with heartbeats (:meth:`DeploymentStack.sleep`): inside a running
        step they name it and count from its start; elsewhere (a resume re-applying a step, a
        rollback's checks) they say the stack is being restored and count from this wait's start.
        A pause's last chunk ends its step, which reports itself; a poll that ends on a beat
        reports, as more polls of the step may follow."""
        index = self.record.current_step
        step = self.steps[index] if 0 <= index < len(self.steps) else None
        srec = next((s for s in self.record.steps if s.index == index and s.ended_at is None), None)
        label, total, base = "restoring the stack", None, None
        if step is not None and srec is not None:
            base = srec.started_at
            label = step.reason if isinstance(step, Pause) else step.describe()
            total = float(step.seconds) if isinstance(step, Pause) else None
        beat_at_end = srec is not None and not isinstance(step, Pause)
        await self.stack.sleep(seconds, label, total, base, beat_at_end=beat_at_end)


def _observing(method: Callable[..., Awaitable[StepOutcome]]) -> Handler:
    """A handler running one of the :class:`Analyst`'s observing steps on the current release."""

    async def handle(runner: Runner, index: int, step: Step, srec: StepRecord) -> StepOutcome:
        return await method(runner.analyst, index, step, runner.release(), runner.outputs())

    handle.__qualname__ = handle.__name__ = method.__name__
    return handle


#: Every step type's handler. A step is handled by the entry of its nearest type (every
#: :class:`Change` by ``Runner._change``).
HANDLERS: dict[type[Step], Handler] = {
    Change: Runner._change,
    ScaleIdle: Runner._scale_idle,
    WaitHealthy: Runner._wait_healthy,
    Validate: Runner._validate,
    Pause: Runner._pause,
    Gate: Runner._gate,
    Analyze: _observing(Analyst.analyze),
    WatchRefresh: _observing(Analyst.watch_refresh),
    Decide: _observing(Analyst.decide),
}


def handler_for(step: Step) -> Handler:
    """The handler of ``step``'s type (or of its nearest base type in :data:`HANDLERS`)."""
    for kind in type(step).__mro__:
        handler = HANDLERS.get(kind)
        if handler is not None:
            return handler
    return _unhandled


async def _unhandled(runner: Runner, index: int, step: Step, srec: StepRecord) -> StepOutcome:
    raise StepFailed(f"no handler for step kind {step.kind}")
