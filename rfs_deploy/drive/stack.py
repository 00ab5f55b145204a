"""One deployment's hold on its service's part of the stack.

:class:`DeploymentStack` is what both a plan run (:mod:`rfs_deploy.drive.runner`) and a restore
(:mod:`rfs_deploy.drive.rollback`) work through:

* reading the service's release state and stack outputs;
* :meth:`DeploymentStack.update`: writing a release state and running one stack update whose
  message carries the journal tag (:mod:`rfs_deploy.journal_tags`) — the one place an
  update's tag is built, so every update of a deployment says the same things about it;
* :meth:`DeploymentStack.verify`: waiting until the load balancer shows a release state;
* reporting: events to the seams' listeners, the record to the record store, and waits that
  send a heartbeat while they last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rfs_deploy.config.model import SLOTS, ReleaseState, ServiceConfig
from rfs_deploy.drive import events
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.journal import Checkpoint, JournalDeployment
from rfs_deploy.drive.outcomes import StepFailed
from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.errors import InvalidInput, StackBusy
from rfs_deploy.journal_tags import (
    PAUSE_REQUEST,
    PAUSED,
    PROGRESS_PHASES,
    JournalTag,
    Phase,
    encode,
    new_run,
    pauser,
    this_owner,
)
from rfs_deploy.outputs import ServiceOutputs, parse_outputs
from rfs_deploy.releases import ReleaseConflict

#: Seconds between polls of the load balancer while a change propagates.
VERIFY_POLL = 5
#: How long a listener change may take to become visible before the step fails.
VERIFY_TIMEOUT = 120
#: Seconds between tries while another process holds the stack lock (see Seams.lock_wait).
LOCK_POLL = 10
#: Seconds a journal lease adds to the deployment's time budget: time to roll back.
LEASE_MARGIN = 900

#: A wait on the deployment's clock (the runner's paces heartbeats by its current step).
Sleep = Callable[[float], Awaitable[None]]


def time_budget(service: ServiceConfig, planned_seconds: float) -> float:
    """Seconds a deployment whose plan schedules ``planned_seconds`` may take: the plan plus
    ``deploy.maxDeploymentTime`` or the plan's own length (whichever is more), at most
    ``deploy.deploymentTimeout`` (see :mod:`rfs_deploy.drive.runner`)."""
    overrun = max(service.deploy.max_deployment_time, planned_seconds)
    return min(planned_seconds + overrun, service.deploy.deployment_timeout)


class DeploymentStack:
    """The stack as one deployment (``record``) works on it; ``checkpoint`` is the state it
    restores on rollback, ``deadline`` (on the seams' clock) the end of its time budget, and
    ``settings`` the settings digest its plan steps are tagged with."""

    def __init__(
        self,
        seams: Seams,
        record: DeploymentRecord,
        checkpoint: Checkpoint,
        deadline: float,
        settings: str | None = None,
    ) -> None:
        self.seams = seams
        self.record = record
        self.checkpoint = checkpoint
        self.deadline = deadline
        self.settings = settings
        #: This run's own token in the ``own`` tag: two drivers of one process are two owners.
        self.run = new_run()
        self._outputs: ServiceOutputs | None = None

    # ------------------------------------------------------------------ reading

    def release(self) -> ReleaseState:
        return self.seams.backend.read_config().release[self.record.service]

    def outputs(self) -> ServiceOutputs:
        if self._outputs is None:
            self._outputs = parse_outputs(self.seams.backend.outputs(), self.record.service)
        return self._outputs

    # ------------------------------------------------------------------ writing

    def tag(
        self, *, step: int, total: int, kind: str, phase: Phase, wait: bool = False, by: str | None = None
    ) -> JournalTag:
        """The journal tag of this deployment's next update: ``step`` of ``total`` (plan steps,
        or restore attempts for ``rollback`` / ``abort``), with its kind and phase. ``by``: who
        paused (a pause update; default this process's user)."""
        rec = self.record
        paused = kind == PAUSED and phase == "step"
        return JournalTag(
            deployment_id=rec.deployment_id,
            service=rec.service,
            step=step,
            total=total,
            kind=kind,
            phase=phase,
            version=rec.version,
            strategy=rec.strategy,
            checkpoint=self.checkpoint.version,
            # the digest names the plan's settings; resume reads it from plan updates only
            settings=self.settings if phase in PROGRESS_PHASES else None,
            owner=this_owner(self.run),
            # a pause releases the deployment: its lease ends now, any process may promote it
            lease=int(time.time()) if paused else self.lease(),
            wait=wait,
            by=(by or pauser()) if paused else None,
        )

    async def update(
        self,
        target: ReleaseState,
        *,
        step: int,
        total: int,
        kind: str,
        phase: Phase,
        text: str,
        wait: bool = False,
        by: str | None = None,
    ) -> int:
        """Write ``target`` as this service's release state and run one stack update tagged
        :meth:`tag` (``text``: its human part); returns the new stack version.

        While another update holds the stack (another service's deployment, a ``pulumi up``)
        this waits for it, up to ``seams.lock_wait`` seconds of real time, saying so every
        :data:`LOCK_POLL` seconds; then StackBusy. ReleaseConflict (another process changed this
        service's live state) passes straight up: the update changed nothing."""
        message = encode(self.tag(step=step, total=total, kind=kind, phase=phase, wait=wait, by=by), text)
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
                self.emit(
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
                    chunk = min(1.0, end - waited)
                    await asyncio.sleep(chunk)
                    waited += chunk
        self._outputs = None  # outputs may change with an update
        return result.version

    def lease(self) -> int:
        """The owner's lease for the journal: the wall-clock time by which this deployment has
        either finished or given up (its time budget), plus time to roll back."""
        left = max(0.0, self.deadline - self.seams.clock.now())
        return int(time.time() + left + LEASE_MARGIN)

    # ------------------------------------------------------------------ the load balancer

    async def verify(self, target: ReleaseState, sleep: Sleep | None = None) -> None:
        """Poll ELBv2 until the listeners show ``target``; StepFailed after VERIFY_TIMEOUT.
        ``sleep`` paces the polls (default: :meth:`sleep`)."""
        pause = sleep or self.sleep
        waited = 0
        while True:
            problem = self._listener_mismatch(target)
            if problem is None:
                return
            if waited >= VERIFY_TIMEOUT:
                raise StepFailed(f"load balancer does not show the change after {waited}s: {problem}")
            await pause(VERIFY_POLL)
            waited += VERIFY_POLL

    def _listener_mismatch(self, target: ReleaseState) -> str | None:
        out = self.outputs()
        traffic = self.seams.traffic
        expected = {out.slot(s).target_group_arn: target.weights[s] for s in SLOTS if target.weights[s] > 0}
        actual = {arn: w for arn, w in traffic.forward_weights(out.traffic_arn).items() if w > 0}
        if _normalise(actual) != _normalise(expected):
            return f"production listener weights {self._by_slot(actual)} instead of {self._by_slot(expected)}"
        idle_tg = out.slot(target.idle).target_group_arn
        test = {arn for arn, w in traffic.forward_weights(out.test_traffic_arn).items() if w > 0}
        if test != {idle_tg}:
            shown = sorted(self._by_slot(dict.fromkeys(test, 1)))
            return f"test listener forwards to {shown}, not {target.idle}"
        sticky = traffic.stickiness(out.traffic_arn)
        if (sticky or None) != target.stickiness:
            return f"stickiness {sticky} instead of {target.stickiness}"
        rules = traffic.rules(out.traffic_arn)
        if (target.variants is None) != (not rules):
            return (
                f"{len(rules)} listener rules; expected {'none' if target.variants is None else 'A/B rules'}"
            )
        return None

    def _by_slot(self, weights: dict[str, int]) -> dict[str, int]:
        out = self.outputs()
        names = {out.slot(s).target_group_arn: s for s in SLOTS}
        return {names.get(arn, arn): w for arn, w in weights.items()}

    # ------------------------------------------------------------------ reporting

    async def sleep(
        self,
        seconds: float,
        label: str = "restoring the stack",
        total: float | None = None,
        base: float | None = None,
        beat_at_end: bool = False,
    ) -> None:
        """Wait ``seconds`` on the clock, in chunks that end on multiples of
        ``events.HEARTBEAT_SECONDS`` counted from ``base`` (default: now); each chunk that leaves
        the wait unfinished emits a Heartbeat saying ``label`` (and the last one too with
        ``beat_at_end``, when it ends on a beat), so a long wait is never silent for more than
        that (CI kills jobs that print nothing)."""
        every = events.HEARTBEAT_SECONDS
        index = self.record.current_step
        now = self.seams.clock.now()
        start = now if base is None else base
        end = now + seconds
        while True:
            chunk = min(end - now, every - round(now - start, 3) % every)
            await self.seams.clock.sleep(chunk)
            now += chunk
            done = now >= end
            on_beat = round(now - start, 3) % every == 0
            if not done or (on_beat and beat_at_end):
                self.emit(events.Heartbeat, step=index, label=label, waited=round(now - start), total=total)
            if done:
                return

    def emit(self, event_type: type[events.Event], /, **fields: Any) -> None:
        event = event_type(at=self.seams.clock.now(), deployment_id=self.record.deployment_id, **fields)
        self.seams.notify(event)

    def save(self) -> None:
        if self.seams.records is not None:
            self.seams.records.save(self.record)


def pause_request(found: JournalDeployment, by: str) -> str:
    """The message of the update ``rfs-deploy pause`` runs to ask the driver of ``found`` to
    hold (kind ``pause-request``: it names no owner and no lease, so it never takes the
    deployment over; ``step``: where the journal says the deployment is)."""
    step = min(found.next_step, found.total_steps - 1)
    tag = JournalTag(
        deployment_id=found.deployment_id,
        service=found.service,
        step=step,
        total=found.total_steps,
        kind=PAUSE_REQUEST,
        phase="step",
        version=found.version,
        strategy=found.strategy,
        checkpoint=None if found.checkpoint is None else found.checkpoint.version,
        by=by,
    )
    return encode(tag, f"pause requested by {by} at step {step + 1}/{found.total_steps}")


async def post_pause_request(seams: Seams, message: str, attempts: int = 3) -> int:
    """Run a pause request's update: every service's live release state written back as it is,
    so it changes nothing and the running driver's compare-and-swap still holds. While another
    update holds the stack this waits, as a deployment's updates do (``seams.lock_wait``); a
    driver update landing in between (ReleaseConflict: this one changed nothing) is tried again
    from a fresh read. Returns the new stack version."""
    backend = seams.backend
    waited = 0.0
    for attempt in range(attempts):
        history = sorted(backend.history(), key=lambda e: e.version, reverse=True)
        live = next((e.release for e in history if e.result == "succeeded" and e.release), None)
        if live is None:
            raise InvalidInput(f"stack {backend.stack_name} has no release state to hold")
        while True:
            backend.write_release(live)
            try:
                return (await asyncio.to_thread(backend.up, message)).version
            except StackBusy as exc:
                if waited >= seams.lock_wait:
                    raise StackBusy(f"{exc}; gave up after waiting {waited:.0f}s for the stack lock") from exc
                pause = max(0.1, min(LOCK_POLL, seams.lock_wait - waited))
                await asyncio.sleep(pause)
                waited += pause
            except ReleaseConflict:
                if attempt == attempts - 1:
                    raise
                break  # the driver's update came first: read the live state again
    raise AssertionError("unreachable: the last attempt returns or raises")


def _normalise(weights: dict[str, int]) -> dict[str, float]:
    total = sum(weights.values()) or 1
    return {arn: round(100 * w / total, 1) for arn, w in weights.items()}
