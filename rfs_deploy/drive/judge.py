"""Analysis verdicts: pure functions of metric aggregates and the service's Analysis policy.

* :func:`judge` turns one analysis window into a :class:`Verdict` (PASS, FAIL or INCONCLUSIVE,
  one-line reason, the numbers behind it).
* :class:`StepJudge` accumulates the windows of one step and says when the step is over.

The A/B decision, built on the same windows and thresholds, is :mod:`rfs_deploy.drive.ab`.

No IO here: the runner fetches the aggregates and hands them in.

Rules of one window, in order (the worst finding wins, as Argo's ``Worst()``):

1. no data for the new slot, partial data, no requests, or a metric that is NaN, infinite or
   negative (:attr:`SlotMetrics.unusable`) → INCONCLUSIVE (never a silent pass); a baseline with
   such counts is no baseline data, and such a p99 is not compared;
2. the baseline comparison (when asked for) is fed every complete window — its guarantee does
   not depend on window size — and FAILs as soon as it rejects;
3. fewer than ``min_requests`` requests on the new slot → INCONCLUSIVE;
4. absolute thresholds ``max_error_rate``, ``max_p99_latency``, ``max_cpu`` → FAIL;
5. baseline comparison: p99 above ``latency_tolerance`` x the baseline's (both with
   ``min_requests``) → FAIL; a window without baseline data is judged on thresholds alone (the
   reason says so) — the comparison adds a check, it does not hold the step up;
6. otherwise PASS.

The baseline comparison of error rates is a *sequential* test over cumulative 5xx counts
(:class:`rfs_deploy.drive.stats.Evidence`): a mixture SPRT on the new slot's share of errors.
A per-window test at significance ``alpha`` would raise a false alarm with probability about
``alpha`` *per window*; the sequential test keeps it below ``alpha`` for the whole step — or for
the whole release when the runner hands each step's evidence to the next.

Rules of a step that compares with the baseline, on top of those (:class:`StepJudge`; measured in
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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import NamedTuple, TypeAlias

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.stats import (
    Evidence,
    hold_level,
    threshold,
)
from rfs_deploy.metrics.base import SlotMetrics

Number: TypeAlias = float | int | str | bool | None

#: A p99 rests on the requests beyond it: below this many requests in a window (ten beyond the
#: p99) a slot's p99 moves a lot from minute to minute, so a p99 above tolerance must repeat.
STABLE_P99_REQUESTS = 1000
#: Windows a step may hold (extend) to confirm a p99 or while the evidence leans against the
#: new version; after that its windows are judged as they come.
MAX_HOLDS = 2


class Outcome(StrEnum):
    """A verdict's outcome; ``severity`` orders them for worst-first combination."""

    PASS = "PASS"
    INCONCLUSIVE = "INCONCLUSIVE"
    FAIL = "FAIL"

    @property
    def severity(self) -> int:
        return {"PASS": 0, "INCONCLUSIVE": 1, "FAIL": 2}[self.value]


@dataclass(frozen=True)
class Window:
    """One analysis tick: the new slot and, when traffic is split, the baseline (live) slot.

    ``new`` is None when CloudWatch returned no datapoints at all for the new slot;
    ``partial`` is True when it said the result was incomplete.
    """

    new: SlotMetrics | None
    baseline: SlotMetrics | None = None
    partial: bool = False


@dataclass(frozen=True)
class Verdict:
    """Outcome, a one-line reason, and the numbers behind it (for records and reports)."""

    outcome: Outcome
    reason: str
    numbers: Mapping[str, Number] = field(default_factory=dict)
    #: The sequential baseline test after this window (None when no comparison was asked for).
    evidence: Evidence | None = None

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS


def worst(verdicts: list[Verdict]) -> Verdict:
    """The most severe verdict (FAIL > INCONCLUSIVE > PASS); the first one among equals."""
    if not verdicts:
        raise ValueError("no verdicts to combine")
    return max(verdicts, key=lambda v: v.outcome.severity)


# --------------------------------------------------------------------------- one window


class _Finding(NamedTuple):
    """One thing a window shows, and which rule found it (StepJudge's rules act on the kind)."""

    outcome: Outcome
    text: str
    #: "data" (no usable data), "sequential", "thin" (below min_requests), "threshold", "latency"
    #: (p99 against the baseline's) or "hold" (a step rule holding the weight).
    kind: str


@dataclass
class _Assessment:
    findings: list[_Finding]
    numbers: dict[str, Number]
    evidence: Evidence | None
    #: The new slot's counts the thresholds saw (pooled with carried thin windows); None: no data.
    judged: SlotMetrics | None
    #: The baseline those checks saw.
    base: SlotMetrics | None = None


def judge(window: Window, policy: Analysis, baseline: bool, evidence: Evidence | None = None) -> Verdict:
    """Judge one window against ``policy``; ``baseline`` also compares with the live slot.

    ``evidence`` is the sequential test so far (fresh when None); the verdict carries the
    updated evidence, which :class:`StepJudge` threads from window to window.
    """
    found = _assess(window, policy, baseline, evidence)
    return _combine(found.findings, found.judged, found.numbers, found.evidence)


def _assess(
    window: Window,
    policy: Analysis,
    baseline: bool,
    evidence: Evidence | None,
    pooled: Window | None = None,
) -> _Assessment:
    """The findings of one window. The sequential test always gets ``window``'s own counts;
    the thresholds and the latency comparison judge ``pooled`` (thin windows carried into this
    one) when given."""
    compare = baseline and policy.baseline_comparison
    if compare and evidence is None:
        evidence = Evidence.start()
    numbers = _numbers(window, policy)
    window, pooled = _without_unusable_baseline(window), pooled and _without_unusable_baseline(pooled)
    new = window.new
    problem = _data_problem(window)
    if problem is not None or new is None:
        return _Assessment([_Finding(Outcome.INCONCLUSIVE, problem or "", "data")], numbers, evidence, None)

    findings: list[_Finding] = []
    if compare and evidence is not None and window.baseline is not None:
        evidence = evidence.update(new.requests, new.errors, window.baseline.requests, window.baseline.errors)
        numbers.update(_evidence_numbers(evidence, policy))
        if evidence.rejects(policy.significance):
            findings.append(_Finding(Outcome.FAIL, _rejection_reason(evidence), "sequential"))
    seen = pooled if pooled is not None and pooled.new is not None else window
    judged = seen.new or new
    if seen is pooled:
        numbers.update(pooled_requests=judged.requests, pooled_errors=judged.errors)
    if judged.requests < policy.min_requests:
        text = f"only {judged.requests} requests (need {policy.min_requests})"
        findings.append(_Finding(Outcome.INCONCLUSIVE, text, "thin"))
    else:
        breaches = absolute_thresholds(judged, seen.baseline, policy)
        findings += [_Finding(o, t, "threshold") for o, t in breaches]
        if compare:
            latency = _latency_vs_baseline(judged, seen.baseline, policy, numbers)
            findings += [_Finding(o, t, "latency") for o, t in latency]
    return _Assessment(findings, numbers, evidence, judged, seen.baseline)


def _without_unusable_baseline(window: Window) -> Window:
    """``window`` without its baseline when the baseline's counts are unusable (no baseline data);
    a baseline p99 or CPU that is unusable is None already, so it is simply not compared."""
    base = window.baseline
    if base is not None and any(u.startswith(("requests ", "errors ")) for u in base.unusable):
        return replace(window, baseline=None)
    return window


def _data_problem(window: Window) -> str | None:
    """Why a window cannot be judged at all (None when it can)."""
    new = window.new
    if new is None:
        return "no data for the new slot"
    if new.unusable:
        return f"no data: the new slot's {', '.join(new.unusable)} (NaN, infinite or negative)"
    if window.partial:
        return "CloudWatch returned partial data"
    if new.requests <= 0:
        return "no requests reached the new slot"
    if new.errors > new.requests:
        return "inconsistent: more errors than requests"
    return None


def absolute_thresholds(
    new: SlotMetrics, base: SlotMetrics | None, policy: Analysis
) -> list[tuple[Outcome, str]]:
    """FAILs for ``new`` above ``maxErrorRate``, ``maxP99Latency`` or ``maxCpu`` (the baseline
    only adds "baseline also ..." to the error-rate reason)."""
    found: list[tuple[Outcome, str]] = []
    rate = new.errors / new.requests
    if rate > policy.max_error_rate:
        also = ""
        if base is not None and base.error_rate is not None and base.error_rate > policy.max_error_rate:
            also = f" (baseline also {base.error_rate:.2%})"
        found.append((Outcome.FAIL, f"error rate {rate:.2%} > {policy.max_error_rate:.2%}{also}"))
    if new.p99 is not None and new.p99 > policy.max_p99_latency:
        found.append((Outcome.FAIL, f"p99 {new.p99:.3g}s > {policy.max_p99_latency:.3g}s"))
    if new.cpu is not None and new.cpu > policy.max_cpu:
        found.append((Outcome.FAIL, f"CPU {new.cpu:.1f}% > {policy.max_cpu:.1f}%"))
    return found


def _latency_vs_baseline(
    new: SlotMetrics, base: SlotMetrics | None, policy: Analysis, numbers: dict[str, Number]
) -> list[tuple[Outcome, str]]:
    if base is None:
        # The comparison is an extra check on top of the thresholds: a window without baseline
        # data is judged on thresholds alone (and said so) rather than held up. The sequential
        # test simply gets no evidence from it.
        numbers["baseline_missing"] = True
        return []
    if new.p99 is None or base.p99 is None or base.p99 <= 0 or base.requests < policy.min_requests:
        return []
    ratio = new.p99 / base.p99
    numbers["p99_ratio"] = ratio
    if ratio > policy.latency_tolerance:
        return [
            (
                Outcome.FAIL,
                f"p99 {new.p99:.3g}s is {ratio:.2f}x the baseline's {base.p99:.3g}s "
                f"(tolerance {policy.latency_tolerance:.2f}x)",
            )
        ]
    return []


def _combine(
    findings: list[_Finding],
    new: SlotMetrics | None,
    numbers: dict[str, Number],
    evidence: Evidence | None,
) -> Verdict:
    if not findings and new is not None:
        reason = f"error rate {new.errors / new.requests:.2%} over {new.requests} requests"
        if "pooled_requests" in numbers:
            reason += " (with the thin windows before it)"
        if new.p99 is not None:
            reason += f", p99 {new.p99:.3g}s"
        unusable = numbers.get("baseline_unusable")
        if numbers.get("baseline_missing"):
            why = f" (its {unusable})" if unusable else ""
            reason += f"; no baseline data this window{why}: thresholds only"
        elif evidence is not None:
            reason += f"; no worse than baseline (p={evidence.p_value:.3g})"
            if unusable:
                reason += f"; the baseline's {unusable} is not compared"
        return Verdict(Outcome.PASS, reason, numbers, evidence)
    top = max(f.outcome.severity for f in findings)
    outcome = next(f.outcome for f in findings if f.outcome.severity == top)
    reason = "; ".join(f.text for f in findings if f.outcome.severity == top)
    return Verdict(outcome, reason, numbers, evidence)


def _rejection_reason(evidence: Evidence) -> str:
    new_rate = evidence.new_errors / max(1, evidence.new_requests)
    base_rate = evidence.base_errors / max(1, evidence.base_requests)
    return (
        f"error rate {new_rate:.2%} vs baseline {base_rate:.2%} over {evidence.new_requests} requests: "
        f"higher (sequential test p={evidence.p_value:.2g})"
    )


def _numbers(window: Window, policy: Analysis) -> dict[str, Number]:
    numbers: dict[str, Number] = {
        "partial": window.partial,
        "min_requests": policy.min_requests,
        "max_error_rate": policy.max_error_rate,
        "max_p99_latency": policy.max_p99_latency,
        "max_cpu": policy.max_cpu,
    }
    for prefix, slot in (("", window.new), ("baseline_", window.baseline)):
        numbers[f"{prefix}requests"] = None if slot is None else slot.requests
        numbers[f"{prefix}errors"] = None if slot is None else slot.errors
        numbers[f"{prefix}error_rate"] = None if slot is None else slot.error_rate
        numbers[f"{prefix}p99"] = None if slot is None else slot.p99
        numbers[f"{prefix}cpu"] = None if slot is None else slot.cpu
        if slot is not None and slot.unusable:
            numbers[f"{prefix}unusable"] = ", ".join(slot.unusable)
    return numbers


def _evidence_numbers(evidence: Evidence, policy: Analysis) -> dict[str, Number]:
    return {
        "test": "mixture SPRT on the new slot's share of 5xx (rate ratios "
        + "/".join(f"{r:g}" for r in evidence.alternatives)
        + ")",
        "log_lr": evidence.log_mixture,
        "max_log_lr": evidence.max_log_lr,
        "log_lr_threshold": threshold(policy.significance),
        "log_lr_hold": hold_level(policy.significance),
        "p_value": evidence.p_value,
        "significance": policy.significance,
        "latency_tolerance": policy.latency_tolerance,
        "cum_requests": evidence.new_requests,
        "cum_errors": evidence.new_errors,
        "cum_baseline_requests": evidence.base_requests,
        "cum_baseline_errors": evidence.base_errors,
    }


# --------------------------------------------------------------------------- one step


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

    def __init__(self, policy: Analysis, *, baseline: bool, windows: int, evidence: Evidence | None = None):
        self.policy = policy
        self.baseline = baseline
        self.windows = max(1, windows)
        self.evidence = evidence
        self.verdicts: list[Verdict] = []
        self.passed = self.failed = self.inconclusive = self.fetch_errors = self.consecutive_errors = 0
        self.held = 0
        #: Inconclusive windows without usable data (none, partial): all of them, and the run so far.
        self.missing = self.missing_run = 0
        self.result: Verdict | None = None
        self._carry: Window | None = None
        self._slow = False

    @property
    def compare(self) -> bool:
        """Whether this step compares the new slot with the baseline."""
        return self.baseline and self.policy.baseline_comparison

    def observe(self, window: Window) -> Verdict:
        """Judge the next window and update the step's state; returns the window's verdict."""
        self._check_open()
        pooled = self._pooled(window)
        found = _assess(window, self.policy, self.baseline, self.evidence, pooled)
        self.evidence = found.evidence
        findings = self._step_rules(found)
        verdict = _combine(findings, found.judged, found.numbers, found.evidence)
        kinds = {f.kind for f in findings if f.outcome is not Outcome.PASS}
        if self.compare and "thin" in kinds:
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

    def _step_rules(self, found: _Assessment) -> list[_Finding]:
        """Hold a lone p99 excursion on a thin tail, or a pass the evidence leans against."""
        findings = found.findings
        if not self.compare or any(f.kind == "data" for f in findings):
            return findings
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
            return [*kept, _Finding(Outcome.INCONCLUSIVE, text, "hold")]
        evidence = found.evidence
        if findings or not can_hold or evidence is None:
            return findings
        if evidence.log_mixture >= hold_level(self.policy.significance):
            lean = math.exp(-evidence.log_mixture)
            text = f"holding this weight: the sequential test leans against the new version (p={lean:.2g})"
            return [_Finding(Outcome.INCONCLUSIVE, text, "hold")]
        return findings

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
        elif self.inconclusive - self.missing > p.max_inconclusive:
            self._end(
                Outcome.FAIL,
                f"not enough data: {self.inconclusive - self.missing} inconclusive windows "
                f"(limit {p.max_inconclusive}): {last.reason}",
                last,
            )
        elif self.passed >= self.windows:
            self._end(Outcome.PASS, f"{self.passed} window(s) passed: {last.reason}", last)

    def _end(self, outcome: Outcome, reason: str, basis: Verdict) -> None:
        numbers = dict(basis.numbers)
        numbers.update(
            windows_planned=self.windows,
            windows_passed=self.passed,
            windows_failed=self.failed,
            windows_inconclusive=self.inconclusive,
            windows_without_data=self.missing,
            windows_held=self.held,
            fetch_errors=self.fetch_errors,
        )
        self.result = replace(basis, outcome=outcome, reason=reason, numbers=numbers, evidence=self.evidence)


def _thin_tail(found: _Assessment) -> bool:
    """Whether either slot's p99 rests on fewer than :data:`STABLE_P99_REQUESTS` requests."""
    return any(m is not None and m.requests < STABLE_P99_REQUESTS for m in (found.judged, found.base))


def merge(first: SlotMetrics | None, second: SlotMetrics | None) -> SlotMetrics | None:
    """Two windows of one slot as one: counts add up, p99 is the worse, CPU the request-weighted mean."""
    if first is None or second is None:
        return second if first is None else first
    p99s = [p for p in (first.p99, second.p99) if p is not None]
    return SlotMetrics(
        requests=first.requests + second.requests,
        errors=first.errors + second.errors,
        p99=max(p99s) if p99s else None,
        cpu=weighted_mean([(first.cpu, first.requests), (second.cpu, second.requests)]),
        unusable=tuple(dict.fromkeys(first.unusable + second.unusable)),
    )


def weighted_mean(values: list[tuple[float | None, int]]) -> float | None:
    known = [(v, n) for v, n in values if v is not None]
    weight = sum(n for _, n in known)
    if not known or weight == 0:
        return None
    return sum(v * n for v, n in known) / weight
