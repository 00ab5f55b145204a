"""Analysis verdicts: pure functions of metric aggregates and the service's Analysis policy.

* :func:`judge` turns one analysis window into a :class:`Verdict` (PASS, FAIL or INCONCLUSIVE,
  one-line reason, the numbers behind it).
* :class:`StepJudge` accumulates the windows of one step and says when the step is over.
* :func:`decide_ab` picks the winner of an A/B test (D9).

No IO here: the runner fetches the aggregates and hands them in.

Rules of one window, in order (the worst finding wins, as Argo's ``Worst()``):

1. no data for the new slot, partial data, or no requests → INCONCLUSIVE (never a silent pass);
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
the whole release when the runner hands each step's evidence to the next — while catching a
1 % or 2 % error rate over a 0.5 % baseline that a fixed 5 % threshold lets through, after about
as much traffic as Wald's SPRT tuned to the true regression would need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal, TypeAlias

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.stats import Evidence, rate_comparison, sample_ratio, sign_test, threshold

Number: TypeAlias = float | int | str | bool | None


class Outcome(StrEnum):
    """A verdict's outcome; ``severity`` orders them for worst-first combination."""

    PASS = "PASS"
    INCONCLUSIVE = "INCONCLUSIVE"
    FAIL = "FAIL"

    @property
    def severity(self) -> int:
        return {"PASS": 0, "INCONCLUSIVE": 1, "FAIL": 2}[self.value]


@dataclass(frozen=True)
class SlotMetrics:
    """One slot's aggregates over one window (errors are ELB and target 5xx responses)."""

    requests: int
    errors: int
    #: p99 target response time in seconds; None when CloudWatch had none.
    p99: float | None = None
    #: Average CPU percent over the slot's fleet; None when unknown.
    cpu: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None


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


def judge(window: Window, policy: Analysis, baseline: bool, evidence: Evidence | None = None) -> Verdict:
    """Judge one window against ``policy``; ``baseline`` also compares with the live slot.

    ``evidence`` is the sequential test so far (fresh when None); the verdict carries the
    updated evidence, which :class:`StepJudge` threads from window to window.
    """
    compare = baseline and policy.baseline_comparison
    if compare and evidence is None:
        evidence = Evidence.start()
    new = window.new
    numbers = _numbers(window, policy)
    if new is None:
        return Verdict(Outcome.INCONCLUSIVE, "no data for the new slot", numbers, evidence)
    if window.partial:
        return Verdict(Outcome.INCONCLUSIVE, "CloudWatch returned partial data", numbers, evidence)
    if new.requests <= 0:
        return Verdict(Outcome.INCONCLUSIVE, "no requests reached the new slot", numbers, evidence)
    if new.errors > new.requests:
        return Verdict(Outcome.INCONCLUSIVE, "inconsistent: more errors than requests", numbers, evidence)

    findings: list[tuple[Outcome, str]] = []
    if compare and evidence is not None and window.baseline is not None:
        evidence = evidence.update(new.requests, new.errors, window.baseline.requests, window.baseline.errors)
        numbers.update(_evidence_numbers(evidence, policy))
        if evidence.rejects(policy.significance):
            findings.append((Outcome.FAIL, _rejection_reason(evidence)))
    if new.requests < policy.min_requests:
        findings.append((Outcome.INCONCLUSIVE, f"only {new.requests} requests (need {policy.min_requests})"))
    else:
        findings.extend(_thresholds(new, window.baseline, policy))
        if compare:
            findings.extend(_latency_vs_baseline(new, window.baseline, policy, numbers))
    return _combine(findings, new, numbers, evidence)


def _thresholds(new: SlotMetrics, base: SlotMetrics | None, policy: Analysis) -> list[tuple[Outcome, str]]:
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
    findings: list[tuple[Outcome, str]],
    new: SlotMetrics,
    numbers: dict[str, Number],
    evidence: Evidence | None,
) -> Verdict:
    if not findings:
        reason = f"error rate {new.errors / new.requests:.2%} over {new.requests} requests"
        if new.p99 is not None:
            reason += f", p99 {new.p99:.3g}s"
        if numbers.get("baseline_missing"):
            reason += "; no baseline data this window: thresholds only"
        elif evidence is not None:
            reason += f"; no worse than baseline (p={evidence.p_value:.3g})"
        return Verdict(Outcome.PASS, reason, numbers, evidence)
    top = max(outcome.severity for outcome, _ in findings)
    outcome = next(o for o, _ in findings if o.severity == top)
    reason = "; ".join(text for o, text in findings if o.severity == top)
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
    return numbers


def _evidence_numbers(evidence: Evidence, policy: Analysis) -> dict[str, Number]:
    return {
        "test": "mixture SPRT on the new slot's share of 5xx (rate ratios "
        + "/".join(f"{r:g}" for r in evidence.alternatives)
        + ")",
        "log_lr": evidence.log_mixture,
        "max_log_lr": evidence.max_log_lr,
        "log_lr_threshold": threshold(policy.significance),
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

    * FAILs at ``failure_limit`` failed windows, at more than ``max_inconclusive`` inconclusive
      windows ("not enough data"), or at ``consecutive_error_limit`` fetch errors in a row;
    * PASSes once ``windows`` windows passed.

    Inconclusive windows, failed windows below the limit and fetch errors do not count towards
    ``windows``, so they extend the step by one interval each, up to those limits.

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
        self.result: Verdict | None = None

    def observe(self, window: Window) -> Verdict:
        """Judge the next window and update the step's state; returns the window's verdict."""
        self._check_open()
        verdict = judge(window, self.policy, self.baseline, self.evidence)
        self.evidence = verdict.evidence
        self.verdicts.append(verdict)
        self.consecutive_errors = 0
        if verdict.outcome is Outcome.PASS:
            self.passed += 1
        elif verdict.outcome is Outcome.FAIL:
            self.failed += 1
        else:
            self.inconclusive += 1
        self._settle()
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
        elif self.inconclusive > p.max_inconclusive:
            self._end(
                Outcome.FAIL,
                f"not enough data: {self.inconclusive} inconclusive windows (limit {p.max_inconclusive}): "
                f"{last.reason}",
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
            fetch_errors=self.fetch_errors,
        )
        self.result = replace(basis, outcome=outcome, reason=reason, numbers=numbers, evidence=self.evidence)


# --------------------------------------------------------------------------- A/B decision


@dataclass(frozen=True)
class ABDecision:
    """The winner of an A/B test ("A" = the live version, "B" = the new one), why, and the numbers."""

    winner: Literal["A", "B"]
    reason: str
    numbers: Mapping[str, Number] = field(default_factory=dict)
    srm: bool = False


def decide_ab(
    windows: Sequence[Window], split: int, policy: Analysis, *, require_improvement: bool = False
) -> ABDecision:
    """Decide an A/B test from its windows (``new`` = variant B, ``baseline`` = variant A).

    Complete windows with data for both variants are pooled. A is kept when: either variant has
    fewer than ``min_requests`` requests; the split of requests does not match ``split`` (a
    sample ratio mismatch makes every comparison suspect); B breaks an absolute threshold; B's
    error rate is higher than A's by the exact conditional binomial test at ``significance``; or
    B's p99 is above ``latency_tolerance`` x A's in significantly more than half of the windows
    (one-sided sign test — CloudWatch gives percentiles per window, not distributions).
    Otherwise B, the release being shipped, wins for being no worse; with
    ``require_improvement`` it must also be significantly better on errors or latency.
    Each comparison runs at ``significance``, so a sound B loses with probability at most
    twice that — the safe direction.
    """
    usable = [w for w in windows if w.new is not None and w.baseline is not None and not w.partial]
    a = [w.baseline for w in usable if w.baseline is not None]
    b = [w.new for w in usable if w.new is not None]
    a_total, b_total = _pool(a), _pool(b)
    numbers: dict[str, Number] = {
        "windows": len(usable),
        "split": split,
        "a_requests": a_total.requests,
        "a_errors": a_total.errors,
        "a_error_rate": a_total.error_rate,
        "b_requests": b_total.requests,
        "b_errors": b_total.errors,
        "b_error_rate": b_total.error_rate,
        "a_p99": a_total.p99,
        "b_p99": b_total.p99,
        "significance": policy.significance,
    }
    need = policy.min_requests
    if a_total.requests < need or b_total.requests < need:
        return ABDecision(
            "A",
            f"not enough data: A {a_total.requests}, B {b_total.requests} requests (need {need}); keep A",
            numbers,
        )
    ratio = sample_ratio([m.requests for m in a], [m.requests for m in b], split / 100)
    numbers.update(srm_chi2=ratio.chi2, srm_dispersion=ratio.dispersion, srm_p_value=ratio.p_value)
    numbers["b_share"] = ratio.observed_share
    if ratio.mismatch:
        return ABDecision(
            "A",
            f"sample ratio mismatch: B got {ratio.observed_share:.1%} of requests, configured {split}% "
            f"(chi-square p={ratio.p_value:.2g}); keep A",
            numbers,
            srm=True,
        )
    losing = _ab_losses(a, b, a_total, b_total, policy, numbers)
    if losing:
        return ABDecision("A", "; ".join(losing) + "; keep A", numbers)
    better = [
        name
        for name, key in (("error rate", "errors_p_better"), ("latency", "latency_p_faster"))
        if float(numbers.get(key) or 1.0) < policy.significance
    ]
    if require_improvement and not better:
        return ABDecision("A", "B is not significantly better than A; keep A", numbers)
    how = f"better on {' and '.join(better)}" if better else "no worse"
    return ABDecision(
        "B",
        f"B is {how}: error rate {b_total.error_rate:.2%} vs A {a_total.error_rate:.2%} "
        f"over {b_total.requests} requests",
        numbers,
    )


def _ab_losses(
    a: list[SlotMetrics],
    b: list[SlotMetrics],
    a_total: SlotMetrics,
    b_total: SlotMetrics,
    policy: Analysis,
    numbers: dict[str, Number],
) -> list[str]:
    """Reasons B loses (empty when it does not); fills in the comparison numbers."""
    losing = [f"B {text}" for _, text in _thresholds(b_total, a_total, policy)]
    errors = rate_comparison(a_total.requests, a_total.errors, b_total.requests, b_total.errors)
    numbers.update(errors_p_worse=errors.p_worse, errors_p_better=errors.p_better)
    if errors.p_worse < policy.significance:
        losing.append(
            f"B's error rate {b_total.error_rate:.2%} is higher than A's {a_total.error_rate:.2%} "
            f"(conditional binomial test p={errors.p_worse:.2g})"
        )
    pairs = [
        (x.p99, y.p99)
        for x, y in zip(a, b, strict=True)
        if x.p99 and y.p99 is not None and min(x.requests, y.requests) >= policy.min_requests
    ]
    slower = sum(1 for pa, pb in pairs if pb > policy.latency_tolerance * pa)
    faster = sum(1 for pa, pb in pairs if pb < pa)
    p_slower, p_faster = sign_test(slower, len(pairs)), sign_test(faster, len(pairs))
    numbers.update(latency_windows=len(pairs), latency_p_slower=p_slower, latency_p_faster=p_faster)
    if pairs and p_slower < policy.significance:
        losing.append(
            f"B's p99 exceeds {policy.latency_tolerance:.2f}x A's in {slower} of {len(pairs)} windows "
            f"(sign test p={p_slower:.2g})"
        )
    return losing


def _pool(slots: list[SlotMetrics]) -> SlotMetrics:
    """Sum counts; p99 and CPU become request-weighted means of the windows' values."""
    requests = sum(m.requests for m in slots)
    return SlotMetrics(
        requests=requests,
        errors=sum(m.errors for m in slots),
        p99=_weighted([(m.p99, m.requests) for m in slots]),
        cpu=_weighted([(m.cpu, m.requests) for m in slots]),
    )


def _weighted(values: list[tuple[float | None, int]]) -> float | None:
    known = [(v, n) for v, n in values if v is not None]
    weight = sum(n for _, n in known)
    if not known or weight == 0:
        return None
    return sum(v * n for v, n in known) / weight
