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
