"""The A/B decision (SPEC D9): which variant wins a test, from the windows it ran.

Pure like :mod:`rfs_deploy.drive.rules`, whose window types and absolute thresholds it shares;
the runner's Decide step fetches the windows and hands them in.

On low traffic the windows are pooled as the step judge pools them: consecutive thin windows are
merged into one until both variants reach ``min_requests``, and only such pooled windows are
judged. A test whose pool never gets there, or whose B has too few requests to show it is under
``maxErrorRate``, declares no winner: the decision is *undecided* and the step ends as
``analysis.onInconclusive`` says (a person by default). :func:`hard_limit` is the early stop:
B past the judge's hard limit ends the test for A before its duration is up.

:func:`shared_incident` is the hold: a window in which A fails as well (an upstream dependency
failing both variants) says nothing about which variant is better. It is left out of the
decision, a firing alarm of B's in it rolls nothing back, and the test runs that much longer, up
to :data:`~rfs_deploy.drive.judge.MAX_INCIDENT_WINDOWS` windows; a B significantly worse than A
in the same minutes is still B's own failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.judge import HARD_LIMIT_FACTOR
from rfs_deploy.drive.rules import Number, Window, absolute_thresholds, merge, weighted_mean
from rfs_deploy.drive.stats import binom_cdf, binom_sf, rate_comparison, sample_ratio, sign_test
from rfs_deploy.metrics.base import SlotMetrics


@dataclass(frozen=True)
class ABDecision:
    """The winner of an A/B test ("A" = the live version, "B" = the new one), why, and the numbers.

    ``winner`` None: undecided (too little traffic to tell); ``analysis.onInconclusive`` says
    what happens then."""

    winner: Literal["A", "B"] | None
    reason: str
    numbers: Mapping[str, Number] = field(default_factory=dict)
    srm: bool = False


def decide_ab(windows: Sequence[Window], split: int, policy: Analysis) -> ABDecision:
    """Decide an A/B test from its windows (``new`` = variant B, ``baseline`` = variant A).

    Complete windows with data for both variants are pooled (a window where either variant has
    a NaN or infinite metric has no data; :attr:`SlotMetrics.unusable`), and consecutive thin
    windows are merged until both variants reach ``min_requests`` (:func:`_chunks`). A is kept
    when: no window has data at all; the split of requests does not match ``split`` (a sample
    ratio mismatch makes every comparison suspect); B breaks an absolute threshold; B's error
    rate is higher than A's by the exact conditional binomial test at ``significance``; or B's
    p99 is above ``latency_tolerance`` x A's in significantly more than half of the merged
    windows (one-sided sign test — CloudWatch gives percentiles per window, not distributions).

    No winner is declared (``winner`` None, undecided) when either variant has fewer than
    ``min_requests`` requests in all, or when B's requests cannot show its error rate under
    ``maxErrorRate`` (the chance of so few errors at exactly that rate is not below
    ``significance``): "no worse" on such data would be a guess.
    Otherwise B, the release being shipped, wins for being no worse (the reason says when it is
    also significantly better on errors or latency).
    Each comparison runs at ``significance``, so a sound B loses with probability at most
    twice that — the safe direction.
    """
    complete = [w for w in windows if w.new is not None and w.baseline is not None and not w.partial]
    # a window with a NaN or infinite metric on either variant is no data for the comparison
    usable = [
        w for w in complete if not (w.new and w.new.unusable) and not (w.baseline and w.baseline.unusable)
    ]
    a_total = _pool([w.baseline for w in usable if w.baseline is not None])
    b_total = _pool([w.new for w in usable if w.new is not None])
    chunks = _chunks(usable, policy.min_requests)
    a = [w.baseline for w in chunks if w.baseline is not None]
    b = [w.new for w in chunks if w.new is not None]
    numbers: dict[str, Number] = {
        "windows": len(usable),
        "windows_judged": len(chunks),
        "windows_unusable": len(complete) - len(usable),
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
        left_out = len(complete) - len(usable)
        why = f"; {left_out} window(s) left out for NaN or infinite metrics" if left_out else ""
        if not usable:
            # no window with data at all (the judge fails such a step too): nothing to wait for
            return ABDecision(
                "A",
                f"not enough data: A {a_total.requests}, B {b_total.requests} requests "
                f"(need {need}){why}; keep A",
                numbers,
            )
        return ABDecision(
            None,
            f"undecided: not enough data: A {a_total.requests}, B {b_total.requests} requests "
            f"(need {need}){why}",
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
    # "no worse" is a claim the data must be able to make: with too few of B's requests even
    # a B failing at maxErrorRate would look like this, so no winner is declared on them
    under = binom_cdf(b_total.errors, b_total.requests, min(1.0, policy.max_error_rate))
    numbers["b_p_under_limit"] = under
    if under >= policy.significance:
        return ABDecision(
            None,
            f"undecided: B's {b_total.errors} errors in {b_total.requests} requests do not show its "
            f"error rate under {policy.max_error_rate:.2%} (binomial p={under:.2g}); no winner",
            numbers,
        )
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
    losing = [f"B {text}" for _, text in absolute_thresholds(b_total, a_total, policy)]
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


def hard_limit(windows: Sequence[Window], policy: Analysis) -> str | None:
    """Why B, over the windows so far, is past the judge's hard limit (None: it is not): its
    pooled error rate significantly above :data:`~rfs_deploy.drive.judge.HARD_LIMIT_FACTOR` x
    ``maxErrorRate`` (exact binomial test at ``significance``, so a few thin windows can show
    it), or its pooled p99 above that factor x ``maxP99Latency`` over ``min_requests``. A/B ends
    early for A then: there is nothing left to decide."""
    usable = [w.new for w in windows if w.new is not None and not w.partial and not w.new.unusable]
    if not usable:
        return None
    b = _pool(usable)
    limit = min(1.0, HARD_LIMIT_FACTOR * policy.max_error_rate)
    if b.requests > 0 and b.errors / b.requests > limit:
        p = binom_sf(b.errors, b.requests, limit)
        if p < policy.significance:
            return (
                f"B's error rate {b.errors / b.requests:.2%} over {b.requests} requests is past the hard "
                f"limit {limit:.2%} ({HARD_LIMIT_FACTOR:g} x maxErrorRate, binomial p={p:.2g})"
            )
    latency = HARD_LIMIT_FACTOR * policy.max_p99_latency
    if b.p99 is not None and b.requests >= policy.min_requests and b.p99 > latency:
        factor = f"{HARD_LIMIT_FACTOR:g} x maxP99Latency"
        return f"B's p99 {b.p99:.3g}s is past the hard limit {latency:.3g}s ({factor})"
    return None


def shared_incident(window: Window, policy: Analysis) -> str | None:
    """Why this window is a shared incident the A/B test holds through (None: it is not): A, the
    live version, fails too (its 5xx rate above ``maxErrorRate``) and B is not significantly worse
    than A in the same minutes (exact binomial test of B's errors at A's rate, at ``significance``)."""
    a, b = window.baseline, window.new
    if a is None or b is None or a.requests <= 0 or b.requests <= 0 or a.unusable or b.unusable:
        return None
    a_rate, b_rate = a.errors / a.requests, b.errors / b.requests
    if a_rate <= policy.max_error_rate or binom_sf(b.errors, b.requests, a_rate) < policy.significance:
        return None
    return (
        f"shared incident: A fails too ({a_rate:.2%} 5xx, B {b_rate:.2%}), holding; "
        "these minutes are left out of the decision"
    )


def _chunks(windows: list[Window], need: int) -> list[Window]:
    """Consecutive windows merged until both variants have ``need`` requests; a thin tail left
    over is merged into the last chunk (or is the only one when none reached ``need``: the
    caller's request counts then say it is not enough)."""
    chunks: list[Window] = []
    carry: Window | None = None
    for window in windows:
        carry = (
            window
            if carry is None
            else Window(merge(carry.new, window.new), merge(carry.baseline, window.baseline))
        )
        new, base = carry.new, carry.baseline
        if new is not None and base is not None and min(new.requests, base.requests) >= need:
            chunks.append(carry)
            carry = None
    if carry is not None:
        if chunks:
            last = chunks.pop()
            carry = Window(merge(last.new, carry.new), merge(last.baseline, carry.baseline))
        chunks.append(carry)
    return chunks


def _pool(slots: list[SlotMetrics]) -> SlotMetrics:
    """Sum counts; p99 and CPU become request-weighted means of the windows' values."""
    requests = sum(m.requests for m in slots)
    return SlotMetrics(
        requests=requests,
        errors=sum(m.errors for m in slots),
        p99=weighted_mean([(m.p99, m.requests) for m in slots]),
        cpu=weighted_mean([(m.cpu, m.requests) for m in slots]),
    )
