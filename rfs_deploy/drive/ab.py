"""The A/B decision (SPEC D9): which variant wins a test, from the windows it ran.

Pure like :mod:`rfs_deploy.drive.rules`, whose window types and absolute thresholds it shares;
the runner's Decide step fetches the windows and hands them in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.rules import Number, Window, absolute_thresholds, weighted_mean
from rfs_deploy.drive.stats import rate_comparison, sample_ratio, sign_test
from rfs_deploy.metrics.base import SlotMetrics


@dataclass(frozen=True)
class ABDecision:
    """The winner of an A/B test ("A" = the live version, "B" = the new one), why, and the numbers."""

    winner: Literal["A", "B"]
    reason: str
    numbers: Mapping[str, Number] = field(default_factory=dict)
    srm: bool = False


def decide_ab(windows: Sequence[Window], split: int, policy: Analysis) -> ABDecision:
    """Decide an A/B test from its windows (``new`` = variant B, ``baseline`` = variant A).

    Complete windows with data for both variants are pooled (a window where either variant has
    a NaN or infinite metric has no data; :attr:`SlotMetrics.unusable`). A is kept when: either variant has
    fewer than ``min_requests`` requests; the split of requests does not match ``split`` (a
    sample ratio mismatch makes every comparison suspect); B breaks an absolute threshold; B's
    error rate is higher than A's by the exact conditional binomial test at ``significance``; or
    B's p99 is above ``latency_tolerance`` x A's in significantly more than half of the windows
    (one-sided sign test — CloudWatch gives percentiles per window, not distributions).
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
    a = [w.baseline for w in usable if w.baseline is not None]
    b = [w.new for w in usable if w.new is not None]
    a_total, b_total = _pool(a), _pool(b)
    numbers: dict[str, Number] = {
        "windows": len(usable),
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
        return ABDecision(
            "A",
            f"not enough data: A {a_total.requests}, B {b_total.requests} requests "
            f"(need {need}){why}; keep A",
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


def _pool(slots: list[SlotMetrics]) -> SlotMetrics:
    """Sum counts; p99 and CPU become request-weighted means of the windows' values."""
    requests = sum(m.requests for m in slots)
    return SlotMetrics(
        requests=requests,
        errors=sum(m.errors for m in slots),
        p99=weighted_mean([(m.p99, m.requests) for m in slots]),
        cpu=weighted_mean([(m.cpu, m.requests) for m in slots]),
    )
