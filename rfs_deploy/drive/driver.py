"""The driver's front door: deploy, resume, promote, retry, abort, roll back, plan — for one stack.

Stack history is the journal (:mod:`rfs_deploy.drive.journal`), so every entry point starts from
``backend.history()``: a deployment refuses to start while another is open, ``resume`` continues
an open one from its last completed step, ``abort`` restores its pre-deployment checkpoint, and
``rollback`` restores any earlier history version on demand. Each works from a new process.

A plan runs in a :class:`~rfs_deploy.drive.runner.Runner`; a restore outside a plan (``abort``,
``rollback``) calls :func:`rfs_deploy.drive.rollback.roll_back` directly. A deployment's settings
come from :mod:`rfs_deploy.drive.overrides`, and :mod:`rfs_deploy.drive.exclusive` keeps two
operations on one stack apart within a process.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rfs_deploy.config.hooks import ServiceHooks, require_plaintext_env
from rfs_deploy.config.model import (
    ReleaseState,
    ServiceConfig,
    Strategy,
    check_ami,
    check_version,
)
from rfs_deploy.config.secrets import require_plaintext
from rfs_deploy.config.webhooks import require_webhook_plaintext
from rfs_deploy.drive import events, journal
from rfs_deploy.drive.cancel import cancellable
from rfs_deploy.drive.command_hook import run_phase
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.exclusive import exclusive
from rfs_deploy.drive.hooks import HookContext, HookPhase
from rfs_deploy.drive.journal import Checkpoint, JournalDeployment
from rfs_deploy.drive.overrides import deployment_settings, resolve, with_image
from rfs_deploy.drive.plans import plan, planned_seconds, replay
from rfs_deploy.drive.plans.common import adopt_fleet, adopts_fleet
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.drive.rollback import roll_back
from rfs_deploy.drive.runner import Runner
from rfs_deploy.drive.stack import DeploymentStack, pause_request, post_pause_request, time_budget
from rfs_deploy.drive.steps import Analyze, Change, Gate, Promote, SetWeight, Step
from rfs_deploy.drive.webhooks import delivering, open_delivery
from rfs_deploy.errors import InvalidInput, PreconditionFailed, RfsDeployError, StackBusy
from rfs_deploy.journal_tags import owner_alive, pauser
from rfs_deploy.outputs import parse_outputs
from rfs_deploy.releases import ReleaseConflict

#: ``resolve`` and ``with_image`` (:mod:`rfs_deploy.drive.overrides`) and ``planned_seconds``
#: (:mod:`rfs_deploy.drive.plans`) are also read from here.
__all__ = ["Driver", "planned_seconds", "resolve", "with_image"]


def _checked(check: Callable[[object], str], value: str, what: str = "") -> str:
    """``value`` through one of the model's checks; its ValueError as one InvalidInput line."""
    try:
        return check(value)
    except ValueError as exc:
        raise InvalidInput(f"{what}{exc}") from None


class Driver:
    """Runs deployments of one stack through the given seams."""

    def __init__(self, seams: Seams) -> None:
        self.seams = seams

    # ------------------------------------------------------------------ planning

    def plan(
        self,
        service: str,
        version: str,
        strategy: str | Strategy | None = None,
        overrides: dict[str, Any] | None = None,
        image: str | None = None,
    ) -> tuple[ServiceConfig, Strategy, ReleaseState, tuple[Step, ...]]:
        """The plan a deployment would run, without changing anything. ``image``: the version's
        AMI given for this deployment (see :meth:`deploy`)."""
        _checked(check_version, version)
        config = self.seams.backend.read_config()
        svc, strat = resolve(config.service(service), strategy, overrides)
        release = config.release[service]
        svc, release = adopt_fleet(svc, release, self._live_fleet(svc, service, release))
        steps = plan(with_image(svc, version, image), strat, release, version)
        scheduled = planned_seconds(steps)
        if scheduled > svc.deploy.deployment_timeout:
            raise InvalidInput(
                f"the {strat.type} plan schedules {scheduled:.0f}s but deploy.deploymentTimeout is "
                f"{svc.deploy.deployment_timeout}s; raise the timeout or shorten the plan"
            )
        return svc, strat, release, steps

    def _live_fleet(self, svc: ServiceConfig, service: str, release: ReleaseState) -> int | None:
        """The live group's desired capacity, read only when :func:`adopts_fleet`; None otherwise."""
        if not adopts_fleet(svc, release):
            return None
        outputs = parse_outputs(self.seams.backend.outputs(), service)
        return self.seams.fleet.desired_capacity(outputs.slot(release.live).asg_name)

    # ------------------------------------------------------------------ deploy

    @exclusive
    @delivering
    @cancellable
    async def deploy(
        self,
        service: str,
        version: str,
        strategy: str | Strategy | None = None,
        overrides: dict[str, Any] | None = None,
        image: str | None = None,
    ) -> DeploymentRecord:
        """Release ``version`` of ``service``; ends COMPLETED, ROLLED_BACK or FAILED (with recovery).

        ``image``: the version's AMI (a pipeline that baked one need not edit the stack file);
        without it a version missing from ``artifact.amis`` is looked up by ``artifact.lookupTag``.
        The image is kept in the release state, so rollbacks restore it too."""
        _checked(check_version, version)  # before anything is read or looked up with it
        if image is not None:
            _checked(check_ami, image, "--ami ")
        history = self.seams.backend.history()
        running = journal.decode(history[0].message) if history else None
        if history and history[0].result == "in-progress" and (running is None or running.service == service):
            # an update of this service (or a hand-run one) is running: its change may be written
            raise StackBusy(
                f"stack {self.seams.backend.stack_name} has an update in progress (version "
                f"{history[0].version}); wait for it, or run `{self._cmd('status')}`"
            )
        # before planning: an open deployment's traffic split would fail the plan's starting-point
        # check with a vaguer InvalidInput instead of StackBusy naming resume and abort. Other
        # services' deployments may run meanwhile: each update changes only its own service.
        self._refuse_if_open(history, service=service)
        # and before planning: the plan judges its starting point from the config, which a killed
        # update may have left ahead of the cloud ("v2 is already live" when it never ran)
        config = self.seams.backend.read_config()
        config.service(service)
        checkpoint = self._current_checkpoint(history, service, config.release[service])
        image = self._image(config.service(service), version, image)
        svc, strat, release, steps = self.plan(service, version, strategy, overrides, image)
        require_plaintext(svc, service)  # validation sends the headers: a masked one stops here
        require_webhook_plaintext(svc, service)  # and the webhooks their URLs and headers
        require_plaintext_env(svc.hooks, service)  # and so do the hooks' secret variables
        outputs = parse_outputs(self.seams.backend.outputs(), service)
        firing = self.seams.alarms.firing(list(outputs.slot(release.live).alarm_names))
        if firing:
            raise PreconditionFailed(
                f"alarm {firing[0]} of the live slot is already firing; fix production before deploying"
            )
        record = self._new_record(service, version, strat.type, release, journal.new_deployment_id())
        record.total_steps = len(steps)
        record.settings = deployment_settings(svc)
        pre = await run_phase(
            self.seams.hooks.pre_deployment, svc.hooks, self._hook_context(record), HookPhase.PRE_DEPLOYMENT
        )
        if not pre.ok:
            return self._finish_untouched(record, f"{pre.summary}; nothing was changed")
        runner = Runner(self.seams, record, svc, steps, checkpoint, planned_seconds(steps), image=image)
        runner.stack.emit(
            events.DeploymentStarted,
            service=service,
            version=version,
            strategy=strat.type,
            total=len(steps),
            previous_version=record.previous_version,
        )
        try:
            await runner.run()
        except (StackBusy, ReleaseConflict) as exc:
            self._lost_the_stack(record, exc)
            raise
        await self._after(runner.stack, runner.service.hooks)
        return record

    # ------------------------------------------------------------------ crash recovery

    @exclusive
    @delivering
    @cancellable
    async def resume(self, service: str | None = None, force: bool = False) -> DeploymentRecord:
        """Continue the open deployment from its last completed step (a new process may call this).
        Refused while the process running it is alive (``force``: its machine is known to be gone)."""
        found = self._open(service)
        self._refuse_if_owned(found, "resume", force)
        if found.status in ("rolling-back", "aborting"):
            phase: journal.Phase = "rollback" if found.status == "rolling-back" else "abort"
            return await self._restore_open(found, phase, f"finishing an interrupted {phase}")
        if found.paused_at is not None:
            # a pause is no interruption: going on past a gate is a person's decision (promote)
            raise InvalidInput(
                f"{self._paused_line(found)}; run `{self._cmd('promote')} --service {found.service}` to "
                f"continue it, or `{self._cmd('abort')} --service {found.service}` to roll it back"
            )
        return await self._continue(found)

    @exclusive
    @delivering
    @cancellable
    async def promote(
        self, service: str | None = None, full: bool = False, skip_analysis: bool = False
    ) -> DeploymentRecord:
        """Continue the deployment paused at a gate from the step after it (to the end, or to
        the next gate), from any process. ``full``: go straight to 100 % — the remaining weight
        steps and gates are skipped, the analysis at full weight still runs unless
        ``skip_analysis`` (see docs/gates.md)."""
        if skip_analysis and not full:
            raise InvalidInput("--skip-analysis goes with --full (a plain promote runs every step)")
        found = self._open(service)
        gate = found.paused_at
        if gate is None:
            self._refuse_if_owned(found, "resume", force=False)
            raise InvalidInput(
                f"deployment {found.deployment_id} of {found.service} ({found.version}) is not paused "
                f"(the journal says {found.status} at step {found.next_step + 1}/{found.total_steps}); "
                f"run `{self._cmd('resume')} --service {found.service}` or "
                f"`{self._cmd('abort')} --service {found.service}`"
            )
        return await self._continue(found, promote=(gate, full, skip_analysis))

    async def retry(self, service: str) -> DeploymentRecord:
        """Run the service's newest release again from the start — the same version, strategy
        and settings — when it rolled back (or was aborted); refused for a completed or open one."""
        history = self.seams.backend.history()
        self._refuse_if_open(history, service=service)
        found = journal.latest_release(history, service)
        if found is None:
            raise InvalidInput(
                f"no deployment of {service} on stack {self.seams.backend.stack_name} to retry"
            )
        if found.status == "completed":
            raise InvalidInput(
                f"deployment {found.deployment_id} of {service} ({found.version}) completed; nothing to "
                f"retry (release another version with `{self._cmd('deploy')} --service {service}`)"
            )
        record = self._load_or_new(found, self.seams.backend.read_config().release[service])
        configured = self.seams.backend.read_config().service(service)
        strategy: str = found.strategy
        overrides = None
        if record.settings is not None:
            strategy, overrides = record.settings["strategy"]["type"], record.settings
        else:
            svc, _ = resolve(configured, strategy)
            if found.settings is not None and journal.settings_digest(svc) != found.settings:
                raise InvalidInput(
                    f"cannot retry deployment {found.deployment_id}: it ran with settings not recorded on "
                    f"this machine (or the stack's settings changed since); run `{self._cmd('deploy')} "
                    f"--service {service} --version {found.version}` to release it with today's settings"
                )
        image = journal.deployment_image(found)
        retried = await self.deploy(service, found.version, strategy, overrides, image=image)
        retried.retry_of = found.deployment_id
        if self.seams.records is not None:
            self.seams.records.save(retried)
        return retried

    async def _continue(
        self, found: JournalDeployment, promote: tuple[int, bool, bool] | None = None
    ) -> DeploymentRecord:
        """Resume ``found`` from its next step, or (``promote``: the gate index, ``full``,
        ``skip_analysis``) from the step after the gate it is paused at."""
        verb = "resume" if promote is None else "promote"
        config = self.seams.backend.read_config()
        record = self._load_or_new(found, config.release[found.service])
        svc, strat = self._resume_settings(found, config.service(found.service), record)
        require_plaintext(svc, found.service)
        require_webhook_plaintext(svc, found.service)
        require_plaintext_env(svc.hooks, found.service)
        checkpoint = self._checkpoint_of(found)
        start_release = checkpoint.release_for(found.service)
        # the size an autoscaled fleet had when the deployment started, as its first update pinned it
        size = journal.deployment_fleet(found, start_release.live)
        svc, start_release = adopt_fleet(svc, start_release, size)
        image = journal.deployment_image(found)
        steps = plan(with_image(svc, found.version, image), strat, start_release, found.version)
        if len(steps) != found.total_steps:
            raise InvalidInput(
                f"cannot resume deployment {found.deployment_id}: its plan had {found.total_steps} steps, "
                f"the stack's settings now give {len(steps)}; run `{self._cmd('abort')}` instead"
            )
        if record.total_steps == 0:
            record.total_steps = len(steps)
        record.status = DeploymentStatus.IN_PROGRESS
        start, skip = found.next_step, frozenset[int]()
        if promote is None:
            record.errors.append(f"resumed at step {found.next_step + 1} of {len(steps)}")
        else:
            gate, full, skip_analysis = promote
            start = gate + 1
            skip = full_skip(steps, start, skip_analysis) if full else skip
            self._promoted(record, found, gate, full, skip_analysis)
        # the budget covers the part of the plan still to run, from now: observation steps after
        # the last completed change run again, and the time the killed driver was gone (or the
        # deployment was paused at a gate) is not the deployment waiting on the world
        remaining = planned_seconds(tuple(s for i, s in enumerate(steps[start:], start) if i not in skip))
        now = self.seams.clock.now()
        started = now
        counted = promote is not None and svc.deploy.pause_counts_towards_deadline
        if counted:
            # deploy.pauseCountsTowardsDeadline: the budget runs from the start, pauses included
            remaining, started = planned_seconds(steps), found.started_at
        runner = Runner(
            self.seams, record, svc, steps, checkpoint, remaining, started_at=started, image=image
        )
        if counted and now > runner.deadline:
            reason = self._expired_while_paused(found, svc, now, runner.deadline - started)
            record.errors.append(reason)
            await runner.roll_back(reason, status_reason="time budget ran out while paused")
            await self._after(runner.stack, runner.service.hooks)
            return record
        if promote is not None:
            # a person's go-ahead: the step promote continues with asks no confirm webhook
            runner.confirmed = next((i for i in range(start, len(steps)) if i not in skip), None)
            gate, full, skip_analysis = promote
            runner.stack.emit(events.Promoted, step=gate, full=full, skip_analysis=skip_analysis, by=pauser())
        expected = runner.with_image(replay(start_release, steps[: found.next_step]))
        if found.next_step > 0 and (found.interrupted or runner.release() != expected):
            # the killed update may have half-applied: re-apply the last completed step's state
            last = found.next_step - 1
            try:
                await runner.reapply(last, expected)
            except (StackBusy, ReleaseConflict) as exc:
                raise self._told_overtaken(runner, found, verb, exc) from exc
            except RfsDeployError as exc:  # a StepFailed check included
                # as with any failed step: back to the checkpoint, not a bare error mid-deployment
                reason = f"{verb} could not restore the state of step {last + 1}: {exc}"
                record.errors.append(reason)
                await runner.roll_back(reason)
                await self._after(runner.stack, runner.service.hooks)
                return record
        try:
            await runner.run(start=start, skip=skip)
        except (StackBusy, ReleaseConflict) as exc:
            raise self._told_overtaken(runner, found, verb, exc) from exc
        await self._after(runner.stack, runner.service.hooks)
        return record

    def _told_overtaken(
        self, runner: Runner, found: JournalDeployment, verb: str, exc: RfsDeployError
    ) -> StackBusy:
        """The refusal of a ``verb`` another process got ahead of, said to the listeners too: a
        webhook that got this run's ``promoted`` learns that the promote changed nothing."""
        line = self._overtaken(found, verb, exc)
        runner.stack.emit(events.Note, message=line)
        return StackBusy(line)

    def _expired_while_paused(
        self, found: JournalDeployment, svc: ServiceConfig, now: float, budget: float
    ) -> str:
        paused_for = now - found.newest.start_time
        return (
            f"paused {span(paused_for)}; maxDeploymentTime {span(svc.deploy.max_deployment_time)} ran out "
            f"while paused (its time budget of {span(budget)} counts the pause: "
            f"deploy.pauseCountsTowardsDeadline)"
        )

    async def pause(self, service: str | None = None) -> tuple[JournalDeployment, str]:
        """Ask the driver running the open deployment (of ``service``) to hold at its current
        weight: one stack update that changes nothing, tagged ``pause-request`` (see
        docs/gates.md). Returns the deployment as found and the request's message; refused
        (InvalidInput or StackBusy, exit 2) when nothing runs it. The caller may post the message
        itself (:meth:`request_message`, :meth:`post_request`)."""
        found, message = self.request_message(service)
        await self.post_request(message)
        return found, message

    def request_message(self, service: str | None = None) -> tuple[JournalDeployment, str]:
        """The running deployment (of ``service``) and the message of a pause request for it;
        refused when it is not running: paused already, restoring, finished, none, or its driver
        gone (then ``resume`` and ``abort`` are named)."""
        history = self.seams.backend.history()
        if service is not None and journal.find_open_deployment(history, service) is None:
            latest = journal.latest_deployment(history, service)
            if latest is not None:
                raise InvalidInput(
                    f"deployment {latest.deployment_id} of {service} ({latest.version}) already "
                    f"{latest.status}; nothing to pause"
                )
        found = self._open(service)
        where = f"--service {found.service}"
        if found.paused_at is not None:
            raise InvalidInput(
                f"{self._paused_line(found)} already; run `{self._cmd('promote')} {where}` to continue "
                f"it, or `{self._cmd('abort')} {where}`"
            )
        if found.status != "in-progress":
            raise InvalidInput(
                f"deployment {found.deployment_id} of {found.service} is {found.status}; nothing to pause"
            )
        tag = found.last_tag
        if not owner_alive(tag):
            owner = tag.owner or "an older rfs-deploy"
            raise StackBusy(
                f"deployment {found.deployment_id} of {found.service} ({found.version}) is open at step "
                f"{min(found.next_step + 1, found.total_steps)}/{found.total_steps} but its driver "
                f"({owner}) is gone, so nothing runs it to pause; run `{self._cmd('resume')} {where}` "
                f"to continue it, or `{self._cmd('abort')} {where}` to roll it back"
            )
        pending = found.pending_pause
        if pending is not None and not _taken_over_since(found, pending[0].version):
            raise InvalidInput(
                f"deployment {found.deployment_id} of {found.service}: a pause was already asked for by "
                f"{pending[1].by} (stack version {pending[0].version}); its driver holds at its next "
                f"safe point: `{self._cmd('wait')} {where}`"
            )
        return found, pause_request(found, pauser())

    async def post_request(self, message: str) -> int:
        """Run a pause request's update (:func:`rfs_deploy.drive.stack.post_pause_request`)."""
        return await post_pause_request(self.seams, message)

    @exclusive
    @delivering
    @cancellable
    async def abort(self, service: str | None = None, force: bool = False) -> DeploymentRecord:
        """Restore the open deployment's pre-deployment checkpoint. Refused while the process
        running it is alive (``force``: its machine is known to be gone)."""
        found = self._open(service)
        self._refuse_if_owned(found, "abort", force)
        return await self._restore_open(found, "abort", "aborted on request")

    @exclusive
    @delivering
    @cancellable
    async def rollback(self, service: str, to_version: int | None = None) -> DeploymentRecord:
        """Restore ``service`` to history version ``to_version`` (default: the last resting state
        before the newest deployment). Refuses while a deployment is open: abort it instead —
        unless its rollback or abort already failed: restoring a checkpoint is how that one is
        finished (the recovery command of its FAILED record)."""
        history = self.seams.backend.history()
        open_one = journal.find_open_deployment(history, service)
        if open_one is None or open_one.status not in ("rolling-back", "aborting"):
            self._refuse_if_open(history, hint="abort", service=service)
        config = self.seams.backend.read_config()
        svc = config.service(service)
        if to_version is not None:
            checkpoint = journal.checkpoint_at(history, to_version)
        else:
            # the newest *release* of the service: a rollback is no release to undo, so a second
            # bare rollback does not bring back the version the first one rolled away from
            latest = journal.latest_release(history, service)
            before = latest.entries[-1].version if latest is not None else None
            found = journal.last_good_checkpoint(history, before_version=before)
            if found is None:
                raise InvalidInput(f"no earlier checkpoint of {service} in stack history; pass --to VERSION")
            checkpoint = found
        target = checkpoint.release_for(service)
        current = config.release[service]
        newest = history[0] if history else None
        live = newest.release.get(service) if newest is not None and newest.release is not None else None
        if (
            open_one is None  # an unfinished restore is finished (and confirmed) by this one
            and newest is not None
            and newest.result == "succeeded"
            and live == target == current
            and not self._refresh_running(service, target)
        ):
            # the stack really runs the target (not after a failed or killed update since, and
            # no instance refresh is still bringing the fleet there: the restore follows it)
            return self._nothing_to_roll_back(service, checkpoint, target)
        record = self._new_record(
            service, target.slot(target.live).version or "?", "rollback", current, journal.new_deployment_id()
        )
        stack = self._restoring(record, svc, checkpoint)
        record.status = DeploymentStatus.IN_PROGRESS
        reason = f"rollback to stack version {checkpoint.version} on request"
        await roll_back(stack, svc.deploy, reason, on_request=True, hooks=svc.hooks)
        return record

    # ------------------------------------------------------------------ helpers

    def _image(self, service: ServiceConfig, version: str, given: str | None) -> str | None:
        """The AMI a deployment brings for ``version``: ``given`` (checked), else the one found by
        ``artifact.lookupTag`` when the config has none; None: the config's."""
        if given is not None:
            return _checked(check_ami, given, "--ami ")
        artifact = service.artifact
        if artifact.has_image(version) or artifact.lookup_tag is None:
            return None
        if self.seams.images is None:
            raise InvalidInput(f"version {version!r} has no AMI and no image lookup is available here")
        found = self.seams.images.find(artifact.lookup_tag, version)
        if found is None:
            raise InvalidInput(
                f"version {version!r} has no image: no AMI of this account is tagged "
                f"{artifact.lookup_tag}={version} (artifact.lookupTag), and artifact.amis has none"
            )
        return found

    def _paused_line(self, found: JournalDeployment) -> str:
        since = datetime.fromtimestamp(found.newest.start_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        gate = (found.paused_at or 0) + 1
        return (
            f"deployment {found.deployment_id} of {found.service} ({found.version}) is paused at step "
            f"{gate}/{found.total_steps} (by {found.paused_by}, since {since})"
        )

    def _promoted(
        self, record: DeploymentRecord, found: JournalDeployment, gate: int, full: bool, skip_analysis: bool
    ) -> None:
        """The record of a deployment promoted past gate ``gate``: the gate's step passed."""
        how = " --full" + (" --skip-analysis" if skip_analysis else "") if full else ""
        line = f"promoted{how} past step {gate + 1} of {found.total_steps} by {pauser()}"
        record.errors.append(line)
        for srec in record.steps:
            if srec.index == gate and srec.outcome == "paused":
                srec.outcome, srec.reason = "passed", line
        record.paused = None

    def _refuse_if_open(self, history: list[Any], hint: str = "resume", service: str | None = None) -> None:
        found = journal.find_open_deployment(history, service)
        if found is not None and found.paused_at is not None:
            raise StackBusy(
                f"{self._paused_line(found)}; run `{self._cmd('promote')} --service {found.service}` "
                f"or `{self._cmd('abort')} --service {found.service}` first"
            )
        if found is not None:
            step = found.next_step
            owner = journal.live_other_owner(found.last_tag)
            if owner is not None:
                host, pid = owner
                raise StackBusy(
                    f"deployment {found.deployment_id} of {found.service} ({found.version}) is running "
                    f"(step {min(step + 1, found.total_steps)}/{found.total_steps}, process {pid} on "
                    f"{host}); wait for it to finish, or watch it with `{self._cmd('status')}`"
                )
            commands = " or ".join(f"`{self._cmd(verb)}`" for verb in dict.fromkeys((hint, "abort")))
            raise StackBusy(
                f"deployment {found.deployment_id} of {found.service} ({found.version}) is still open "
                f"at step {step + 1}/{found.total_steps}; run {commands} first"
            )

    def _open(self, service: str | None) -> JournalDeployment:
        history = self.seams.backend.history()
        if service is None:
            opened = journal.open_deployments(history)
            if len(opened) > 1:
                names = ", ".join(f"{d.service} ({d.deployment_id})" for d in opened)
                raise InvalidInput(
                    f"stack {self.seams.backend.stack_name} has open deployments of {names}; "
                    "name one with --service"
                )
        found = journal.find_open_deployment(history, service)
        if found is None:
            of = f" of {service}" if service else ""
            raise InvalidInput(
                f"no open deployment{of} on stack {self.seams.backend.stack_name}; nothing to do"
            )
        return found

    def refuse_if_open(self, service: str | None, hint: str = "resume") -> None:
        """StackBusy when a deployment of ``service`` (of any service: None) is open — as
        :meth:`deploy` (``hint="resume"``) or :meth:`rollback` (``hint="abort"``: a deployment
        whose own rollback or abort failed is not refused, rollback is how it is finished)."""
        history = self.seams.backend.history()
        if hint == "abort":
            found = journal.find_open_deployment(history, service)
            if found is not None and found.status in ("rolling-back", "aborting"):
                return
        self._refuse_if_open(history, hint=hint, service=service)

    def refuse_if_owned(self, service: str | None, verb: str) -> None:
        """StackBusy naming the owner when the open deployment (of ``service``) is still run by
        a live process; nothing when none is open or its owner is gone."""
        history = self.seams.backend.history()
        found = journal.find_open_deployment(history, service)
        if found is not None:
            self._refuse_if_owned(found, verb, force=False)

    def _refuse_if_owned(self, found: JournalDeployment, verb: str, force: bool) -> None:
        """Refuse to take over a deployment whose owner still runs it (see journal.owner_alive)."""
        tag = found.last_tag
        owner = None if force else journal.live_other_owner(tag)
        if owner is not None:
            host, pid = owner
            until = (
                datetime.fromtimestamp(tag.lease, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if tag.lease is not None
                else "its end"
            )
            raise StackBusy(
                f"deployment {found.deployment_id} of {found.service} is being run by process {pid} on "
                f"{host} (lease until {until}); stop that process (on SIGTERM it aborts the deployment "
                f"itself) or wait for it. Only if that machine is gone: `{self._cmd(verb)} --service "
                f"{found.service} --force`"
            )

    def _lost_the_stack(self, record: DeploymentRecord, exc: RfsDeployError) -> None:
        """The deployment stopped because another process holds or changed the stack: the record
        says what state it is left in, so no record stays IN_PROGRESS."""
        changed = any(step.stack_version is not None for step in record.steps)
        record.ended_at = self.seams.clock.now()
        if not changed:
            record.status = DeploymentStatus.ROLLED_BACK
            record.errors.append(f"did not start: {exc}; nothing was changed")
        else:
            record.status = DeploymentStatus.FAILED
            record.errors.append(f"stopped: {exc}")
            # once its rollback had started, continuing the release forward is no way out
            verb = "abort" if record.rollback_attempts else "resume"
            record.recovery = f"{self._cmd(verb)} --service {record.service}"
        if self.seams.records is not None:
            self.seams.records.save(record)

    def _refresh_running(self, service: str, release: ReleaseState) -> bool:
        """An instance refresh of the service's live slot has not ended yet."""
        outputs = parse_outputs(self.seams.backend.outputs(), service)
        status = self.seams.fleet.latest_refresh(outputs.slot(release.live).asg_name)
        return status is not None and not status.done

    def _nothing_to_roll_back(
        self, service: str, checkpoint: Checkpoint, current: ReleaseState
    ) -> DeploymentRecord:
        record = self._new_record(
            service,
            current.slot(current.live).version or "?",
            "rollback",
            current,
            journal.new_deployment_id(),
        )
        record.status = DeploymentStatus.COMPLETED
        record.ended_at = record.started_at
        record.errors.append(
            f"nothing to roll back: {service} already runs the release state of stack version "
            f"{checkpoint.version}; nothing was changed (pick another with --to VERSION)"
        )
        return record

    def _checkpoint_of(self, found: JournalDeployment) -> Checkpoint:
        if found.checkpoint is None:
            raise InvalidInput(
                f"deployment {found.deployment_id} has no pre-deployment checkpoint in history; "
                f"pick one with `{self._cmd('rollback')} --service {found.service} --to VERSION`"
            )
        return found.checkpoint

    def _current_checkpoint(self, history: list[Any], service: str, release: ReleaseState) -> Checkpoint:
        latest = next((e for e in history if e.result == "succeeded"), None)
        if latest is None or latest.release is None:
            raise InvalidInput(
                f"stack {self.seams.backend.stack_name} has no successful update with a release state; "
                "run `pulumi up` (or `rfs-deploy up`) first"
            )
        if latest.release.get(service) != release:
            raise InvalidInput(
                f"the release state of {service} in the stack config differs from the last update "
                f"(version {latest.version}); run `pulumi up` first so the checkpoint is real"
            )
        return Checkpoint(latest.version, dict(latest.release))

    async def _restore_open(
        self, found: JournalDeployment, phase: journal.Phase, reason: str
    ) -> DeploymentRecord:
        config = self.seams.backend.read_config()
        svc = config.service(found.service)
        checkpoint = self._checkpoint_of(found)
        record = self._load_or_new(found, checkpoint.release_for(found.service))
        record.paused = None  # an abort at a gate: the deployment no longer holds there
        stack = self._restoring(record, svc, checkpoint)
        try:
            await roll_back(
                stack,
                svc.deploy,
                reason,
                status_reason="aborted" if phase == "abort" else "rolled back",
                on_request=True,
                phase=phase,
                hooks=svc.hooks,
            )
        except (StackBusy, ReleaseConflict) as exc:
            # the record is the deployment's own, shared with whoever changed it: left as it is
            raise StackBusy(self._overtaken(found, "abort" if phase == "abort" else "resume", exc)) from exc
        return record

    def _overtaken(self, found: JournalDeployment, verb: str, exc: RfsDeployError) -> str:
        """What the stack shows after another process got in the way of ``verb`` on ``found``."""
        history = self.seams.backend.history()
        now = journal.latest_deployment(history, found.service)
        newest = max((e.version for e in history), default=0)
        if now is not None and now.deployment_id == found.deployment_id and now.finished:
            state = f"deployment {found.deployment_id} ended {now.status} meanwhile (stack version {newest})"
        elif now is not None and now.deployment_id != found.deployment_id:
            state = f"{found.service} was changed meanwhile by deployment {now.deployment_id} ({now.status})"
        else:
            state = (
                f"deployment {found.deployment_id} of {found.service} is being changed meanwhile "
                f"(newest stack version {newest})"
            )
        return (
            f"{state}, by another process: this {verb} changed nothing ({exc}); "
            f"see `{self._cmd('status')} --service {found.service}`"
        )

    def _new_record(
        self, service: str, version: str, strategy: str, release: ReleaseState, deployment_id: str
    ) -> DeploymentRecord:
        return DeploymentRecord(
            deployment_id=deployment_id,
            stack=self.seams.backend.stack_name,
            service=service,
            version=version,
            previous_version=release.slot(release.live).version,
            strategy=strategy,
            started_at=self.seams.clock.now(),
        )

    def _resume_settings(
        self, found: JournalDeployment, configured: ServiceConfig, record: DeploymentRecord
    ) -> tuple[ServiceConfig, Strategy]:
        """The settings the deployment's plan was made from: the stack's, or the stack's with the
        deployment's recorded overrides — whichever its tags' digest names. Refuses when neither
        does (the stack's settings changed, or the overrides were not recorded here)."""
        svc, strat = resolve(configured, found.strategy)
        wanted = found.settings
        if wanted is None or journal.settings_digest(svc) == wanted:
            return svc, strat
        if record.settings is not None:
            recorded = record.settings
            svc, strat = resolve(configured, recorded["strategy"]["type"], recorded)
            if journal.settings_digest(svc) == wanted:
                return svc, strat
        why = (
            "the stack's service settings changed since it started"
            if record.settings is not None
            else "it ran with per-deployment settings that are not recorded on this machine, or the "
            "stack's service settings changed since it started"
        )
        raise InvalidInput(
            f"cannot resume deployment {found.deployment_id}: {why}, so it would run another plan; "
            f"run `{self._cmd('abort')}` instead"
        )

    def _load_or_new(self, found: JournalDeployment, start: ReleaseState) -> DeploymentRecord:
        if self.seams.records is not None:
            try:
                return self.seams.records.load(found.deployment_id)
            except InvalidInput:
                pass
        record = self._new_record(found.service, found.version, found.strategy, start, found.deployment_id)
        record.started_at = found.started_at
        return record

    def _finish_untouched(self, record: DeploymentRecord, reason: str) -> DeploymentRecord:
        record.status = DeploymentStatus.ROLLED_BACK
        record.errors.append(reason)
        record.ended_at = self.seams.clock.now()
        if self.seams.records is not None:
            self.seams.records.save(record)
        return record

    def _restoring(
        self, record: DeploymentRecord, svc: ServiceConfig, checkpoint: Checkpoint
    ) -> DeploymentStack:
        """The stack as a restore of ``checkpoint`` outside a plan works on it (``abort``,
        ``rollback``, an interrupted restore): its lease is a plan-less deployment's budget."""
        open_delivery(self.seams, svc.webhooks, record)
        return DeploymentStack(self.seams, record, checkpoint, record.started_at + time_budget(svc, 0))

    async def _after(self, stack: DeploymentStack, hooks: ServiceHooks | None = None) -> None:
        record = stack.record
        try:
            release = stack.release()
            health = stack.seams.traffic.target_health(stack.outputs().slot(release.live).target_group_arn)
            record.instance_count = release.slot(release.live).capacity
            record.healthy_instances = health.healthy
        except Exception as exc:  # figures for the summary only; never fail a finished deployment
            record.errors.append(f"could not read final target health: {exc}")
        if record.status is DeploymentStatus.COMPLETED:
            post = await run_phase(
                self.seams.hooks.post_deployment, hooks, self._hook_context(record), HookPhase.POST_DEPLOYMENT
            )
            if not post.ok:
                record.errors.append(post.summary)
        stack.save()

    def _hook_context(self, record: DeploymentRecord) -> HookContext:
        return HookContext.from_record(record, HookPhase.PRE_DEPLOYMENT, result=record)

    def _cmd(self, verb: str) -> str:
        return f"{self.seams.command_prefix} {verb} --stack {self.seams.backend.stack_name}"


def _taken_over_since(found: JournalDeployment, version: int) -> bool:
    """Whether another process than the one running it at stack ``version`` has run the
    deployment since (a ``resume`` after a crash): a pause asked of the old one is not its."""
    tags = [(e.version, journal.decode(e.message)) for e in found.entries]
    before = next((t.owner for v, t in tags if v < version and t is not None), None)
    return any(v > version and t is not None and t.owner != before for v, t in tags)


def span(seconds: float) -> str:
    """``3h``, ``10m``, ``1h30m``, ``45s``: a time span as durations are written in the config."""
    left = max(0, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    if left or not parts:
        parts.append(f"{left}s")
    return "".join(parts)


def full_skip(steps: tuple[Step, ...], start: int, skip_analysis: bool) -> frozenset[int]:
    """The plan indices ``promote --full`` skips from ``start``: every step before the first
    change that gives the new version all traffic (a 100 % weight, or the switch), and every gate
    after it; with ``skip_analysis`` the analyses after it too. Nothing when the rest of the
    plan has no such change (it is at full weight already): then only gates and, with
    ``skip_analysis``, analyses are skipped."""
    full = next((i for i in range(start, len(steps)) if _all_traffic(steps[i])), None)
    skipped: set[int] = set()
    for index in range(start, len(steps)):
        step = steps[index]
        before = full is not None and index < full
        skip = before and (isinstance(step, SetWeight) or not isinstance(step, Change))
        if skip or isinstance(step, Gate) or (skip_analysis and isinstance(step, Analyze)):
            skipped.add(index)
    return frozenset(skipped)


def _all_traffic(step: Step) -> bool:
    """``step`` gives the new version all production traffic (a 100 % weight, or the switch)."""
    return isinstance(step, Promote) or (isinstance(step, SetWeight) and step.weight >= 100)
