"""The observing steps: analysis ticks, watching an instance refresh, running an A/B test.

Every tick asks the service's metrics provider (:mod:`rfs_deploy.metrics`) once for the slots in
play over the window, and hands the per-slot aggregates to the pure judge
(:mod:`rfs_deploy.drive.rules`, :mod:`rfs_deploy.drive.judge`).
The sequential baseline test's evidence is carried from step to step, so a canary's
false-rollback probability is bounded per release, not per step.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rfs_deploy.config.model import Analysis, ReleaseState, ServiceConfig, SlotName
from rfs_deploy.drive import events
from rfs_deploy.drive.ab import decide_ab, hard_limit, shared_incident
from rfs_deploy.drive.history import BaselineHistory, read_history, with_history
from rfs_deploy.drive.judge import MAX_INCIDENT_WINDOWS, StepJudge, planned_windows
from rfs_deploy.drive.outcomes import StepOutcome
from rfs_deploy.drive.probe import Batch, probe_paths, run_probe
from rfs_deploy.drive.records import DeploymentRecord, Sample, VerdictRecord
from rfs_deploy.drive.rules import Outcome, SlotMetrics, Verdict, Window, judge, merge, window_numbers
from rfs_deploy.drive.stats import Evidence, rate_comparison
from rfs_deploy.drive.steps import Analyze, Decide, WatchRefresh
from rfs_deploy.errors import MetricsUnavailable, RfsDeployError
from rfs_deploy.metrics import MetricsProvider, provider_for, slot_sources
from rfs_deploy.metrics.definitions import CPU, ERRORS, P99
from rfs_deploy.outputs import ServiceOutputs
from rfs_deploy.readback import AlarmDetails, RefreshStatus

if TYPE_CHECKING:
    from rfs_deploy.drive.context import Seams


#: Seconds before a failed metric fetch is tried again.
FETCH_RETRY = 15


#: Metric periods of the live slot before a rolling release's refresh: its baseline.
PRE_REFRESH_WINDOWS = 10

#: The least wall-clock time between two saves of the record by verdicts (seconds).
SAVE_EVERY = 1.0


class Analyst:
    """Observes the world for the runner's Analyze, WatchRefresh and Decide steps, and the load
    probe of a Validate step."""

    def __init__(self, seams: Seams, record: DeploymentRecord, service: ServiceConfig) -> None:
        self.seams = seams
        self.record = record
        self.service = service
        self.policy = service.analysis
        self.evidence: Evidence | None = None
        #: Thin windows the last analysis step left unjudged, and the slot they are of.
        self.pool: Window | None = None
        self.pool_slot: SlotName | None = None
        #: The end of the deployment's time budget on the seams' clock (None: no budget): a step
        #: whose thin windows are still pooled is not extended past it.
        self.deadline: float | None = None
        #: Seconds of analysis windows that were too thin to judge (each extended its step).
        self.thin_seconds = 0.0
        #: The baseline's hour before the first traffic shift (None: not read, or no data).
        self.history: BaselineHistory | None = None
        self._history_read = False
        self._metrics: MetricsProvider | None = None
        self._saved_at: float | None = None
        #: The baseline's p99 in the first window that had one: the latency threshold when
        #: neither the config nor the history gives one (docs/decision.md, "Latency as counts").
        self._learnt_threshold: float | None = None

    @property
    def metrics(self) -> MetricsProvider:
        """The provider ``analysis.metrics`` names (built on first use: a plan without an
        observing step never needs one)."""
        if self._metrics is None:
            self._metrics = provider_for(self.policy.metrics, self.seams.metrics)
        return self._metrics

    def latency_threshold(self) -> float | None:
        """Seconds above which a request counts as slow: ``analysis.latencyThreshold``, else the
        baseline's p95 over its hour of history (its p99 when the history has no p95), else its
        p99 in the first window this analyst read it in (at most ``maxP99Latency``). None until
        one is known: the slow requests are not counted yet, and the judge compares p99s."""
        if self.policy.latency_threshold is not None:
            return float(self.policy.latency_threshold)
        history = getattr(self, "history", None)
        for quantile in ("p95", "p99"):
            value = getattr(history, quantile, None)
            if value is not None and value > 0:
                return float(value)
        return self._learnt_threshold

    def _learn_threshold(self, base: SlotMetrics | None) -> None:
        if self.latency_threshold() is not None or base is None or base.p99 is None or base.p99 <= 0:
            return
        if base.requests >= self.policy.min_requests:
            self._learnt_threshold = min(base.p99, float(self.policy.max_p99_latency))

    # ------------------------------------------------------------------ steps

    async def analyze(
        self, index: int, step: Analyze, release: ReleaseState, out: ServiceOutputs
    ) -> StepOutcome:

        new = release.judged_slot(self.record.version)
        base = release.live if new != release.live else None
        compare = step.baseline and base is not None and release.weights[base] > 0
        interval = max(step.interval, self.policy.period)
        if compare and base is not None:
            history = self.baseline_history(release, out, base)
            self.evidence = with_history(self.evidence, history, self.policy.max_error_rate)
        sj = StepJudge(
            self.policy,
            baseline=compare,
            windows=planned_windows(step.duration, interval),
            evidence=self.evidence if compare else None,
            release=True,
            pool=self.pool if self.pool_slot == new else None,
        )
        # Windows are whole metric periods on the epoch's boundaries (a window ending mid-period
        # would ask for the period still being filled, which has no datapoint yet) and contiguous:
        # after a failed fetch, or a window the provider had no data for yet (ALB datapoints can
        # arrive minutes late), the next window covers the missed time too. A failed fetch is
        # tried again after FETCH_RETRY seconds, not a whole interval.
        period = self.policy.period
        since = _boundary(self.seams.clock.now(), period)
        wait = interval
        while sj.result is None:
            if self._out_of_time(sj, wait):
                # the next window would end past the budget while the evidence is still thin:
                # the step ends undecided (analysis.onInconclusive), not as a budget rollback
                self._record(index, release, new, {}, sj.out_of_time())
                continue  # decided: the loop ends
            await self._tick_wait(wait)
            firing = self._firing(out, new)
            alarm_since = since
            now = self.seams.clock.now()
            end = _boundary(now, period)
            # a compared step weighs a firing alarm against the window it fired in (the judge's
            # StepJudge.alarm: a shared incident is held, a lone burst confirmed); elsewhere, and
            # when there is no window to weigh it with, the alarm rolls back at once
            if firing and (not compare or end <= since):
                base_slot = base if compare else None
                self._alarm_failed(index, release, out, new, firing, (since, end), base_slot)
                return StepOutcome(False, f"alarm {firing[0]} is firing")
            if end <= since:  # no period has ended since the last window: wait for the next one
                wait = round(since + period - now) or 1
                continue
            try:
                window, slots = self._window(out, release, new, base if compare else None, since, end)
                thin = sj.inconclusive - sj.missing
                verdict = sj.observe(window)
                if sj.inconclusive - sj.missing > thin:
                    self.thin_seconds += end - since
                wait = interval
                if _has_data(window, compare):
                    since = end
            except MetricsUnavailable as exc:
                if firing:
                    self._alarm_failed(index, release, out, new, firing, (alarm_since, end), base)
                    return StepOutcome(False, f"alarm {firing[0]} is firing")
                verdict, slots = sj.fetch_failed(str(exc)), {}
                wait = min(interval, FETCH_RETRY)
            if firing and sj.result is not None and not sj.result.passed:
                # the alarm and the judge both failed this window: the alarm's record, as before
                self._alarm_failed(index, release, out, new, firing, (alarm_since, end), base)
                return StepOutcome(False, f"alarm {firing[0]} is firing")
            if firing and (sj.result is None or sj.result.passed):
                weighed = sj.alarm(firing[0], window)
                if weighed.outcome is Outcome.FAIL:
                    # the alarm's FAIL verdict carries this window's metrics (one sample, as before)
                    self._alarm_failed(index, release, out, new, firing, (alarm_since, end), base)
                    return StepOutcome(False, f"alarm {firing[0]} is firing")
                self._record(index, release, new, slots, verdict)
                self._record(index, release, new, slots, weighed)
                continue
            self._record(index, release, new, slots, verdict)
        if compare:
            self.evidence = sj.evidence
        # thin windows not judged yet are pooled into the next step judging the same slot
        self.pool, self.pool_slot = sj.pool, new
        if sj.result.outcome is Outcome.INCONCLUSIVE:
            return StepOutcome(False, sj.result.reason, undecided=True)
        return StepOutcome(sj.result.passed, sj.result.reason)

    def _out_of_time(self, sj: StepJudge, wait: int) -> bool:
        """Whether ``sj``'s thin windows are pooled undecided and its next window, ``wait``
        seconds from now, would end past :attr:`deadline`."""
        if self.deadline is None or sj.pool is None:
            return False
        return self.seams.clock.now() + wait > self.deadline

    def baseline_history(
        self, release: ReleaseState, out: ServiceOutputs, base: SlotName
    ) -> BaselineHistory | None:
        """The live slot's hour before the deployment's first traffic shift, read once per
        deployment (one provider request, at the first step comparing with the baseline) and
        kept in the record; a resumed deployment takes it from its record. None: no data, or the
        provider failed (the judge then learns the baseline from the release's minutes alone)."""
        if self._history_read:
            return self.history
        self._history_read = True
        saved = self.record.baseline_history
        if saved is not None:
            self.history = BaselineHistory(**saved)
            return self.history
        shift = first_shift(self.record)
        moment = self.seams.clock.now() if shift is None else shift
        source = slot_sources(self.record.service, out, [base], release)[0]
        self.history = read_history(self.metrics, source, moment, self.policy.period)
        if self.history is not None:
            self.record.baseline_history = self.history.to_json()
        return self.history

    async def probe(self, index: int, release: ReleaseState, out: ServiceOutputs) -> StepOutcome:
        """Judge the idle slot under ``validation.probe`` load (the validate step of a probed plan).

        Every batch is recorded like an analysis tick: its verdict (marked ``probe``), and a
        sample of what each slot answered — the probe's requests are the only traffic the idle
        slot has served.
        """
        from rfs_deploy.drive.validate_step import validation_settings

        settings = validation_settings(self.service)

        def recorded(batch: Batch) -> None:
            # the live slot's batch is the verdict's baseline_* numbers
            verdict = batch.verdict
            marked = replace(
                verdict, reason=f"probe: {verdict.reason}", numbers={**verdict.numbers, "probe": True}
            )
            slots: dict[str, dict[str, Any]] = {release.idle: _as_numbers(batch.new)}
            if batch.live is not None:
                slots[release.live] = _as_numbers(batch.live)
            self._record(index, release, release.idle, slots, marked)

        result = await run_probe(
            out.test_url,
            out.url if settings.probe.compare_live else None,
            settings,
            self.policy,
            transport=self.seams.http_transport,
            clock=self.seams.clock,
            on_batch=recorded,
        )
        what = f"load probe of {result.requests} requests ({', '.join(probe_paths(settings))})"
        if not result.passed:
            return StepOutcome(False, f"{what} failed: {result.verdict.reason}")
        return StepOutcome(True, f"{what} passed: {result.verdict.reason}")

    async def watch_refresh(
        self, index: int, step: WatchRefresh, release: ReleaseState, out: ServiceOutputs
    ) -> StepOutcome:
        """Follow a rolling release's instance refresh, judging the live slot as it goes.

        Every window is judged like a release step's (thin windows pooled, thresholds) with the
        slot's own windows before the refresh as its baseline (:meth:`_pre_refresh`): once a
        window passes, the slot's error rate since the last batch came in must not be higher
        than before the refresh (the conditional binomial test). The program pauses the refresh
        at a checkpoint after every batch; when a batch comes in before any window passed since
        the one before it (too little traffic to judge, or a failed window not yet confirmed),
        the refresh is held there (cancelled: the replaced instances stay) and started again
        (:meth:`FleetControl.resume_refresh`) once a window passes. Windows that stay thin end the
        step as ``analysis.onInconclusive`` says: ``pause`` holds the deployment with the refresh
        held, and ``promote`` runs this step again, which starts the refresh first.

        A window in which the slot fails by more than its new instances can explain (the old
        instances fail too: :func:`_old_instances_fail`) is a shared incident: the refresh is
        held, nothing rolls back (a firing alarm included), and judging resumes when it is over;
        after :data:`~rfs_deploy.drive.judge.MAX_INCIDENT_WINDOWS` such windows the step ends
        undecided. A refresh is started again only once its cancellation has ended (AWS refuses
        to start one while another is active). When AWS's own guard of the refresh (its alarm
        specification) rolls it back or fails it, the step fails with AWS's reason: a hold never
        cancels AWS's rollback, and a held refresh that AWS ended is not started again.
        """
        slot = release.live
        asg = out.slot(slot).asg_name
        fleet = self.seams.fleet
        interval = max(step.interval, 1)
        period = self.policy.period
        baseline = self._pre_refresh(index, release, out, slot)
        status = fleet.latest_refresh(asg)
        # promoted (or resumed) after a hold: the person chose to go on, so the refresh starts
        # again as soon as its cancellation has ended
        again = status is not None and status.status in ("Cancelled", "Cancelling")
        resume = again and status is not None and status.percentage_complete < 100
        held: str | None = "held" if resume else None  # why the refresh is held (None: it is not)
        sj = self._refresh_judge()
        segment: SlotMetrics | None = None
        judged = False  # a window passed since the last batch came in
        last = status.percentage_complete if status is not None else 0
        since = _boundary(self.seams.clock.now(), period)
        waited = incidents = 0
        while True:
            if resume and status is not None and status.done:
                started = fleet.resume_refresh(asg)
                self._note(f"instance refresh of {asg} started again ({started})")
                held, resume, last = None, False, 0
            await self._tick_wait(interval)
            waited += interval
            status = fleet.latest_refresh(asg)
            firing = self._firing(out, slot)
            end = _boundary(self.seams.clock.now(), period)
            window: Window | None = None
            slots: dict[str, dict[str, Any]] = {}
            if end > since:
                try:
                    window, slots = self._window(out, release, slot, None, since, end)
                except MetricsUnavailable as exc:
                    self.record.errors.append(f"metrics unavailable during refresh: {exc}")
            share = self._replaced_share(status, release)
            incident = None if window is None else _old_instances_fail(window.new, share, self.policy)
            if firing and incident is None:
                start = end - max(interval, period)
                self._alarm_failed(index, release, out, slot, firing, (start, end), None)
                return StepOutcome(False, f"alarm {firing[0]} is firing during the instance refresh")
            if (held is not None or incident is not None) and _ended_by_aws(status):
                assert status is not None
                during = "" if incident is None else f" during a shared incident ({incident})"
                return StepOutcome(
                    False,
                    f"AWS rolled the instance refresh back ({status.status}): {status.status_reason}{during}"
                    if status.rolled_back_by_aws
                    else f"instance refresh ended {status.status}: {status.status_reason}{during}",
                )
            if window is not None and _has_data(window, False):
                since = end
                if incident is not None:
                    text = f"shared incident: {incident}; the instance refresh is held until it is over"
                    self._record(index, release, slot, slots, Verdict(Outcome.INCONCLUSIVE, text, {}))
                    if held is None:
                        self._hold_refresh(asg, status, "a shared incident")
                    held, resume, incidents = "incident", False, incidents + 1
                    if incidents > MAX_INCIDENT_WINDOWS or waited >= step.timeout:
                        why = f"held through {incidents} windows of a shared incident: waiting for a person"
                        return StepOutcome(False, why, undecided=True, again=True)
                    continue
                verdict = sj.observe(replace(window, baseline=baseline))
                segment = merge(segment, window.new)
                result = sj.result
                if result is not None and result.outcome is Outcome.PASS:
                    worse = _worse_than_before(segment, baseline, self.policy, self._checks(release))
                    if worse is not None:
                        verdict = replace(verdict, outcome=Outcome.FAIL, reason=worse)
                        result = replace(result, outcome=Outcome.FAIL, reason=worse)
                self._record(index, release, slot, slots, verdict)
                if result is not None:
                    if result.outcome is Outcome.FAIL:
                        return StepOutcome(False, result.reason)
                    if result.outcome is Outcome.INCONCLUSIVE:
                        if held is None:
                            self._hold_refresh(asg, status, "undecided windows")
                        pct = "" if status is None else f" at {status.percentage_complete}%"
                        why = f"{result.reason}; the instance refresh is held{pct}"
                        return StepOutcome(False, why, undecided=True, again=True)
                    judged, segment, sj = True, None, self._refresh_judge()
                    if held is not None:
                        resume = True  # a window passed: at the next tick, once the cancel has ended
                        continue
            if status is None:
                return StepOutcome(False, f"no instance refresh found on {asg}")
            if held is not None:
                if waited >= step.timeout:
                    return StepOutcome(False, f"instance refresh held at its checkpoint for {waited}s")
                continue
            if status.status == "Successful":
                return StepOutcome(True, f"instance refresh {status.refresh_id} replaced every instance")
            if status.rolled_back_by_aws:
                return StepOutcome(
                    False, f"AWS rolled the instance refresh back ({status.status}): {status.status_reason}"
                )
            if status.done:
                return StepOutcome(False, f"instance refresh ended {status.status}: {status.status_reason}")
            if status.percentage_complete > last:
                # a batch came in: the fleet before it must have been judged, or it waits here
                last = status.percentage_complete
                if not judged:
                    self._hold_refresh(asg, status, "no window passed since the last batch")
                    held = "checkpoint"
                judged = False
            if waited >= step.timeout:
                return StepOutcome(
                    False, f"instance refresh at {status.percentage_complete}% after {waited}s"
                )

    def _replaced_share(self, status: RefreshStatus | None, release: ReleaseState) -> float:
        """At most this share of the live slot's instances run the new version: those no refresh
        has left to update, and the batch in flight (its instances serve while they warm up)."""
        capacity = release.slot(release.live).capacity
        if status is None or capacity <= 0:
            return 1.0
        rolling = release.rolling
        batch = rolling.batch(capacity) if rolling is not None else capacity
        old = max(0, status.instances_to_update - batch)
        return min(1.0, 1.0 - old / capacity)

    def _checks(self, release: ReleaseState) -> int:
        """How often a refresh compares the slot with its pre-refresh baseline: once per batch."""
        rolling = release.rolling
        return 1 if rolling is None else rolling.batches(self.service.instance_count)

    def _refresh_judge(self) -> StepJudge:
        """The judge of the live slot between two batches of a refresh: one window to pass, thin
        windows pooled, an undecided end as ``analysis.onInconclusive`` says."""
        return StepJudge(self.policy, baseline=False, windows=1, release=True)

    def _hold_refresh(self, asg: str, status: RefreshStatus | None, why: str) -> None:
        """Hold a rolling release's refresh at its checkpoint: cancelled, the replaced instances stay."""
        self.seams.fleet.cancel_refresh(asg)
        at = "" if status is None else f" at {status.percentage_complete}%"
        self._note(f"instance refresh of {asg} held{at}: {why}")

    def _note(self, message: str) -> None:
        now = self.seams.clock.now()
        self.seams.notify(events.Note(at=now, deployment_id=self.record.deployment_id, message=message))

    def _pre_refresh(
        self, index: int, release: ReleaseState, out: ServiceOutputs, slot: SlotName
    ) -> SlotMetrics | None:
        """The live slot over :data:`PRE_REFRESH_WINDOWS` periods before the refresh began (the
        step before this one changed its launch template): the baseline a rolling release is
        judged against. None when it cannot be read (the thresholds still judge)."""
        before = next((s for s in self.record.steps if s.index == index - 1), None)
        began = before.started_at if before is not None else self.seams.clock.now()
        period = self.policy.period
        end = _boundary(began, period)
        try:
            window, _ = self._window(out, release, slot, None, end - PRE_REFRESH_WINDOWS * period, end)
        except MetricsUnavailable as exc:
            self.record.errors.append(f"the slot's metrics before the refresh could not be read: {exc}")
            return None
        return window.new if not window.partial else None

    async def decide(
        self, index: int, step: Decide, release: ReleaseState, out: ServiceOutputs
    ) -> StepOutcome:

        b, a = release.idle, release.live
        interval = max(step.interval, self.policy.period)
        windows: list[Window] = []
        elapsed = held = 0
        while elapsed < step.duration:
            await self._tick_wait(interval)
            elapsed += interval
            firing = self._firing(out, b)
            end = _boundary(self.seams.clock.now(), self.policy.period)
            try:
                window, slots = self._window(out, release, b, a, end - interval, end)
            except MetricsUnavailable as exc:
                if firing:
                    self._alarm_failed(index, release, out, b, firing, (end - interval, end), a)
                    return StepOutcome(False, f"alarm {firing[0]} is firing on variant B")
                self.record.errors.append(f"A/B tick skipped: {exc}")
                continue
            incident = shared_incident(window, self.policy)
            if incident is not None and held < MAX_INCIDENT_WINDOWS:
                # A fails as badly: nobody's release; the test runs one window longer
                held += 1
                elapsed -= interval
                alarm = f"alarm {firing[0]} is firing while " if firing else ""
                numbers = window_numbers(window, self.policy)
                self._record(
                    index, release, b, slots, Verdict(Outcome.INCONCLUSIVE, f"{alarm}{incident}", numbers)
                )
                continue
            if firing:
                self._alarm_failed(index, release, out, b, firing, (end - interval, end), a)
                return StepOutcome(False, f"alarm {firing[0]} is firing on variant B")
            if incident is not None:
                return StepOutcome(
                    False, f"variant B: a shared incident longer than {held} windows (A fails too)"
                )
            windows.append(window)
            guard = judge(window, self.policy, baseline=False)
            self._record(index, release, b, slots, guard)
            if guard.outcome is Outcome.FAIL:
                return StepOutcome(False, f"variant B: {guard.reason}")
            # thin windows pass no guard: B past the hard limit over the windows so far ends it
            past = hard_limit(windows, self.policy)
            if past is not None:
                return StepOutcome(False, f"variant B: {past}")
        decision = decide_ab(windows, release.weights[b], self.policy)
        winner = decision.winner or "undecided"
        self.record.decision = f"{winner}: {decision.reason}"
        self.record.verdicts.append(
            VerdictRecord(
                self.seams.clock.now(),
                index,
                f"WINNER {decision.winner}" if decision.winner else "UNDECIDED",
                decision.reason,
                dict(decision.numbers),
            )
        )
        if decision.winner is None:
            # no winner on too little traffic: analysis.onInconclusive says what happens
            choice = self.policy.on_inconclusive
            if choice == "promote":
                return StepOutcome(True, f"{decision.reason}; B promoted, as analysis.onInconclusive says")
            if choice == "rollback":
                return StepOutcome(
                    True, f"{decision.reason}; keep A (analysis.onInconclusive: rollback)", keep_baseline=True
                )
            return StepOutcome(False, f"{decision.reason}: waiting for a person", undecided=True)
        if decision.winner == "B":
            return StepOutcome(True, decision.reason)
        return StepOutcome(True, decision.reason, keep_baseline=True)

    # ------------------------------------------------------------------ plumbing

    async def _tick_wait(self, seconds: int) -> None:
        await self.seams.clock.sleep(seconds)

    def _firing(self, out: ServiceOutputs, slot: SlotName) -> list[str]:
        names = out.slot(slot).alarm_names
        return self.seams.alarms.firing(list(names)) if names else []

    def _alarm_failed(
        self,
        index: int,
        release: ReleaseState,
        out: ServiceOutputs,
        slot: SlotName,
        firing: list[str],
        window: tuple[float, float],
        base: SlotName | None,
    ) -> None:
        """Record the FAIL verdict of a step a firing alarm ends, with the alarm's own numbers (its
        threshold and the datapoints it evaluated, as CloudWatch reports them) and, when the
        provider has them, the slots' metrics over the step's last window, as a sample too: the
        record and its report then show what rolled the release back, not only a name."""
        details = self._alarm_details(out, slot, firing)
        numbers = alarm_numbers(details, slot, firing)
        numbers.update(
            max_error_rate=self.policy.max_error_rate,
            max_p99_latency=self.policy.max_p99_latency,
            max_cpu=self.policy.max_cpu,
        )
        slots: dict[str, dict[str, Any]] = {}
        start, end = window
        if end > start:
            try:
                _, slots = self._window(out, release, slot, base, start, end)
            except MetricsUnavailable as exc:
                self.record.errors.append(
                    f"the window before alarm {firing[0]} fired could not be read: {exc}"
                )
        for prefix, which in (("", slot), ("baseline_", base)):
            if which is not None and which in slots:
                numbers.update({f"{prefix}{k}": v for k, v in slots[which].items()})
        self._write(index, release, slot, slots, Outcome.FAIL.value, alarm_reason(details, firing), numbers)

    def _alarm_details(self, out: ServiceOutputs, slot: SlotName, firing: list[str]) -> AlarmDetails | None:
        """The first firing alarm's details; None when the reader cannot give them (the step
        still ends on the alarm's state)."""
        try:
            found = self.seams.alarms.firing_details(list(out.slot(slot).alarm_names))
        except RfsDeployError as exc:
            self.record.errors.append(f"alarm {firing[0]}: its datapoints could not be read: {exc}")
            return None
        return next((d for d in found if d.name == firing[0]), found[0] if found else None)

    def _window(
        self,
        out: ServiceOutputs,
        release: ReleaseState,
        new: SlotName,
        base: SlotName | None,
        start: float,
        end: float,
    ) -> tuple[Window, dict[str, dict[str, Any]]]:
        """Per-slot aggregates of the metric periods in [start, end), from one provider call."""
        slots: list[SlotName] = [new] if base is None else [new, base]
        sources = slot_sources(self.record.service, out, slots, release, self.latency_threshold())
        readings = self.metrics.read(sources, start, end, self.policy.period)
        aggregates = {slot: readings.slots.get(slot) for slot in slots}
        if base is not None and not readings.partial:
            self._learn_threshold(aggregates[base])
        numbers: dict[str, dict[str, Any]] = {slot: _as_numbers(m) for slot, m in aggregates.items()}
        window = Window(
            new=aggregates[new], baseline=aggregates[base] if base else None, partial=readings.partial
        )
        return window, numbers

    def _threshold_tick(
        self, index: int, release: ReleaseState, slot: SlotName, out: ServiceOutputs, seconds: int
    ) -> Verdict | None:
        try:
            end = _boundary(self.seams.clock.now(), self.policy.period)
            window, slots = self._window(
                out, release, slot, None, end - max(seconds, self.policy.period), end
            )
        except MetricsUnavailable as exc:
            self.record.errors.append(f"metrics unavailable during refresh: {exc}")
            return None
        verdict = judge(window, self.policy, baseline=False)
        self._record(index, release, slot, slots, verdict)
        return verdict

    def _record(
        self,
        index: int,
        release: ReleaseState,
        new: SlotName,
        slots: dict[str, dict[str, Any]],
        verdict: Verdict,
    ) -> None:
        self._write(index, release, new, slots, verdict.outcome.value, verdict.reason, dict(verdict.numbers))

    def _write(
        self,
        index: int,
        release: ReleaseState,
        new: SlotName,
        slots: dict[str, dict[str, Any]],
        outcome: str,
        reason: str,
        numbers: dict[str, Any],
    ) -> None:
        now = self.seams.clock.now()
        weights: dict[str, int] = {slot: w for slot, w in release.weights.items()}
        self.record.verdicts.append(VerdictRecord(now, index, outcome, reason, numbers))
        self.record.samples.append(Sample(now, weights, slots, new_slot=new, step=index))
        event = events.Tick(
            at=now,
            deployment_id=self.record.deployment_id,
            step=index,
            weights=weights,
            outcome=outcome,
            reason=reason,
            numbers=numbers,
        )
        self._save_now_and_then()  # first: a listener that reads the store finds this verdict
        self.seams.notify(event)

    def _save_now_and_then(self) -> None:
        """Save the record after a verdict, so ``status --watch`` and the dashboard show each
        window's numbers while the step runs (not only when it ends) — at most once per
        :data:`SAVE_EVERY` wall-clock seconds: a sandbox tick takes milliseconds, a real one a
        minute."""
        if self.seams.records is None:
            return
        moment = time.monotonic()
        if self._saved_at is None or moment - self._saved_at >= SAVE_EVERY:
            self._saved_at = moment
            self.seams.records.save(self.record)


def first_shift(record: DeploymentRecord) -> float | None:
    """When the deployment's first traffic shift began (its first weight step's start)."""
    starts = [s.started_at for s in record.steps if s.kind in ("set-weight", "start-variants")]
    return min(starts) if starts else None


def _ended_by_aws(status: RefreshStatus | None) -> bool:
    """Whether AWS itself ended or reverses the refresh (its alarm guard's rollback, or a failure):
    a refresh the driver must neither cancel nor start again."""
    return status is not None and (status.rolled_back_by_aws or status.status == "Failed")


def _old_instances_fail(slot: SlotMetrics | None, share: float, policy: Analysis) -> str | None:
    """Why a window of a slot being refreshed shows its old instances failing too (None: it
    does not). With ``share`` of the instances replaced, the new ones served about that share of
    the requests; even if every one of those failed, the rest of the errors are the old
    instances'. When that lower bound of the old instances' error rate is past ``maxErrorRate``
    the old version fails as well: an incident both share, not the release."""
    if slot is None or slot.requests <= 0 or share >= 1.0:
        return None
    old_requests = (1.0 - share) * slot.requests
    old_errors = slot.errors - share * slot.requests
    if old_requests < 1 or old_errors <= 0:
        return None
    floor = old_errors / old_requests
    if floor <= policy.max_error_rate or slot.errors < policy.alarm_min_requests * policy.max_error_rate:
        return None
    return (
        f"{slot.errors / slot.requests:.2%} 5xx with {share:.0%} of the instances replaced: the old "
        f"instances fail at least {floor:.2%} (maxErrorRate {policy.max_error_rate:.2%})"
    )


def _worse_than_before(
    segment: SlotMetrics | None, before: SlotMetrics | None, policy: Analysis, checks: int
) -> str | None:
    """Why the slot since its last batch is worse than before the refresh (None: it is not):
    its error rate higher than the pre-refresh one by the exact conditional binomial test, at
    ``significance`` shared out over the checkpoints of the refresh (each batch is tested once)."""
    if segment is None or before is None or before.requests <= 0 or segment.requests <= 0:
        return None
    level = policy.significance / max(1, checks)
    test = rate_comparison(before.requests, before.errors, segment.requests, segment.errors)
    if test.p_worse >= level:
        return None
    return (
        f"error rate {segment.errors / segment.requests:.2%} over {segment.requests} requests is higher than "
        f"{before.errors / before.requests:.2%} before the refresh (conditional binomial test "
        f"p={test.p_worse:.2g} < {level:.2g})"
    )


def _boundary(moment: float, period: int) -> float:
    """The last metric-period boundary at or before ``moment`` (periods are aligned to the epoch)."""
    return math.floor(moment / period) * period


def _has_data(window: Window, compare: bool) -> bool:
    """Whether the window's data was used (so its time must not be counted again). A window
    with a NaN or infinite metric counts as used: asking the provider again would only give the
    same datapoint, which would keep every later window of the step without data too."""
    return window.new is not None and not window.partial and (not compare or window.baseline is not None)


#: The judged metric an alarm watches, by the CloudWatch metric it reads (the 5xx-rate alarm's
#: math reads the error count and the request count: the error count decides).
_ALARM_KINDS = ((ERRORS.name, "error_rate"), (P99.name, "p99"), (CPU.name, "cpu"))
_COMPARISON_SIGNS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}


def alarm_kind(details: AlarmDetails) -> str | None:
    """``error_rate``, ``p99`` or ``cpu``: which of the judged metrics the alarm watches."""
    return next((kind for name, kind in _ALARM_KINDS if name in details.metric_names), None)


def alarm_numbers(details: AlarmDetails | None, slot: SlotName, firing: list[str]) -> dict[str, Any]:
    """The verdict numbers of a step a firing alarm ended (see docs/driver.md, "Why it rolled
    back"): which alarm, the slot, the metric, the threshold and the datapoints."""
    numbers: dict[str, Any] = {"source": "alarm", "alarm": firing[0], "slot": slot}
    if len(firing) > 1:
        numbers["firing"] = list(firing)
    if details is None:
        return numbers
    breaching = details.breaching
    numbers.update(
        metric=alarm_kind(details),
        alarm_metric=details.metric,
        statistic=details.statistic,
        period=details.period,
        threshold=details.threshold,
        comparison=details.comparison,
        datapoints=[{"at": p.at, "value": p.value} for p in details.datapoints],
        breaching=[{"at": p.at, "value": p.value} for p in breaching],
        value=breaching[-1].value if breaching else None,
        state_reason=details.reason,
    )
    return numbers


def alarm_reason(details: AlarmDetails | None, firing: list[str]) -> str:
    """One line: the alarm, and its breaching value against its threshold when known."""
    text = f"alarm {firing[0]} is firing"
    if details is None or details.threshold is None:
        return text
    breaching = details.breaching
    what = alarm_kind(details) or details.metric
    sign = _COMPARISON_SIGNS.get(details.comparison, details.comparison)
    if not breaching:
        return f"{text}: {what} {sign} {details.threshold:.4g}"
    latest = breaching[-1].value
    return (
        f"{text}: {what} {latest:.4g} {sign} {details.threshold:.4g} "
        f"in {len(breaching)} of {len(details.datapoints)} evaluated datapoints"
    )


def _as_numbers(m: SlotMetrics | None) -> dict[str, Any]:
    if m is None:
        return {"requests": None, "errors": None, "error_rate": None, "p99": None, "cpu": None}
    numbers: dict[str, Any] = {
        "requests": m.requests,
        "errors": m.errors,
        "error_rate": m.error_rate,
        "p99": m.p99,
        "cpu": m.cpu,
    }
    if m.slow is not None:
        numbers.update(slow=m.slow, latency_threshold=m.slow_threshold)
    if m.unusable:
        numbers["unusable"] = ", ".join(m.unusable)
    return numbers
