"""Simulated per-minute ALB metrics for the decision benchmark, drawn once per cell (numpy).

The model is the sandbox's (:mod:`rfs_deploy.sim.traffic`), reduced to what one canary sees:

* the load balancer gets ``round(Normal(rpm, 5 % x rpm))`` requests a minute (the scenarios'
  ``noise: 0.05``); the new slot gets ``Binomial(total, weight)`` of them, the baseline the rest;
* each slot's 5xx count is ``Binomial(requests, error rate)``;
* each slot's p99 is what the sandbox reports: the 99th percentile (numpy's linear
  interpolation) of ``min(requests, 2000)`` log-normal response times with the scenarios'
  median 80 ms and p99 350 ms (a slower version multiplies both). Instead of drawing up to 2,000
  samples per slot-minute, :func:`sample_p99` draws the two order statistics the percentile
  interpolates between, exactly (uniform order statistics from exponential spacings, then the
  log-normal quantile function), which has the same distribution.

**Real traffic** (issue 15), each off unless a cell asks for it, so the sandbox-model cells draw
exactly what they drew before:

* *overdispersed errors*: each minute's 5xx rate is drawn from a Beta distribution around the
  slot's rate with coefficient of variation ``rate_cv`` (``kappa = (1 - p) / (cv^2 p) - 1``), then
  the count is binomial at that rate; the count's variance is the binomial's times
  ``1 + (n - 1) / (kappa + 1)``. ``bursts="slot"`` draws each slot's rate on its own,
  ``"shared"`` draws one burst for both (an upstream's bad minute), the new slot's rate scaled by
  the same factor;
* *drift*: the 5xx rate rises linearly by ``drift`` over ``drift_minutes`` minutes, then stays,
  on both slots (``drift_slots="both"``) or only the new one (``"new"``, a regression);
* *ramps*: the request rate goes linearly from ``ramp[0]`` to ``ramp[1]`` times ``rpm`` over
  the first ``ramp_minutes`` minutes, then stays;
* *tail-only latency*: ``tail_factor`` multiplies the new version's p99 and leaves its median,
  so the log-normal's spread widens (``latency_factor`` moves the whole distribution);
* *shared outages*: both slots at ``outage_rate`` 5xx for ``outage_minutes`` minutes from a
  start minute drawn per seed, uniformly from 1 to ``outage_latest``.

These draws come from a second generator seeded from the cell's seed, so the first generator's
stream (request counts, latency) is the same with or without them.

**The baseline's history** (one read per deployment, :mod:`rfs_deploy.drive.history`): the live
slot's hour before the first traffic shift, drawn per seed from a third generator (so no other
draw changes) with the same model: all of the traffic at the ramp's starting rate, the
baseline's rate before any drift, its bursts (a Beta per minute at the cell's CV), its latency;
an outage is not in it.

**Slow requests** (latency as counts): each slot's count of requests slower than the latency
threshold is ``Binomial(requests, P(response time > threshold))`` under the slot's log-normal,
what CloudWatch's ``TC(t:)`` counts. The threshold is the driver's: the baseline's p95 over its
history (the median of the history's per-minute p95s, drawn for the history's minutes as their
p99s are), per seed; the baseline's true p95 without a history. The counts come from a fourth
generator, so every other draw is the same with or without them; a minute's slow count and its
p99 are drawn independently (the sequential test reads the counts, the absolute limits the p99).

**Common random numbers.** Every (seed, minute, weight) gets its draws up front, so every policy
judged on a cell sees the same traffic in the same minute at the same weight; only where a policy
is in its plan (which weight, which minute) differs. A minute's 5xx rate, drift and outage
belong to the minute, not to the weight: they are drawn per (seed, minute) and shared by every
weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rfs_deploy.sim.behaviour import Z99
from rfs_deploy.sim.traffic import MAX_SAMPLES

#: The sandbox scenarios' latency: median and p99 in seconds.
MEDIAN = 0.08
P99 = 0.35
#: Relative standard deviation of the per-minute request count (the scenarios' ``noise``).
NOISE = 0.05
#: The project's default canary: 10 % + 10 % every 60 s, judged against the baseline up to 90 %,
#: then 100 % judged on thresholds.
DEFAULT_WEIGHTS: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
#: The quantile of the baseline's response times the driver counts slow requests above (its p95
#: over its history, :meth:`rfs_deploy.drive.analysis.Analyst.latency_threshold`).
SLOW_QUANTILE = 0.95


@dataclass(frozen=True)
class Cell:
    """One row group of the table: traffic, how the new version behaves, and the plan."""

    name: str
    rpm: int
    new_error_rate: float
    base_error_rate: float = 0.005
    #: Response times of the new version are this many times the baseline's (1 = as fast).
    latency_factor: float = 1.0
    weights: tuple[int, ...] = DEFAULT_WEIGHTS
    #: Overrides of the project's Analysis policy for this cell (e.g. a smaller minRequests).
    analysis: tuple[tuple[str, object], ...] = ()
    #: Also judge with a tighter latency tolerance (the cells where latency is at stake).
    variants: bool = False
    #: The benchmark section the cell belongs to (the real-traffic groups of issue 15).
    group: str = ""
    #: Coefficient of variation of each minute's 5xx rate (Beta around the slot's rate); 0: binomial.
    rate_cv: float = 0.0
    #: "slot": each slot's minute rate drawn on its own; "shared": one burst for both slots.
    bursts: str = "slot"
    #: 5xx rate added linearly over ``drift_minutes`` minutes, to "both" slots or only the "new".
    drift: float = 0.0
    drift_slots: str = "both"
    drift_minutes: int = 10
    #: Request rate from ``ramp[0]`` to ``ramp[1]`` times ``rpm`` over ``ramp_minutes`` minutes.
    ramp: tuple[float, float] = (1.0, 1.0)
    ramp_minutes: int = 10
    #: The new version's p99 times this, its median unchanged (only the tail slower).
    tail_factor: float = 1.0
    #: Both slots at ``outage_rate`` 5xx for this many minutes, from a start in 1..``outage_latest``.
    outage_minutes: int = 0
    outage_rate: float = 0.5
    outage_latest: int = 8

    def __post_init__(self) -> None:
        if self.bursts not in ("slot", "shared") or self.drift_slots not in ("both", "new"):
            raise ValueError(f"cell {self.name!r}: bursts is slot|shared, drift_slots both|new")

    @property
    def faulty(self) -> bool:
        """Whether a rollback is the right decision."""
        return (
            self.new_error_rate > self.base_error_rate
            or self.latency_factor > 1.0
            or self.tail_factor > 1.0
            or (self.drift > 0 and self.drift_slots == "new")
        )

    @property
    def steady(self) -> bool:
        """Whether the cell is the sandbox's model: binomial errors at steady rates and traffic."""
        return (
            self.rate_cv == 0
            and self.drift == 0
            and self.ramp == (1.0, 1.0)
            and self.tail_factor == 1.0
            and self.outage_minutes == 0
        )


@dataclass
class Traces:
    """Draws of one cell: arrays indexed ``[seed, minute - 1, weight index]``.

    p99 is NaN where a slot had no request in that minute (CloudWatch has no datapoint).
    """

    cell: Cell
    new_requests: np.ndarray
    new_errors: np.ndarray
    new_p99: np.ndarray
    base_requests: np.ndarray
    base_errors: np.ndarray
    base_p99: np.ndarray
    seeds: int = field(init=False)
    minutes: int = field(init=False)
    #: Requests slower than ``slow_threshold[seed]`` per slot (None: not drawn).
    new_slow: np.ndarray | None = None
    base_slow: np.ndarray | None = None
    slow_threshold: np.ndarray | None = None
    #: The baseline's hour before the first shift, ``[seed, minute]`` (None: not drawn).
    history_requests: np.ndarray | None = None
    history_errors: np.ndarray | None = None
    history_p99: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.seeds, self.minutes, _ = self.new_requests.shape

    def seed(self, index: int) -> SeedTrace:
        """Plain-Python view of one seed (fast to index in the policies' loops)."""
        return SeedTrace(
            weights=self.cell.weights,
            new_requests=self.new_requests[index].tolist(),
            new_errors=self.new_errors[index].tolist(),
            new_p99=self.new_p99[index].tolist(),
            base_requests=self.base_requests[index].tolist(),
            base_errors=self.base_errors[index].tolist(),
            base_p99=self.base_p99[index].tolist(),
            history=self._history(index),
            new_slow=None if self.new_slow is None else self.new_slow[index].tolist(),
            base_slow=None if self.base_slow is None else self.base_slow[index].tolist(),
            slow_threshold=None if self.slow_threshold is None else float(self.slow_threshold[index]),
        )

    def _history(self, index: int) -> tuple[tuple[int, int, float | None], ...]:
        if self.history_requests is None or self.history_errors is None or self.history_p99 is None:
            return ()
        rows = zip(
            self.history_requests[index].tolist(),
            self.history_errors[index].tolist(),
            self.history_p99[index].tolist(),
            strict=True,
        )
        return tuple((n, e, _known(p)) for n, e, p in rows)


@dataclass(frozen=True)
class Minute:
    """What CloudWatch holds for one minute: requests, 5xx and p99 per slot (p99 None: no data)."""

    new_requests: int
    new_errors: int
    new_p99: float | None
    base_requests: int
    base_errors: int
    base_p99: float | None
    #: Requests slower than the seed's latency threshold (None: not drawn).
    new_slow: int | None = None
    base_slow: int | None = None


@dataclass(frozen=True)
class SeedTrace:
    """One seed's draws; :meth:`minute` is minute ``t`` (1-based) at the plan's step ``step``."""

    weights: tuple[int, ...]
    new_requests: list[list[int]]
    new_errors: list[list[int]]
    new_p99: list[list[float]]
    base_requests: list[list[int]]
    base_errors: list[list[int]]
    base_p99: list[list[float]]
    #: The baseline's hour before the first shift: (requests, 5xx, p99) per minute, oldest first.
    history: tuple[tuple[int, int, float | None], ...] = ()
    new_slow: list[list[int]] | None = None
    base_slow: list[list[int]] | None = None
    #: The seconds the slow counts are counted against.
    slow_threshold: float | None = None

    @property
    def horizon(self) -> int:
        return len(self.new_requests)

    def minute(self, t: int, step: int) -> Minute:
        if not 1 <= t <= self.horizon:
            raise IndexError(f"minute {t} is beyond the simulated horizon of {self.horizon}")
        i = t - 1
        return Minute(
            new_requests=self.new_requests[i][step],
            new_errors=self.new_errors[i][step],
            new_p99=_known(self.new_p99[i][step]),
            base_requests=self.base_requests[i][step],
            base_errors=self.base_errors[i][step],
            base_p99=_known(self.base_p99[i][step]),
            new_slow=None if self.new_slow is None else self.new_slow[i][step],
            base_slow=None if self.base_slow is None else self.base_slow[i][step],
        )


def _known(value: float) -> float | None:
    return None if math.isnan(value) else value


def latency_params(factor: float = 1.0, tail: float = 1.0) -> tuple[float, float]:
    """(mu, sigma) of the log-normal response time, as :func:`rfs_deploy.sim.behaviour.conduct`:
    ``factor`` multiplies median and p99, ``tail`` the p99 alone (a wider spread)."""
    sigma = math.log(P99 * tail / MEDIAN) / Z99
    return math.log(MEDIAN * factor), sigma


def simulate(cell: Cell, seeds: int, minutes: int, seed: int) -> Traces:
    """Draw ``minutes`` minutes at every weight of the cell's plan for ``seeds`` seeds."""
    rng = np.random.default_rng(seed)
    shape = (seeds, minutes, len(cell.weights))
    if cell.ramp == (1.0, 1.0):
        mean = rng.normal(cell.rpm, cell.rpm * NOISE, size=(seeds, minutes))
    else:
        rpm = cell.rpm * ramp_factors(cell, minutes)
        mean = rng.normal(rpm, rpm * NOISE, size=(seeds, minutes))
    totals = np.maximum(0, np.rint(mean)).astype(np.int64)
    share = np.array(cell.weights, dtype=float) / 100.0
    new_requests = rng.binomial(np.broadcast_to(totals[:, :, None], shape), share)
    base_requests = totals[:, :, None] - new_requests
    if _errors_steady(cell):
        new_errors = rng.binomial(new_requests, cell.new_error_rate)
        base_errors = rng.binomial(base_requests, cell.base_error_rate)
    else:
        new_rate, base_rate = minute_rates(cell, seeds, minutes, np.random.default_rng([seed, 1]))
        new_errors = rng.binomial(new_requests, new_rate[:, :, None])
        base_errors = rng.binomial(base_requests, base_rate[:, :, None])
    mu_new, sigma_new = latency_params(cell.latency_factor, cell.tail_factor)
    mu_base, sigma = latency_params(1.0)
    history = baseline_history(cell, seeds, np.random.default_rng([seed, 2]))
    traces = Traces(
        cell=cell,
        new_requests=new_requests,
        new_errors=new_errors,
        new_p99=sample_p99(rng, new_requests, mu_new, sigma_new),
        base_requests=base_requests,
        base_errors=base_errors,
        base_p99=sample_p99(rng, base_requests, mu_base, sigma),
        history_requests=history[0],
        history_errors=history[1],
        history_p99=history[2],
    )
    return with_slow_counts(traces, seed)


def with_slow_counts(traces: Traces, seed: int) -> Traces:
    """``traces`` with each slot's slow-request counts, against each seed's latency threshold."""
    cell = traces.cell
    rng = np.random.default_rng([seed, 3])
    mu_new, sigma_new = latency_params(cell.latency_factor, cell.tail_factor)
    mu_base, sigma = latency_params(1.0)
    threshold = np.full(
        traces.seeds, math.exp(mu_base + sigma * float(norm_ppf(np.array([SLOW_QUANTILE]))[0]))
    )
    requests = getattr(traces, "history_requests", None)
    if requests is not None:
        # the driver's threshold: the median of the history's per-minute p95s
        p95 = sample_p99(rng, requests, mu_base, sigma, q=SLOW_QUANTILE)
        has = ~np.all(np.isnan(p95), axis=1)
        threshold[has] = np.nanmedian(p95[has], axis=1)
    cut = threshold[:, None, None]
    traces.new_slow = rng.binomial(traces.new_requests, slow_share(mu_new, sigma_new, cut))
    traces.base_slow = rng.binomial(traces.base_requests, slow_share(mu_base, sigma, cut))
    traces.slow_threshold = threshold
    return traces


def slow_share(mu: float, sigma: float, threshold: np.ndarray | float) -> np.ndarray:
    """The log-normal's probability of a response time above ``threshold`` (elementwise)."""
    z = (np.log(threshold) - mu) / (sigma * math.sqrt(2.0))
    return 0.5 * _erfc(np.asarray(z, dtype=float))


_erfc = np.vectorize(math.erfc, otypes=[float])


#: Minutes of the baseline's history the driver reads before the first shift.
HISTORY_MINUTES = 60


def baseline_history(
    cell: Cell, seeds: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The live slot's last :data:`HISTORY_MINUTES` minutes before the first shift, per seed:
    requests, 5xx and p99 with all of the traffic, at the baseline's rate before any drift."""
    shape = (seeds, HISTORY_MINUTES)
    rpm = cell.rpm * cell.ramp[0]
    totals = np.maximum(0, np.rint(rng.normal(rpm, rpm * NOISE, size=shape))).astype(np.int64)
    rate: np.ndarray | float = cell.base_error_rate
    if cell.rate_cv > 0:
        rate = beta_rates(rng, np.full(shape, cell.base_error_rate), cell.rate_cv)
    errors = rng.binomial(totals, rate)
    mu, sigma = latency_params(1.0)
    return totals, errors, sample_p99(rng, totals, mu, sigma)


def _errors_steady(cell: Cell) -> bool:
    """Whether each slot's 5xx count is binomial at one fixed rate (the sandbox's model)."""
    return cell.rate_cv == 0 and cell.drift == 0 and cell.outage_minutes == 0


def ramp_factors(cell: Cell, minutes: int) -> np.ndarray:
    """The request rate's factor for minutes 1..``minutes``: linear over the ramp, then held."""
    first, last = cell.ramp
    progress = np.minimum(1.0, np.arange(minutes) / max(1, cell.ramp_minutes - 1))
    return first + (last - first) * progress


def beta_rates(rng: np.random.Generator, mean: np.ndarray, cv: float) -> np.ndarray:
    """Rates drawn from a Beta with mean ``mean`` (elementwise) and coefficient of variation ``cv``."""
    mean = np.asarray(mean, dtype=float)
    kappa = (1 - mean) / (cv * cv * mean) - 1
    if (kappa <= 0).any():
        raise ValueError(f"a 5xx rate CV of {cv} is impossible around a rate of {mean.max():g}")
    return rng.beta(mean * kappa, (1 - mean) * kappa)


def minute_rates(
    cell: Cell, seeds: int, minutes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each (seed, minute)'s 5xx rate of the new slot and of the baseline: drift, bursts, outage."""
    t = np.arange(minutes)
    rise = cell.drift * np.minimum(1.0, t / max(1, cell.drift_minutes - 1))
    new_mean = np.broadcast_to(cell.new_error_rate + rise, (seeds, minutes))
    base_mean = np.broadcast_to(
        cell.base_error_rate + (rise if cell.drift_slots == "both" else 0.0), (seeds, minutes)
    )
    if cell.rate_cv == 0:
        new_rate, base_rate = new_mean.copy(), base_mean.copy()
    elif cell.bursts == "shared":
        base_rate = beta_rates(rng, base_mean, cell.rate_cv)
        new_rate = np.minimum(1.0, new_mean * base_rate / base_mean)
    else:
        new_rate = beta_rates(rng, new_mean, cell.rate_cv)
        base_rate = beta_rates(rng, base_mean, cell.rate_cv)
    if cell.outage_minutes:
        start = rng.integers(0, cell.outage_latest, size=(seeds, 1))
        down = (t[None, :] >= start) & (t[None, :] < start + cell.outage_minutes)
        new_rate = np.where(down, np.maximum(new_rate, cell.outage_rate), new_rate)
        base_rate = np.where(down, np.maximum(base_rate, cell.outage_rate), base_rate)
    return new_rate, base_rate


def sample_p99(
    rng: np.random.Generator, requests: np.ndarray, mu: float, sigma: float, q: float = 0.99
) -> np.ndarray:
    """The sandbox's per-minute p99 for each element of ``requests`` (NaN where it is 0); another
    quantile with ``q`` (0.95: the p95 CloudWatch gives the baseline's history).

    The sandbox takes ``np.percentile(x, 99)`` of ``k = min(requests, 2000)`` log-normal draws:
    with ``h = 0.99 (k - 1)`` and ``lo = floor(h)`` that is ``x[lo] + (h - lo)(x[lo+1] - x[lo])``
    over the sorted draws, so only the ``a+1``-th and ``a``-th largest (``a = k - 1 - lo``) matter.
    For ``k`` uniforms, ``1 - U`` sorted ascending is ``S_i / S_{k+1}`` with ``S_i`` the partial
    sums of i.i.d. unit exponentials: ``S_a ~ Gamma(a)``, one more exponential, and
    ``Gamma(k - a)`` for the rest.
    """
    k = np.minimum(np.asarray(requests, dtype=np.int64), MAX_SAMPLES)
    has = k > 0
    k1 = np.where(has, k, 1)
    h = q * (k1 - 1)
    lo = np.floor(h + 1e-9).astype(np.int64)
    frac = h - lo
    a = (k1 - 1) - lo
    s_a = np.where(a > 0, rng.gamma(np.maximum(a, 1)), 0.0)
    s_a1 = s_a + rng.exponential(size=k1.shape)
    total = s_a1 + rng.gamma(k1 - a)
    upper_lo = _lognormal_upper(s_a1 / total, mu, sigma)  # x[lo]
    upper_hi = np.where(a > 0, _lognormal_upper(np.maximum(s_a, 1e-300) / total, mu, sigma), upper_lo)
    value = upper_lo + frac * (upper_hi - upper_lo)
    return np.where(has, value, np.nan)


def _lognormal_upper(tail: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """The log-normal value with upper-tail probability ``tail``."""
    return np.exp(mu - sigma * norm_ppf(tail))


# Rational approximation of the normal quantile function (P. J. Acklam's coefficients; relative
# error below 1.2e-9 over (0, 1)), vectorised.
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
      -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
      -1.328068155288572e01)  # fmt: skip
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
      4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_LOW = 0.02425


def norm_ppf(p: np.ndarray) -> np.ndarray:
    """Standard normal quantile of each element of ``p`` (all in (0, 1))."""
    p = np.clip(np.asarray(p, dtype=float), 1e-300, 1 - 1e-16)
    out = np.empty_like(p)
    low, high = p < _LOW, p > 1 - _LOW
    mid = ~(low | high)
    q = p[mid] - 0.5
    r = q * q
    num = ((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]
    den = ((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0
    out[mid] = q * num / den
    for mask, sign, tail in ((low, 1.0, p[low]), (high, -1.0, 1.0 - p[high])):
        t = np.sqrt(-2.0 * np.log(tail))
        num = ((((_C[0] * t + _C[1]) * t + _C[2]) * t + _C[3]) * t + _C[4]) * t + _C[5]
        den = (((_D[0] * t + _D[1]) * t + _D[2]) * t + _D[3]) * t + 1.0
        out[mask] = sign * num / den
    return out
