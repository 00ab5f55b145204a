"""One simulated minute of traffic through one load balancer.

Requests are split the way the listener really routes them (its default action's weights and
its rules, as read back from moto), spread over the target group's healthy targets, and each
target answers according to its :class:`~rfs_deploy.sim.behaviour.Conduct`: binomial 5xx
errors and log-normal latencies, from which the minute's p99 is computed. With the scenario's
``errorBursts`` each minute's 5xx rate is first drawn from a Beta around the target's rate (see
:func:`minute_rates`), so counts vary from minute to minute more than a binomial's. A target
group with no healthy target fails open to all its targets, as an ALB does; one with no target at
all gets the load balancer's own 503s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rfs_deploy.sim.behaviour import Conduct
from rfs_deploy.sim.scenario import ErrorBursts, max_burst_rate

#: Latency samples drawn per target group per minute (enough for a stable p99).
MAX_SAMPLES = 2000


#: Width of a latency histogram bucket in log space: 2 % apart (CloudWatch keeps its own
#: distributions at a similar relative precision and interpolates within a bucket too).
HISTOGRAM_STEP = math.log(1.02)


@dataclass(frozen=True)
class Summary:
    """CloudWatch-style statistic set of one minute, plus the p99 CloudWatch would compute and,
    for a distribution (response times), a histogram of its samples for the range statistics
    (``TC(t:)``, ``PR(:t)``)."""

    count: float
    sum: float
    minimum: float
    maximum: float
    p99: float
    #: ``(bucket, samples)`` pairs, bucket ``i`` holding values in ``[e^(i s), e^((i+1) s))`` with
    #: ``s`` :data:`HISTOGRAM_STEP`; each sample stands for ``count / samples`` observations.
    #: Empty for a count, and for datapoints saved before histograms were kept.
    histogram: tuple[tuple[int, int], ...] = ()

    @property
    def average(self) -> float:
        return self.sum / self.count if self.count else 0.0

    @classmethod
    def of(cls, values: np.ndarray, weight: float = 1.0) -> Summary:
        """Summary of ``values``, each standing for ``weight`` observations."""
        positive = values[values > 0]
        buckets, samples = np.unique(np.floor(np.log(positive) / HISTOGRAM_STEP), return_counts=True)
        return cls(
            count=float(len(values) * weight),
            sum=float(values.sum() * weight),
            minimum=float(values.min()),
            maximum=float(values.max()),
            p99=float(np.percentile(values, 99)),
            histogram=tuple((int(b), int(n)) for b, n in zip(buckets, samples, strict=True)),
        )

    def within(self, low: float | None, high: float | None) -> float:
        """Observations above ``low`` and at most ``high`` (None: unbounded), as CloudWatch's range
        statistics count them; interpolated within a bucket (log-uniform), NaN without a histogram."""
        if not self.histogram:
            return math.nan
        total = sum(n for _, n in self.histogram)
        upto = total if high is None else _samples_below(self.histogram, high)
        above = 0.0 if low is None else _samples_below(self.histogram, low)
        return self.count * max(0.0, upto - above) / total


def _samples_below(histogram: Sequence[tuple[int, int]], bound: float) -> float:
    """Samples at or below ``bound``."""
    if bound <= 0:
        return 0.0
    cut = math.log(bound) / HISTOGRAM_STEP
    below = 0.0
    for bucket, samples in histogram:
        below += samples * min(1.0, max(0.0, cut - bucket))
    return below


@dataclass
class GroupMinute:
    """What one target group saw in one minute."""

    requests: int = 0
    errors: int = 0
    latency: Summary | None = None
    healthy: int = 0
    unhealthy: int = 0


@dataclass
class Route:
    """A share of the listener's requests and the weighted target groups they go to."""

    share: float
    forward: Mapping[str, int]


@dataclass
class MinuteResult:
    groups: dict[str, GroupMinute] = field(default_factory=dict)
    #: Requests the load balancer answered itself (no target to send them to).
    elb_errors: int = 0
    requests: int = 0


def split_requests(rng: np.random.Generator, total: int, routes: Sequence[Route]) -> dict[str, int]:
    """Requests per target group: routes by share, then each route's forward weights."""
    per_group: dict[str, int] = {}
    shares = np.array([max(0.0, r.share) for r in routes], dtype=float)
    if total <= 0 or shares.sum() <= 0:
        return per_group
    by_route = rng.multinomial(total, shares / shares.sum())
    for route, count in zip(routes, by_route, strict=True):
        groups = [(arn, w) for arn, w in route.forward.items() if w > 0]
        if not groups or count == 0:
            per_group["__elb__"] = per_group.get("__elb__", 0) + int(count)
            continue
        weights = np.array([w for _, w in groups], dtype=float)
        for (arn, _), n in zip(groups, rng.multinomial(count, weights / weights.sum()), strict=True):
            per_group[arn] = per_group.get(arn, 0) + int(n)
    return per_group


def beta_rate(rng: np.random.Generator, mean: float, cv: float) -> float:
    """A rate drawn from a Beta with mean ``mean`` and coefficient of variation ``cv``.

    ``mean`` itself where no such Beta exists (0, 1, or at least :func:`max_burst_rate`: a
    target failing everything, an outage's 50 % at CV 1), so those rates stay steady.
    """
    if cv <= 0 or not 0 < mean < max_burst_rate(cv):
        return mean
    kappa = (1 - mean) / (cv * cv * mean) - 1
    return float(rng.beta(mean * kappa, (1 - mean) * kappa))


@dataclass(frozen=True)
class Bursts:
    """One minute's overdispersion: the scenario's CVs and this minute's shared factor."""

    slot_cv: float = 0.0
    #: Every rate is multiplied by this before the per-slot draw (1: no shared burst).
    shared: float = 1.0

    @classmethod
    def draw(cls, rng: np.random.Generator, bursts: ErrorBursts, reference: float) -> Bursts:
        """The minute's factor: ``reference`` (the baseline's rate) drawn from its Beta, over itself."""
        shared = beta_rate(rng, reference, bursts.shared_cv) / reference if bursts.shared_cv > 0 else 1.0
        return cls(slot_cv=bursts.slot_cv, shared=shared)


def minute_rates(rng: np.random.Generator, rates: Sequence[float], bursts: Bursts) -> dict[float, float]:
    """This minute's 5xx rate of one target group for each distinct rate of its targets.

    One draw per distinct rate (the instances of one version share a minute: the burst is the
    service's, not an instance's), in ascending order so the draws follow the scenario's seed.
    """
    drawn: dict[float, float] = {}
    for rate in sorted(set(rates)):
        scaled = rate if rate >= 1.0 else min(1.0, rate * bursts.shared)
        drawn[rate] = beta_rate(rng, scaled, bursts.slot_cv)
    return drawn


def serve(
    rng: np.random.Generator,
    requests: int,
    targets: Sequence[Conduct],
    bursts: Bursts | None = None,
    rest: np.random.Generator | None = None,
) -> GroupMinute:
    """One target group answering ``requests`` with ``targets`` registered (``bursts``: overdispersed).

    ``rest``: where the response times beyond the first :data:`MAX_SAMPLES` come from, so that
    every request has its own (the range statistics, the judge's slow-request counts, then count
    requests as CloudWatch does, not samples standing for several requests each, which would
    multiply a slot's count variance beyond a binomial's). Drawn from their own generator, they
    leave every other draw of the minute as it was."""
    minute = GroupMinute(
        requests=requests,
        healthy=sum(1 for t in targets if t.in_service),
        unhealthy=sum(1 for t in targets if not t.in_service),
    )
    if requests == 0 or not targets:
        return minute
    serving = [t for t in targets if t.in_service] or list(targets)  # fail open
    per_target = rng.multinomial(requests, np.full(len(serving), 1.0 / len(serving)))
    rates = {t.error_rate: t.error_rate for t in serving}
    if bursts is not None:
        rates = minute_rates(rng, [t.error_rate for t in serving], bursts)
    samples_total = min(requests, MAX_SAMPLES)
    samples: list[np.ndarray] = []
    for target, n in zip(serving, per_target, strict=True):
        if n == 0:
            continue
        minute.errors += int(rng.binomial(int(n), min(1.0, max(0.0, rates[target.error_rate]))))
        draws = max(1, round(samples_total * n / requests))
        samples.append(rng.lognormal(target.mu, target.sigma, size=draws))
        if rest is not None and n > draws:
            samples.append(rest.lognormal(target.mu, target.sigma, size=int(n) - draws))
    values = np.concatenate(samples)
    minute.latency = Summary.of(values, weight=requests / len(values))
    return minute


def simulate_minute(
    rng: np.random.Generator,
    total: int,
    routes: Sequence[Route],
    members: Mapping[str, Sequence[Conduct]],
    bursts: ErrorBursts | None = None,
    reference: float = 0.0,
    rest: np.random.Generator | None = None,
) -> MinuteResult:
    """A minute of ``total`` requests through ``routes``; ``members`` are each group's targets.

    ``bursts``: the scenario's overdispersion, its shared draw around ``reference`` (the
    baseline's 5xx rate). Without it (or with both CVs 0) no extra random number is drawn, so a
    scenario without bursts sees exactly the draws it always saw.
    """
    result = MinuteResult(requests=total)
    split = split_requests(rng, total, routes)
    minute_bursts = Bursts.draw(rng, bursts, reference) if bursts is not None and bursts.active else None
    result.elb_errors = split.pop("__elb__", 0)
    for arn in sorted({*members, *split}):
        targets = members.get(arn, ())
        count = split.get(arn, 0)
        if count and not targets:
            result.elb_errors += count
            result.groups[arn] = GroupMinute()
            continue
        result.groups[arn] = serve(rng, count, targets, minute_bursts, rest)
    return result


def cpu_sample(rng: np.random.Generator, conducts: Sequence[Conduct]) -> Summary | None:
    """CPUUtilization of a group's instances for one minute (None without instances)."""
    if not conducts:
        return None
    values = np.array([c.cpu + rng.normal(0.0, c.cpu_noise) if c.cpu_noise else c.cpu for c in conducts])
    return Summary.of(np.clip(values, 0.0, 100.0))
