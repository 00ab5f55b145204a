"""The step judge: the successive windows of one step, and when the step is over.

:class:`StepJudge` judges each window by the rules of one window (:mod:`rfs_deploy.drive.rules`)
and counts the windows until the step passes or fails. No IO here: the runner fetches the
aggregates and hands them in.

Rules of a step that compares with the baseline, on top of the rules of one window (measured in
``benchmarks/decision``, which is where the numbers below come from):

* **thin windows are carried**: a window below ``min_requests`` is still INCONCLUSIVE, and its
  counts are added to the next window's for the thresholds and the p99 comparison. At 1,000
  requests/min a 10 % canary gets about 100 requests a minute, under ``min_requests`` half of
  the time: without carrying, six thin minutes in a row failed 1.6 % of healthy releases for "not
  enough data";
* **a p99 on a thin tail must repeat**: a p99 above tolerance when either slot served fewer than
  :data:`STABLE_P99_REQUESTS` requests (the p99 of 100 requests is their second largest) holds the
  window instead of failing it, and fails the step if the next judged window shows it again.
  One-window p99 comparisons rolled back 8 % of healthy releases at 1,000 requests/min;
* **the weight is held while the evidence leans against the new version**: a window that would
  pass while the sequential test's likelihood ratio is above ``1/sqrt(alpha)`` (half-way to
  rejection) holds the weight for another window instead of letting the plan raise it, so a
  regression that is not yet proven gathers its evidence at the lower weight.

A held window extends the step like an inconclusive one, at most :data:`MAX_HOLDS` times per step,
and does not count towards ``max_inconclusive``.
"""

from __future__ import annotations

import math
from dataclasses import replace

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.rules import (
    Assessment,
    Finding,
    Outcome,
    Verdict,
    Window,
    assess,
    combine,
    merge,
    thin_breach,
    worst,
)
from rfs_deploy.drive.stats import Evidence, hold_level
from rfs_deploy.metrics.base import SlotMetrics

#: A p99 rests on the requests beyond it: below this many requests in a window (ten beyond the
#: p99) a slot's p99 moves a lot from minute to minute, so a p99 above tolerance must repeat.
STABLE_P99_REQUESTS = 1000
#: Windows a step may hold (extend) to confirm a p99 or while the evidence leans against the
#: new version; after that its windows are judged as they come.
MAX_HOLDS = 2
#: A release step whose thin windows lean against the new version may take this many times its
#: allowance of thin windows (``maxInconclusive + 1``) before it ends undecided: the sequential
#: test is on its way to a decision, and the step's lower weight limits what it costs meanwhile.
LEANING_EXTENSION = 3
#: Windows a release step may hold through a shared incident (the baseline failing as badly as
#: the new version) before it ends undecided.
MAX_INCIDENT_WINDOWS = 30
#: A new version whose 5xx rate is past this many times ``maxErrorRate`` is rolled back at its
#: alarm's first period even over a healthy baseline (past a hard limit, nothing to confirm).
HARD_LIMIT_FACTOR = 2.0


def planned_windows(duration: int, interval: int) -> int:
    """How many judged windows a step of ``duration`` seconds needs at one per ``interval``."""
    return max(1, math.ceil(duration / max(1, interval)))


class StepJudge:
    """Judges the successive windows of one step and says when the step is over.

    The runner calls :meth:`observe` once per interval (or :meth:`fetch_failed` when the metric
    query failed) until :attr:`result` is not None. The step

    * FAILs at ``failure_limit`` failed windows, at more than ``max_inconclusive`` windows too
      thin to judge or more than ``max_inconclusive`` windows *in a row* without data ("not
      enough data"), or at ``consecutive_error_limit`` fetch errors in a row;
    * PASSes once ``windows`` windows passed.

    Inconclusive windows, failed windows below the limit and fetch errors do not count towards
    ``windows``, so they extend the step by one interval each, up to those limits. Missing data
    is limited by its run, not its total: CloudWatch that answers every other minute (late and
    dropped datapoints) still lets the step judge ``windows`` windows of real data, within the
    deployment's time budget; CloudWatch that stopped answering fails the step. A window
    without data is merged into the next, so no minute goes unjudged.

    A step compared with the baseline adds the module docstring's step rules: thin windows are
    carried, a p99 on a thin tail must repeat, and the weight is held while the evidence leans.

    Hand the previous step's ``evidence`` on to run one sequential baseline test over the whole
    release, which bounds the false-rollback probability per release rather than per step.
    """

    def __init__(
        self,
        policy: Analysis,
        *,
        baseline: bool,
        windows: int,
        evidence: Evidence | None = None,
        release: bool = False,
        pool: Window | None = None,
    ):
        self.policy = policy
        self.baseline = baseline
        self.windows = max(1, windows)
        self.evidence = evidence
        #: A step of a release (the runner's analysis steps): the low-traffic rules apply.
        self.release = release
        self.verdicts: list[Verdict] = []
        self.passed = self.failed = self.inconclusive = self.fetch_errors = self.consecutive_errors = 0
        self.held = 0
        #: Inconclusive windows without usable data (none, partial): all of them, and the run so far.
        self.missing = self.missing_run = 0
        self.result: Verdict | None = None
        self._carry: Window | None = pool if release else None
        self._slow = False
        #: Windows held through a shared incident; the window index of the last firing alarm.
        self.incident = 0
        self._alarm_at = -2
        self._alarm_ats: set[int] = set()
        #: The new slot's counts over the alarm's periods in a row that were not beyond chance.
        self._alarm_thin: SlotMetrics | None = None
        self._breached = False
        #: The new slot's counts over the breaching windows in a row that were within chance.
        self._breach_thin: SlotMetrics | None = None

    @property
    def pool(self) -> Window | None:
        """The thin windows not judged yet (hand them to the next step of the release)."""
        return self._carry

    @property
    def compare(self) -> bool:
        """Whether this step compares the new slot with the baseline."""
        return self.baseline and self.policy.baseline_comparison

    def observe(self, window: Window) -> Verdict:
        """Judge the next window and update the step's state; returns the window's verdict."""
        self._check_open()
        pooled = self._pooled(window)
        before = self.evidence
        found = assess(window, self.policy, self.baseline, self.evidence, pooled, thin_test=self.release)
        self.evidence = found.evidence
        findings = self._step_rules(found)
        if any(f.kind == "incident" for f in findings):
            # a shared incident's minutes say nothing about the release, and their 50 % rates would
            # read as burstiness to the dispersion estimate for the rest of it: set them aside
            self.evidence = before if before is not None or not self.compare else Evidence.start()
            found.evidence = self.evidence
        verdict = combine(findings, found.judged, found.numbers, found.evidence)
        kinds = {f.kind for f in findings if f.outcome is not Outcome.PASS}
        if (self.compare or self.release) and "thin" in kinds:
            self._carry = pooled or window
        elif "data" not in kinds:
            self._carry = None
        self.verdicts.append(verdict)
        self.consecutive_errors = 0
        if verdict.outcome is Outcome.PASS:
            self.passed += 1
        elif verdict.outcome is Outcome.FAIL:
            self.failed += 1
        elif kinds == {"hold"}:
            self.held += 1
        elif kinds == {"incident"}:
            self.incident += 1
        else:
            self.inconclusive += 1
        if "data" in kinds:
            self.missing += 1
            self.missing_run += 1
        else:
            self.missing_run = 0
        self._settle()
        return verdict

    def _pooled(self, window: Window) -> Window | None:
        """``window`` with the carried thin windows' counts added (None: nothing carried)."""
        if self._carry is None or window.new is None or window.partial:
            return None
        carry = self._carry
        return Window(new=merge(carry.new, window.new), baseline=merge(carry.baseline, window.baseline))

    def _step_rules(self, found: Assessment) -> list[Finding]:
        """Hold a lone p99 excursion on a thin tail, or a pass the evidence leans against; in a
        release step, hold a failure the baseline shares (a shared incident)."""
        findings = found.findings
        if not self.compare or any(f.kind == "data" for f in findings):
            return findings
        incident = self._incident(found)
        if incident is not None:
            return [Finding(Outcome.INCONCLUSIVE, incident, "incident")]
        findings = self._confirm_breach(found, findings)
        fails = [f for f in findings if f.outcome is Outcome.FAIL]
        slow = [f for f in fails if f.kind == "latency"]
        was_slow = self._slow
        if not any(f.kind == "thin" for f in findings):  # a thin window has no p99 verdict
            self._slow = bool(slow)
        can_hold = self.held < MAX_HOLDS
        if slow and len(slow) == len(fails) and not was_slow and can_hold and _thin_tail(found):
            n = min(m.requests for m in (found.judged, found.base) if m is not None)
            text = f"{slow[0].text} on a thin tail ({n} requests): confirming over the next window"
            kept = [f for f in findings if f.kind != "latency"]
            return [*kept, Finding(Outcome.INCONCLUSIVE, text, "hold")]
        evidence = found.evidence
        if findings or not can_hold or evidence is None:
            return findings
        if evidence.log_mixture >= hold_level(self.policy.significance):
            lean = math.exp(-evidence.log_mixture)
            text = f"holding this weight: the sequential test leans against the new version (p={lean:.2g})"
            return [Finding(Outcome.INCONCLUSIVE, text, "hold")]
        return findings

    def _incident(self, found: Assessment) -> str | None:
        """Why this window's failure is a shared incident the step holds through (None: it is not).

        The baseline is past ``maxErrorRate`` in the same window as the new version, and the
        sequential test does not say the new version is worse than it: the upstream both depend
        on is failing, not the release. Rolling back would move all traffic onto a baseline that
        is just as sick; the step holds its weight (no change, no rollback) and judges again
        when the baseline recovers. A new version worse than its baseline is still rolled back
        (the sequential test's FAIL is kept)."""
        if not self.release or self.incident >= MAX_INCIDENT_WINDOWS:
            return None
        fails = [f for f in found.findings if f.outcome is Outcome.FAIL]
        if not fails or any(f.kind in ("sequential", "slow") for f in fails):
            return None
        base = found.base
        if base is None or base.requests <= 0 or base.errors / base.requests <= self.policy.max_error_rate:
            return None
        return (
            f"shared incident: the baseline fails too ({base.errors / base.requests:.2%} 5xx), "
            f"{fails[0].text}; holding the weight until the baseline recovers"
        )

    def _confirm_breach(self, found: Assessment, findings: list[Finding]) -> list[Finding]:
        """In a release step, an error-rate breach over a healthy baseline must be beyond chance
        and repeat in the next window, unless the sequential test leans against the new version.

        * Within chance: the new slot's errors, pooled over the breaching windows in a row, are not
          significantly above ``maxErrorRate`` (:func:`~rfs_deploy.drive.rules.thin_breach`): the
          weight is held and the sequential test decides. One error among ten requests is no 10 %
          error rate (measured: such breaches rolled back 5 % of healthy releases whose first step
          took 1 % of 1,000 requests/min with ``minRequests`` 10).
        * Beyond chance, a single window over a healthy baseline is confirmed with the next unless
          it is past the hard limit or neither slot is bursty: a single bursty minute is not a
          regression (measured: a one-window 5 % limit rolls back a tenth of healthy releases
          whose minutes' rates vary by a CV of 2)."""
        breached = [f for f in findings if f.kind == "threshold" and f.text.startswith("error rate")]
        was, self._breached = self._breached, bool(breached)
        pooled_before, self._breach_thin = self._breach_thin, None
        if not self.release or not breached or found.judged is None:
            return findings
        others = [f for f in findings if f.outcome is Outcome.FAIL and f not in breached]
        evidence, p = self.evidence, self.policy
        leaning = evidence is not None and evidence.log_mixture >= hold_level(p.significance)
        if others or leaning:
            return findings
        kept = [f for f in findings if f not in breached]
        pooled = merge(pooled_before, found.judged) if was and pooled_before is not None else found.judged
        if pooled is not None and thin_breach(pooled, p) is None:
            self._breach_thin = pooled
            text = (
                f"{breached[0].text}, within chance of {p.max_error_rate:.2%} "
                f"({pooled.errors} error(s) among {pooled.requests} requests): holding the weight"
            )
            return [*kept, Finding(Outcome.INCONCLUSIVE, text, "hold")]
        rate = found.judged.errors / found.judged.requests
        if was or rate > HARD_LIMIT_FACTOR * p.max_error_rate or not self._bursty():
            return findings
        text = f"{breached[0].text} for one window over a healthy baseline: confirming with the next"
        return [*kept, Finding(Outcome.INCONCLUSIVE, text, "hold")]

    def alarm(self, name: str, window: Window) -> Verdict:
        """A firing alarm of the new slot, after :meth:`observe` judged ``window`` (the periods the
        alarm saw): FAIL to roll back, INCONCLUSIVE to hold (nothing is decided by it).

        Outside a compared release step every firing alarm rolls back. In one, the alarm rolls
        back a new version past the hard limit (:data:`HARD_LIMIT_FACTOR` x ``maxErrorRate``)
        over a healthy baseline, one the sequential test leans against or rejects, or one whose
        alarm fires in two windows in a row; a single period's burst over a healthy baseline is
        confirmed with the next window, and an alarm while the baseline fails too is a shared
        incident: held, unless the sequential test shows the new version worse than it. A step
        that passed on ``window`` is still failed by an alarm that rolls back."""
        if self.result is not None and self.result.outcome is not Outcome.PASS:
            raise RuntimeError("this step is already decided")
        index, self._alarm_at = len(self.verdicts), len(self.verdicts)
        text = f"alarm {name} is firing"
        new, base = window.new, window.baseline
        if not (self.release and self.compare) or new is None or new.requests <= 0:
            return self._alarm_verdict(Outcome.FAIL, text)
        p = self.policy
        evidence = self.evidence
        rejects = evidence is not None and evidence.rejects(p.significance)
        leaning = evidence is not None and evidence.log_mixture >= hold_level(p.significance)
        rate = new.errors / new.requests
        base_rate = None if base is None or base.requests <= 0 else base.errors / base.requests
        if base_rate is not None and base_rate > p.max_error_rate and not rejects:
            if self.incident < MAX_INCIDENT_WINDOWS:
                self.incident += 1
                why = f"{text} while the baseline fails too ({base_rate:.2%} 5xx): shared incident, holding"
                return self._alarm_verdict(Outcome.INCONCLUSIVE, why)
            return self._alarm_verdict(Outcome.FAIL, f"{text} through a shared incident too long")
        if rejects or leaning:
            return self._alarm_verdict(Outcome.FAIL, text)
        if rate > p.max_error_rate:
            # the 5xx alarm's doing: on a handful of requests it must be beyond chance, its periods
            # in a row pooled, before it overrides the sequential test (one error among ten
            # requests is no 10 % error rate; measured: such alarms rolled back 6 % of healthy
            # releases whose first step took 1 % of 1,000 requests/min)
            repeated = index - 1 in self._alarm_ats and self._alarm_thin is not None
            pooled = merge(self._alarm_thin, new) if repeated else new
            if pooled is not None and thin_breach(pooled, p) is None:
                self._alarm_thin = pooled
                why = (
                    f"{text} on {pooled.errors} error(s) among {pooled.requests} requests, within chance "
                    f"of {p.max_error_rate:.2%}: the sequential test decides"
                )
                return self._alarm_verdict(Outcome.INCONCLUSIVE, why)
        self._alarm_thin = None
        confirmed = index - 1 in self._alarm_ats or not self._bursty()
        if rate > HARD_LIMIT_FACTOR * p.max_error_rate or confirmed:
            return self._alarm_verdict(Outcome.FAIL, text)
        return self._alarm_verdict(Outcome.INCONCLUSIVE, f"{text} for one window: confirming with the next")

    def _bursty(self) -> bool:
        """Whether either slot's 5xx counts vary from window to window beyond a binomial's (then
        a breach in one window over a healthy baseline must repeat)."""
        e = self.evidence
        # the baseline's history counts too (an hour of minutes shows bursts a first window cannot)
        if e is None:
            return False
        return max(e.new_spread.dispersion, e.base_spread.dispersion) > 1.0 or e.prior_correlation > 0

    def _alarm_verdict(self, outcome: Outcome, reason: str) -> Verdict:
        self._alarm_ats.add(self._alarm_at)
        verdict = Verdict(outcome, reason, {"source": "alarm"}, self.evidence)
        if outcome is Outcome.FAIL:
            self.result = None
            self._end(Outcome.FAIL, reason, verdict)
        return verdict

    def fetch_failed(self, reason: str) -> Verdict:
        """Record a failed metric query (it is neither a pass nor a failure of the version)."""
        self._check_open()
        verdict = Verdict(Outcome.INCONCLUSIVE, f"metrics unavailable: {reason}", {"fetch_error": reason})
        self.verdicts.append(verdict)
        self.fetch_errors += 1
        self.consecutive_errors += 1
        self._settle()
        return verdict

    def _check_open(self) -> None:
        if self.result is not None:
            raise RuntimeError("this step is already decided")

    def _settle(self) -> None:
        p = self.policy
        last = self.verdicts[-1]
        if self.failed >= p.failure_limit:
            worst_failed = worst([v for v in self.verdicts if v.outcome is Outcome.FAIL])
            self._end(Outcome.FAIL, f"{self.failed} failed window(s): {worst_failed.reason}", worst_failed)
        elif self.consecutive_errors >= p.consecutive_error_limit:
            errors = self.consecutive_errors
            self._end(Outcome.FAIL, f"{errors} metric fetch errors in a row: {last.reason}", last)
        elif self.missing_run > p.max_inconclusive:
            self._end(
                Outcome.FAIL,
                f"not enough data: {self.missing_run} windows in a row without data "
                f"(limit {p.max_inconclusive}): {last.reason}",
                last,
            )
        elif self.inconclusive - self.missing > p.max_inconclusive and self.release:
            self._undecided(last)
        elif self.inconclusive - self.missing > p.max_inconclusive:
            self._end(
                Outcome.FAIL,
                f"not enough data: {self.inconclusive - self.missing} inconclusive windows "
                f"(limit {p.max_inconclusive}): {last.reason}",
                last,
            )
        elif self.passed >= self.windows:
            self._end(Outcome.PASS, f"{self.passed} window(s) passed: {last.reason}", last)

    def _undecided(self, last: Verdict) -> None:
        """A release step whose traffic stayed below ``min_requests`` (thin windows pooled).

        A compared step whose pooled windows show nothing against the new version (no breach,
        the sequential test not leaning) advances and hands its pool to the next step: the next
        weight brings more requests, the sequential test keeps its evidence, and the thresholds
        judge the pool as soon as it is large enough. A step that cannot advance so (the last,
        uncompared steps; evidence leaning) ends as ``onInconclusive`` says: INCONCLUSIVE for
        ``pause`` (the runner holds the deployment for a person), FAIL for ``rollback``, PASS
        for ``promote``. Never a rollback for lack of data unless asked for."""
        p = self.policy
        pooled = last.numbers.get("pooled_requests", last.numbers.get("requests"))
        thin = self.inconclusive - self.missing
        what = f"{thin} thin windows, {pooled} requests pooled (need {p.min_requests})"
        evidence = self.evidence
        leaning = evidence is not None and evidence.log_mixture >= hold_level(p.significance)
        extend = thin <= LEANING_EXTENSION * (p.max_inconclusive + 1)
        if leaning and p.on_inconclusive != "rollback" and extend:
            return  # the evidence heads for a decision: extend the step while it gathers
        if self.compare and not leaning and p.on_inconclusive != "rollback":
            text = f"advancing on thin data: {what}, nothing against the new version; pooled into the next"
            self._end(Outcome.PASS, text, last)
        elif p.on_inconclusive == "promote":
            self._end(Outcome.PASS, f"undecided ({what}): promoted, as analysis.onInconclusive says", last)
        elif p.on_inconclusive == "rollback":
            self._end(Outcome.FAIL, f"not enough data: {what} (analysis.onInconclusive: rollback)", last)
        else:
            lean = " while the sequential test leans against the new version" if leaning else ""
            self._end(Outcome.INCONCLUSIVE, f"undecided ({what}{lean}): waiting for a person", last)

    def out_of_time(self) -> Verdict:
        """End a step whose thin windows are still pooled (:attr:`pool`) because its next window
        would end past the deployment's time budget: as ``onInconclusive`` says (INCONCLUSIVE for
        ``pause``, FAIL for ``rollback``, PASS for ``promote``), never extended past the budget."""
        self._check_open()
        if self._carry is None:
            raise RuntimeError("no thin windows pooled: nothing is undecided for lack of traffic")
        p = self.policy
        carry = self._carry.new
        pooled = 0 if carry is None else carry.requests
        thin = self.inconclusive - self.missing
        windows = f"{thin} thin windows" if thin else "thin windows of the steps before"
        what = (
            f"{windows}, {pooled} requests pooled (need {p.min_requests}); "
            "the deployment's time budget ends before another window"
        )
        basis = self.verdicts[-1] if self.verdicts else Verdict(Outcome.INCONCLUSIVE, what, {})
        basis = replace(basis, numbers={**basis.numbers, "pooled_requests": pooled, "time_budget": True})
        if p.on_inconclusive == "promote":
            self._end(Outcome.PASS, f"undecided ({what}): promoted, as analysis.onInconclusive says", basis)
        elif p.on_inconclusive == "rollback":
            self._end(Outcome.FAIL, f"not enough data: {what} (analysis.onInconclusive: rollback)", basis)
        else:
            self._end(Outcome.INCONCLUSIVE, f"undecided ({what}): waiting for a person", basis)
        assert self.result is not None
        return self.result

    def _end(self, outcome: Outcome, reason: str, basis: Verdict) -> None:
        numbers = dict(basis.numbers)
        numbers.update(
            windows_planned=self.windows,
            windows_passed=self.passed,
            windows_failed=self.failed,
            windows_inconclusive=self.inconclusive,
            windows_without_data=self.missing,
            windows_held=self.held,
            windows_incident=self.incident,
            fetch_errors=self.fetch_errors,
        )
        self.result = replace(basis, outcome=outcome, reason=reason, numbers=numbers, evidence=self.evidence)


def _thin_tail(found: Assessment) -> bool:
    """Whether either slot's p99 rests on fewer than :data:`STABLE_P99_REQUESTS` requests."""
    return any(m is not None and m.requests < STABLE_P99_REQUESTS for m in (found.judged, found.base))
