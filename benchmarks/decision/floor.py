"""The theoretical floor of exposure: Wald's SPRT, and what the metric period adds to it.

Wald's sequential probability ratio test of "the new version's 5xx rate is ``p0``" against "it is
``p1``", on the new slot's requests one by one with both rates known, stops with error rates
``alpha`` and ``beta`` after, on average under ``p1`` (Wald's approximation, overshoot ignored)::

    E1[N] = ((1 - beta) ln((1 - beta) / alpha) + beta ln(beta / (1 - alpha))) / KL(p1 || p0)

requests, where ``KL`` is the Kullback-Leibler divergence between the two Bernoulli
distributions. No test that meets the same error rates needs fewer on average (Wald and
Wolfowitz's optimality of the SPRT), so ``E1[N]`` requests of exposure to the faulty version are
unavoidable. ALB metrics come per minute, so nothing can decide before the first minute's
datapoint either: the floor is the larger of ``E1[N]`` and the canary's requests in one metric
period at the first step's weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def bernoulli_kl(p1: float, p0: float) -> float:
    """KL(Bernoulli(p1) || Bernoulli(p0)) in nats."""
    return p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))


def wald_expected_n(p0: float, p1: float, alpha: float = 0.01, beta: float = 0.01) -> float:
    """Expected number of observations of Wald's SPRT under ``p1`` (see the module docstring)."""
    if p1 <= p0:
        raise ValueError("the regressed rate p1 must be above the baseline's p0")
    evidence = (1 - beta) * math.log((1 - beta) / alpha) + beta * math.log(beta / (1 - alpha))
    return evidence / bernoulli_kl(p1, p0)


@dataclass(frozen=True)
class Floor:
    """The floor of one error-rate regression under one plan."""

    p0: float
    p1: float
    rpm: int
    first_weight: int
    #: Wald's expected sample size: requests to the new version.
    sprt_requests: float
    #: The canary's requests in the first metric period.
    period_requests: float
    #: Whole minutes until the plan has sent the new version ``max(sprt, period)`` requests.
    minutes: int

    @property
    def exposure(self) -> float:
        return max(self.sprt_requests, self.period_requests)


def floor(
    p0: float, p1: float, rpm: int, weights: Sequence[int], alpha: float = 0.01, beta: float = 0.01
) -> Floor:
    """The exposure floor of detecting ``p1`` over ``p0`` at ``rpm`` along the plan's ``weights``."""
    sprt = wald_expected_n(p0, p1, alpha, beta)
    period = rpm * weights[0] / 100
    need = max(sprt, period)
    served, minutes = 0.0, 0
    for weight in _minutes(weights):
        minutes += 1
        served += rpm * weight / 100
        if served >= need - 1e-9:
            break
    return Floor(p0, p1, rpm, weights[0], sprt, period, minutes)


def _minutes(weights: Sequence[int]) -> list[int]:
    """The weight of each minute: one minute per step, then 100 % for as long as it takes."""
    return [*weights, *([100] * 10_000)]


def _binom_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0 or p >= 1.0:
        return float(k == (n if p >= 1.0 else 0))
    log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return math.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))


def _poisson_pmf(k: int, mean: float) -> float:
    return math.exp(k * math.log(mean) - mean - math.lgamma(k + 1)) if mean > 0 else float(k == 0)


def two_sample_power(p0: float, p1: float, new_requests: float, base_requests: float, alpha: float) -> float:
    """The power of the most powerful unbiased test of "equal 5xx rates" that looks once, at the
    end, at ``new_requests`` on the new version (rate ``p1``) and ``base_requests`` on the
    baseline (rate ``p0``), neither rate known: errors as Poisson counts, the new slot's errors
    given the total judged against a binomial at its share of the requests (the conditional,
    randomised test, UMPU for this family).

    A sequential test at the same false-rollback level sees the same counts and no more, so it
    cannot be more powerful: this is the ceiling of detection for an unknown baseline rate."""
    if p1 <= p0:
        raise ValueError("the regressed rate p1 must be above the baseline's p0")
    share0 = new_requests / (new_requests + base_requests)
    mean_new, mean_base = new_requests * p1, base_requests * p0
    share1 = mean_new / (mean_new + mean_base)
    mean = mean_new + mean_base
    top = int(mean + 12 * math.sqrt(mean) + 20)
    power = 0.0
    for total in range(top + 1):
        weight = _poisson_pmf(total, mean)
        if weight < 1e-15:
            continue
        # the critical count c and randomisation g with P0(X > c) + g P0(X = c) = alpha
        above, critical = 0.0, total
        while critical >= 0 and above + _binom_pmf(critical, total, share0) <= alpha:
            above += _binom_pmf(critical, total, share0)
            critical -= 1
        at = _binom_pmf(critical, total, share0) if critical >= 0 else 0.0
        g = (alpha - above) / at if at > 0 else 0.0
        hit = sum(_binom_pmf(k, total, share1) for k in range(critical + 1, total + 1))
        if critical >= 0:
            hit += g * _binom_pmf(critical, total, share1)
        power += weight * hit
    return power


@dataclass(frozen=True)
class Limit:
    """What no judge valid for an unknown baseline rate can beat, for one of issue 15's goals."""

    goal: str
    #: The best any such judge can reach (a share caught, or exposure over the floor).
    best: float
    how: str


def compared_minutes(weights: Sequence[int]) -> list[int]:
    """The weights of the minutes a plan compares with its baseline: one per step below 100 %."""
    return [w for w in weights if w < 100]


def detection_ceiling(p0: float, p1: float, rpm: int, weights: Sequence[int], alpha: float) -> float:
    """The most any judge detects ``p1`` over ``p0`` within the plan's compared minutes, at false
    rollbacks ``alpha`` whatever the two slots' common rate: :func:`two_sample_power` on all their
    requests."""
    shares = compared_minutes(weights)
    new = sum(rpm * w / 100 for w in shares)
    return two_sample_power(p0, p1, new, rpm * len(shares) - new, alpha)


def exposure_bound(p0: float, p1: float, rpm: int, weights: Sequence[int], alpha: float) -> float:
    """A lower bound of the mean exposure of any such judge: minute ``m``'s requests count unless
    the judge has decided by then, and it decides by minute ``m - 1`` at most as often as the most
    powerful test on those minutes' counts (:func:`two_sample_power`)."""
    exposure, undecided, new, base = 0.0, 1.0, 0.0, 0.0
    for w in compared_minutes(weights):
        exposure += undecided * rpm * w / 100
        new, base = new + rpm * w / 100, base + rpm * (100 - w) / 100
        undecided = 1.0 - two_sample_power(p0, p1, new, base, alpha)
    return exposure


def limits(weights: Sequence[int], rpm: int = 1000, p0: float = 0.005, alpha: float = 0.005) -> list[Limit]:
    """Issue 15's two absolute goals against what the counts allow, at ``alpha`` = the goal's
    0.5 % of healthy releases rolled back."""
    minutes = len(compared_minutes(weights))
    enough = (
        m for m in range(minutes, 200) if two_sample_power(p0, 0.01, *_split(rpm, weights, m), alpha) >= 0.85
    )
    longer = next(enough, None)
    exposure = exposure_bound(p0, 0.05, rpm, weights, alpha) / floor(p0, 0.05, rpm, weights).exposure
    return [
        Limit(
            "5xx 1 %: detection ≥ 85 %",
            detection_ceiling(p0, 0.01, rpm, weights, alpha),
            f"all {minutes} compared minutes judged at once; 85 % needs {longer} such minutes",
        ),
        Limit(
            "5xx 5 %: mean exposure / floor ≤ 1.5x",
            exposure,
            "the floor knows both rates; a judge that does not decides in the first minute at most as "
            "often as the best test on its counts",
        ),
    ]


def _split(rpm: int, weights: Sequence[int], minutes: int) -> tuple[float, float]:
    """Requests on the new slot and the baseline over ``minutes`` compared minutes at the plan's
    mean compared weight."""
    shares = compared_minutes(weights)
    share = sum(shares) / len(shares) / 100
    return rpm * minutes * share, rpm * minutes * (1 - share)
