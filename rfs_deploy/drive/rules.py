"""The rules of one analysis window: pure functions of metric aggregates and the service's Analysis policy.

:func:`judge` turns one analysis window into a :class:`Verdict` (PASS, FAIL or INCONCLUSIVE, one-line
reason, the numbers behind it). The judge of a step of windows, which adds the rules of a step on
top of these, is :class:`rfs_deploy.drive.judge.StepJudge`; the A/B decision, built on the same
windows and thresholds, is :mod:`rfs_deploy.drive.ab`.

No IO here: the runner fetches the aggregates and hands them in.

Rules of one window, in order (the worst finding wins, as Argo's ``Worst()``):

1. no data for the new slot, partial data, no requests, or a metric that is NaN, infinite or
   negative (:attr:`SlotMetrics.unusable`) → INCONCLUSIVE (never a silent pass); a baseline with
   such counts is no baseline data, and such a p99 is not compared;
2. the baseline comparison (when asked for) is fed every complete window — its guarantee does
   not depend on window size — and FAILs as soon as it rejects;
3. fewer than ``min_requests`` requests on the new slot → INCONCLUSIVE;
4. absolute thresholds ``max_error_rate``, ``max_p99_latency``, ``max_cpu`` → FAIL;
5. baseline comparison of latency: when both slots' slow-request counts are known (requests
   slower than the latency threshold, :attr:`SlotMetrics.slow`), the sequential test of rule 2
   on those counts (:attr:`Evidence.slow`) FAILs as soon as it rejects; without them, p99 above
   ``latency_tolerance`` x the baseline's (both with ``min_requests``) → FAIL. A window without
   baseline data is judged on thresholds alone (the reason says so) — the comparison adds a
   check, it does not hold the step up;
6. otherwise PASS.

The baseline comparison of error rates is a *sequential* test over cumulative 5xx counts
(:class:`rfs_deploy.drive.stats.Evidence`): a mixture SPRT on the new slot's share of errors.
A per-window test at significance ``alpha`` would raise a false alarm with probability about
``alpha`` *per window*; the sequential test keeps it below ``alpha`` for the whole step — or for
the whole release when the runner hands each step's evidence to the next.

Latency is judged the same way, as a count: a slow request (slower than the threshold) is to the
latency test what a 5xx is to the error test. A p99 over a hundred requests is their second
largest and moves a lot from minute to minute; the count of slow requests uses every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import NamedTuple, TypeAlias

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.stats import Evidence, binom_sf, hold_level, threshold
from rfs_deploy.metrics.base import SlotMetrics

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
class Window:
    """One analysis tick: the new slot and, when traffic is split, the baseline (live) slot.

    ``new`` is None when the metrics provider had no request data at all for the new slot;
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


class Finding(NamedTuple):
    """One thing a window shows, and which rule found it (:class:`~rfs_deploy.drive.judge.StepJudge`'s
    rules act on the kind)."""

    outcome: Outcome
    text: str
    #: "data" (no usable data), "sequential", "thin" (below min_requests), "threshold", "latency"
    #: (p99 against the baseline's), "slow" (the sequential test of slow-request counts) or
    #: "hold" (a step rule holding the weight).
    kind: str


@dataclass
class Assessment:
    findings: list[Finding]
    numbers: dict[str, Number]
    evidence: Evidence | None
    #: The new slot's counts the thresholds saw (pooled with carried thin windows); None: no data.
    judged: SlotMetrics | None
    #: The baseline those checks saw.
    base: SlotMetrics | None = None


def judge(window: Window, policy: Analysis, baseline: bool, evidence: Evidence | None = None) -> Verdict:
    """Judge one window against ``policy``; ``baseline`` also compares with the live slot.

    ``evidence`` is the sequential test so far (fresh when None); the verdict carries the
    updated evidence, which :class:`~rfs_deploy.drive.judge.StepJudge` threads from window to window.
    """
    found = assess(window, policy, baseline, evidence)
    return combine(found.findings, found.judged, found.numbers, found.evidence)


def assess(
    window: Window,
    policy: Analysis,
    baseline: bool,
    evidence: Evidence | None,
    pooled: Window | None = None,
    thin_test: bool = False,
) -> Assessment:
    """The findings of one window. The sequential test always gets ``window``'s own counts;
    the thresholds and the latency comparison judge ``pooled`` (thin windows carried into this
    one) when given. ``thin_test``: a window below ``min_requests`` still FAILs when its errors
    are significantly above ``max_error_rate`` (:func:`thin_breach`)."""
    compare = baseline and policy.baseline_comparison
    if compare and evidence is None:
        evidence = Evidence.start()
    numbers = window_numbers(window, policy)
    window, pooled = _without_unusable_baseline(window), pooled and _without_unusable_baseline(pooled)
    new = window.new
    problem = _data_problem(window)
    if problem is not None or new is None:
        return Assessment([Finding(Outcome.INCONCLUSIVE, problem or "", "data")], numbers, evidence, None)

    findings: list[Finding] = []
    if compare and evidence is not None and window.baseline is not None:
        slow = evidence.slow
        evidence = evidence.update(new.requests, new.errors, window.baseline.requests, window.baseline.errors)
        if _slow_counts(new, window.baseline):
            base = window.baseline
            slow = (slow or Evidence.start()).update(
                new.requests, new.slow or 0, base.requests, base.slow or 0
            )
        evidence = replace(evidence, slow=slow)
        numbers.update(_evidence_numbers(evidence, policy))
        if evidence.rejects(policy.significance):
            findings.append(Finding(Outcome.FAIL, _rejection_reason(evidence), "sequential"))
        if slow is not None and _slow_counts(new, window.baseline) and slow.rejects(policy.significance):
            threshold_s = new.slow_threshold or 0.0
            findings.append(Finding(Outcome.FAIL, _slow_reason(slow, threshold_s), "slow"))
    seen = pooled if pooled is not None and pooled.new is not None else window
    judged = seen.new or new
    if seen is pooled:
        numbers.update(pooled_requests=judged.requests, pooled_errors=judged.errors)
    if judged.requests < policy.min_requests:
        breach = thin_breach(judged, policy) if thin_test else None
        if breach is not None:
            findings.append(Finding(Outcome.FAIL, breach, "threshold"))
        else:
            text = f"only {judged.requests} requests (need {policy.min_requests})"
            findings.append(Finding(Outcome.INCONCLUSIVE, text, "thin"))
    else:
        breaches = absolute_thresholds(judged, seen.baseline, policy)
        findings += [Finding(o, t, "threshold") for o, t in breaches]
        if compare and not _slow_counts(judged, seen.baseline):
            # no slow counts to test (a provider without them, the window a threshold is learnt
            # from): the p99s are compared, as before the counts
            latency = _latency_vs_baseline(judged, seen.baseline, policy, numbers)
            findings += [Finding(o, t, "latency") for o, t in latency]
    return Assessment(findings, numbers, evidence, judged, seen.baseline)


def alarm_min_requests(policy: Analysis) -> int:
    """Requests a metric period needs before the program's 5xx-rate alarm counts it as
    breaching (its metric math ``IF``, :mod:`rfs_deploy.infra.alarms`):
    :attr:`Analysis.alarm_min_requests`."""
    return policy.alarm_min_requests


def thin_breach(new: SlotMetrics, policy: Analysis) -> str | None:
    """Why too few requests to judge a rate still show it above ``max_error_rate``: the chance of
    at least this many errors at exactly that rate is below ``significance`` (one-sided exact
    binomial test). Twenty errors among 40 requests need no hundred requests to be a breach; one
    among five is no 20 % error rate. None: no such breach."""
    if new.errors <= 0 or new.requests <= 0:
        return None
    p = binom_sf(new.errors, new.requests, min(1.0, policy.max_error_rate))
    if p >= policy.significance:
        return None
    return (
        f"error rate {new.errors / new.requests:.2%} > {policy.max_error_rate:.2%} over only "
        f"{new.requests} requests, beyond chance (binomial p={p:.2g})"
    )


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
        return "the metrics provider returned partial data"
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


def combine(
    findings: list[Finding],
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
        if new.slow is not None and new.slow_threshold is not None:
            reason += f", {new.slow / new.requests:.1%} slower than {new.slow_threshold:.3g}s"
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


def _slow_counts(new: SlotMetrics | None, base: SlotMetrics | None) -> bool:
    """Whether both slots counted their slow requests against the same threshold."""
    return (
        new is not None
        and base is not None
        and new.slow is not None
        and base.slow is not None
        and new.slow_threshold == base.slow_threshold
    )


def _slow_reason(slow: Evidence, threshold_s: float) -> str:
    """``12 of 310 requests slower than 0.42s (3.9 %) vs the baseline's 1.1 % (...)``."""
    base_share = slow.base_errors / max(1, slow.base_requests)
    return (
        f"latency: {slow.new_errors} of {slow.new_requests} requests slower than {threshold_s:.3g}s "
        f"({slow.new_errors / max(1, slow.new_requests):.1%}) vs the baseline's {base_share:.1%}: "
        f"higher (sequential test p={slow.p_value:.2g})"
    )


def _rejection_reason(evidence: Evidence) -> str:
    new_rate = evidence.new_errors / max(1, evidence.new_requests)
    base_rate = evidence.base_errors / max(1, evidence.base_requests)
    return (
        f"error rate {new_rate:.2%} vs baseline {base_rate:.2%} over {evidence.new_requests} requests: "
        f"higher (sequential test p={evidence.p_value:.2g})"
    )


def window_numbers(window: Window, policy: Analysis) -> dict[str, Number]:
    """The window's metrics of both slots and the policy's limits, as a verdict records them."""
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
        if slot is not None and slot.slow is not None:
            numbers[f"{prefix}slow"] = slot.slow
            numbers["latency_threshold"] = slot.slow_threshold
        if slot is not None and slot.unusable:
            numbers[f"{prefix}unusable"] = ", ".join(slot.unusable)
    return numbers


def _evidence_numbers(evidence: Evidence, policy: Analysis) -> dict[str, Number]:
    slow = evidence.slow
    found: dict[str, Number] = {}
    if slow is not None:
        found = {
            "slow_p_value": slow.p_value,
            "slow_log_lr": slow.log_mixture,
            "cum_slow": slow.new_errors,
            "cum_slow_requests": slow.new_requests,
            "cum_baseline_slow": slow.base_errors,
            "cum_baseline_slow_requests": slow.base_requests,
        }
    return found | {
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


# --------------------------------------------------------------------------- two windows as one


def merge(first: SlotMetrics | None, second: SlotMetrics | None) -> SlotMetrics | None:
    """Two windows of one slot as one: counts add up, p99 is the worse, CPU the request-weighted mean."""
    if first is None or second is None:
        return second if first is None else first
    p99s = [p for p in (first.p99, second.p99) if p is not None]
    # slow counts add up only against one threshold; otherwise the merged window has none
    same = (
        first.slow is not None and second.slow is not None and first.slow_threshold == second.slow_threshold
    )
    return SlotMetrics(
        requests=first.requests + second.requests,
        errors=first.errors + second.errors,
        p99=max(p99s) if p99s else None,
        cpu=weighted_mean([(first.cpu, first.requests), (second.cpu, second.requests)]),
        unusable=tuple(dict.fromkeys(first.unusable + second.unusable)),
        slow=(first.slow or 0) + (second.slow or 0) if same else None,
        slow_threshold=first.slow_threshold if same else None,
    )


def weighted_mean(values: list[tuple[float | None, int]]) -> float | None:
    known = [(v, n) for v, n in values if v is not None]
    weight = sum(n for _, n in known)
    if not known or weight == 0:
        return None
    return sum(v * n for v, n in known) / weight
