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

from rfs_deploy.config.model import ReleaseState, ServiceConfig, SlotName
from rfs_deploy.drive import events
from rfs_deploy.drive.ab import decide_ab
from rfs_deploy.drive.judge import StepJudge, planned_windows
from rfs_deploy.drive.outcomes import StepOutcome
from rfs_deploy.drive.probe import Batch, probe_paths, run_probe
from rfs_deploy.drive.records import DeploymentRecord, Sample, VerdictRecord
from rfs_deploy.drive.rules import Outcome, SlotMetrics, Verdict, Window, judge
from rfs_deploy.drive.stats import Evidence
from rfs_deploy.drive.steps import Analyze, Decide, WatchRefresh
from rfs_deploy.errors import MetricsUnavailable, RfsDeployError
from rfs_deploy.metrics import MetricsProvider, provider_for, slot_sources
from rfs_deploy.metrics.definitions import CPU, ERRORS, P99
from rfs_deploy.outputs import ServiceOutputs
from rfs_deploy.readback import AlarmDetails

if TYPE_CHECKING:
    from rfs_deploy.drive.context import Seams


#: Seconds before a failed metric fetch is tried again.
FETCH_RETRY = 15


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
        self.deadline: float | None = None
        self._metrics: MetricsProvider | None = None
        self._saved_at: float | None = None

    @property
    def metrics(self) -> MetricsProvider:
        """The provider ``analysis.metrics`` names (built on first use: a plan without an
        observing step never needs one)."""
        if self._metrics is None:
            self._metrics = provider_for(self.policy.metrics, self.seams.metrics)
        return self._metrics

    # ------------------------------------------------------------------ steps

    async def analyze(
        self, index: int, step: Analyze, release: ReleaseState, out: ServiceOutputs
    ) -> StepOutcome:

        new = release.judged_slot(self.record.version)
        base = release.live if new != release.live else None
        compare = step.baseline and base is not None and release.weights[base] > 0
        interval = max(step.interval, self.policy.period)
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
                verdict = sj.observe(window)
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

        slot = release.live
        asg = out.slot(slot).asg_name
        interval = max(step.interval, 1)
        waited = 0
        failures = 0
        while True:
            await self._tick_wait(interval)
            waited += interval
            status = self.seams.fleet.latest_refresh(asg)
            firing = self._firing(out, slot)
            if firing:
                end = _boundary(self.seams.clock.now(), self.policy.period)
                self._alarm_failed(
                    index, release, out, slot, firing, (end - max(interval, self.policy.period), end), None
                )
                return StepOutcome(False, f"alarm {firing[0]} is firing during the instance refresh")
            verdict = self._threshold_tick(index, release, slot, out, interval)
            if verdict is not None and verdict.outcome is Outcome.FAIL:
                failures += 1
                if failures >= self.policy.failure_limit:
                    return StepOutcome(False, verdict.reason)
            if status is None:
                return StepOutcome(False, f"no instance refresh found on {asg}")
            if status.status == "Successful":
                return StepOutcome(True, f"instance refresh {status.refresh_id} replaced every instance")
            if status.rolled_back_by_aws:
                return StepOutcome(
                    False, f"AWS rolled the instance refresh back ({status.status}): {status.status_reason}"
                )
            if status.done:
                return StepOutcome(False, f"instance refresh ended {status.status}: {status.status_reason}")
            if waited >= step.timeout:
                return StepOutcome(
                    False, f"instance refresh at {status.percentage_complete}% after {waited}s"
                )

    async def decide(
        self, index: int, step: Decide, release: ReleaseState, out: ServiceOutputs
    ) -> StepOutcome:

        b, a = release.idle, release.live
        interval = max(step.interval, self.policy.period)
        windows: list[Window] = []
        elapsed = 0
        while elapsed < step.duration:
            await self._tick_wait(interval)
            elapsed += interval
            firing = self._firing(out, b)
            if firing:
                end = _boundary(self.seams.clock.now(), self.policy.period)
                self._alarm_failed(index, release, out, b, firing, (end - interval, end), a)
                return StepOutcome(False, f"alarm {firing[0]} is firing on variant B")
            try:
                end = _boundary(self.seams.clock.now(), self.policy.period)
                window, slots = self._window(out, release, b, a, end - interval, end)
            except MetricsUnavailable as exc:
                self.record.errors.append(f"A/B tick skipped: {exc}")
                continue
            windows.append(window)
            guard = judge(window, self.policy, baseline=False)
            self._record(index, release, b, slots, guard)
            if guard.outcome is Outcome.FAIL:
                return StepOutcome(False, f"variant B: {guard.reason}")
        decision = decide_ab(windows, release.weights[b], self.policy)
        self.record.decision = f"{decision.winner}: {decision.reason}"
        self.record.verdicts.append(
            VerdictRecord(
                self.seams.clock.now(),
                index,
                f"WINNER {decision.winner}",
                decision.reason,
                dict(decision.numbers),
            )
        )
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
        sources = slot_sources(self.record.service, out, slots, release)
        readings = self.metrics.read(sources, start, end, self.policy.period)
        aggregates = {slot: readings.slots.get(slot) for slot in slots}
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
    if m.unusable:
        numbers["unusable"] = ", ".join(m.unusable)
    return numbers
