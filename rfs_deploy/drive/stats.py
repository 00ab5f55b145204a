"""The statistics behind the judge, in plain Python (no numpy or scipy at run time).

* :class:`Evidence` — a sequential test of "the new slot's 5xx rate is higher than the baseline's",
  over cumulative counts, safe to look at after every window (see its docstring).
* :func:`rate_comparison` — the fixed-horizon version of the same comparison (A/B decisions).
* :func:`sample_ratio` — the sample-ratio-mismatch check of an A/B split.
* :func:`sign_test` — a one-sided sign test for per-window latency comparisons.

Why compare 5xx *counts* conditionally: with ``n`` requests on the new slot and ``m`` on the
baseline in a window, and error rates ``q_new = r * q_base``, the new slot's share of that window's
errors is binomial with probability ``r n / (r n + m)`` given the total number of errors
(the classic comparison of two Poisson rates). The unknown baseline rate drops out, so the test
needs no assumption about it and works whatever the canary weight is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

#: Rate ratios (new / baseline) the sequential test looks for, mixed with equal weight.
#: 2 and 4 are a 1 % and a 2 % error rate over a 0.5 % baseline; 1.5 and 3 fill the gaps.
ALTERNATIVES: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0)

#: Prior weight, in windows, of "no overdispersion" (1) in each slot's dispersion estimate: a
#: slot's first few windows cannot show much of its minute-to-minute variation, and a burst in
#: them must neither be ignored nor make the estimate explode.
DISPERSION_PRIOR = 4.0

#: How far, in standard deviations, one window's live baseline count may lie above what the
#: baseline's history (:mod:`rfs_deploy.drive.history`) predicts before that window is judged
#: without the history (a shared burst the history cannot know of).
PRIOR_Z = 2.0
#: The baseline's rate over its history's that the departure test looks for, mixed with equal
#: weight: small rises, the ones a shared drift starts with (a baseline that got better than its
#: history only costs the test power, never a false rollback).
DRIFT_RATIOS: tuple[float, ...] = (1.25, 1.5)
#: The departure test's level: once the live baseline's evidence of a higher rate than its
#: history's reaches ``1 / DEPARTURE_ALPHA``, the history is dropped for the rest of the release.
#: Deliberately eager (a likelihood ratio of 1.25; measured in ``benchmarks/decision``: a shared
#: drift from 0.5 % to 1.5 % over ten minutes must not fail the canary, and the live baseline has
#: little traffic to show it by at the high weights where the history adds the most).
DEPARTURE_ALPHA = 0.8

#: P-value below which an A/B split counts as a sample ratio mismatch (the usual SRM bar).
SRM_ALPHA = 0.001


# --------------------------------------------------------------------------- distributions


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed exactly from the tail inwards."""
    _check_probability(p)
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    mean = n * p
    if k > mean:
        return min(1.0, _tail_sum(k, n, p, step=1))
    return max(0.0, 1.0 - _tail_sum(k - 1, n, p, step=-1))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    _check_probability(p)
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    if k < n * p:
        return min(1.0, _tail_sum(k, n, p, step=-1))
    return max(0.0, 1.0 - _tail_sum(k + 1, n, p, step=1))


def _tail_sum(start: int, n: int, p: float, step: int) -> float:
    """Sum of binomial probabilities from ``start`` outwards (``step`` +1 up, -1 down)."""
    log_pmf = (
        math.lgamma(n + 1)
        - math.lgamma(start + 1)
        - math.lgamma(n - start + 1)
        + start * math.log(p)
        + (n - start) * math.log1p(-p)
    )
    term = math.exp(log_pmf)
    total = 0.0
    odds = p / (1.0 - p)
    i = start
    while 0 <= i <= n and term > 0.0:
        total += term
        if term < total * 1e-17:
            break
        if step > 0:
            term *= (n - i) / (i + 1) * odds
        else:
            term *= i / (n - i + 1) / odds
        i += step
    return total


def _check_probability(p: float) -> None:
    # a NaN compares false with everything, so it would read as "no evidence": refuse it
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be within [0, 1], got {p}")


def _check_counts(*counts: float) -> None:
    if not all(math.isfinite(c) and c >= 0 for c in counts):
        raise ValueError(f"counts must be finite and not negative, got {counts}")


def chi2_sf_1df(x: float) -> float:
    """Upper tail of the chi-square distribution with one degree of freedom."""
    if math.isnan(x):
        raise ValueError("chi-square statistic is NaN")
    return math.erfc(math.sqrt(max(0.0, x) / 2.0))


# --------------------------------------------------------------------------- sequential test


@dataclass(frozen=True)
class Evidence:
    """Cumulative state of the sequential baseline test; ``update`` returns a new value.

    The test: for each ratio ``r`` in ``alternatives`` the likelihood ratio of "new rate = r x
    baseline rate" against "equal rates" is multiplied up window by window (each window with its
    own traffic shares, so steps of different canary weights can share one test). The statistic
    is the equal-weight mixture of those ratios. Under equal rates it is a non-negative
    martingale with mean 1, so by Ville's inequality it ever reaches ``1/alpha`` with probability
    at most ``alpha`` — however often it is looked at, and whenever the step stops. That is a
    mixture SPRT (Wald's SPRT for a single ratio, made robust to not knowing the ratio); it costs
    about ``log(len(alternatives))`` nats of extra evidence over Wald's SPRT at the true ratio.

    ``max_log_lr`` only grows, so a rejection is final and :attr:`p_value` (always valid) only
    falls. Counts and ratios are cumulative since :meth:`start`.
    """

    alternatives: tuple[float, ...] = ALTERNATIVES
    log_lr: tuple[float, ...] = field(default_factory=lambda: (0.0,) * len(ALTERNATIVES))
    new_requests: int = 0
    new_errors: int = 0
    base_requests: int = 0
    base_errors: int = 0
    windows: int = 0
    max_log_lr: float = 0.0
    #: Each slot's minute-to-minute variation so far (:class:`Spread`), and the variance inflation
    #: the last window's evidence was divided by (1: binomial counts).
    new_spread: Spread = field(default_factory=lambda: Spread())
    base_spread: Spread = field(default_factory=lambda: Spread())
    dispersion: float = 1.0
    #: The baseline's history before the release as pseudo-counts (requests and 5xx, already
    #: divided by the history's variance inflation) and its intra-period correlation; 0: none.
    prior_requests: float = 0.0
    prior_errors: float = 0.0
    prior_correlation: float = 0.0
    #: The live baseline departed from its history: the history is no longer used.
    prior_departed: bool = False
    #: Windows whose evidence used the history.
    prior_windows: int = 0
    #: With a history: the test as it would stand without it (log-likelihood ratios and their
    #: largest mixture), which replaces it when the baseline departs; and the departure test's
    #: log-likelihood ratios (the live baseline's rate at each of :data:`DRIFT_RATIOS` x history's).
    plain_log_lr: tuple[float, ...] = ()
    plain_max_log_lr: float = 0.0
    drift_log_lr: tuple[float, ...] = ()
    #: The same test on the slow-request counts (requests slower than the latency threshold), kept
    #: beside this one by the rules of a window (:func:`rfs_deploy.drive.rules.assess`); None
    #: until a window had slow counts on both slots.
    slow: Evidence | None = None

    @classmethod
    def start(cls, alternatives: Sequence[float] = ALTERNATIVES) -> Evidence:
        """Fresh evidence looking for the given rate ratios (each > 1)."""
        alts = tuple(float(r) for r in alternatives)
        if not alts or any(r <= 1.0 for r in alts):
            raise ValueError("alternatives must be rate ratios above 1")
        return cls(alternatives=alts, log_lr=(0.0,) * len(alts))

    def with_prior(self, requests: float, errors: float, correlation: float = 0.0) -> Evidence:
        """This evidence with the baseline's history as a prior for its rate: ``requests`` and
        ``errors`` are the history's pseudo-counts (its counts over its variance inflation),
        ``correlation`` its beta-binomial intra-period correlation.

        Each window's likelihood ratio then integrates the baseline's unknown rate over a Gamma
        prior with those counts, updated by the window's own baseline counts: the Bayes factor
        ``r^e_new ((b + n + m) / (b + r n + m))^(a + e)``, which with no history (``a = b = 0``) is
        exactly the conditional test. Robustly: a window whose baseline lies far above the
        history (:data:`PRIOR_Z`) is judged without it, and once the live baseline's rate departs
        from the history's (a sequential test of its own, :data:`DRIFT_RATIOS`,
        :data:`DEPARTURE_ALPHA`), the history is dropped and the release's evidence is what it
        would have been without one."""
        _check_counts(requests, errors)
        if errors > requests:
            raise ValueError("a prior cannot have more errors than requests")
        if self.windows:
            raise ValueError("the history is the prior of a fresh test")
        if requests <= 0:
            return self
        return replace(
            self,
            prior_requests=float(requests),
            prior_errors=float(errors),
            prior_correlation=max(0.0, float(correlation)),
            plain_log_lr=self.log_lr,
            plain_max_log_lr=self.max_log_lr,
            drift_log_lr=(0.0,) * len(DRIFT_RATIOS),
        )

    @property
    def prior_rate(self) -> float | None:
        """The history's 5xx rate (None: no history, or no longer used)."""
        if self.prior_requests <= 0 or self.prior_departed:
            return None
        return self.prior_errors / self.prior_requests

    @property
    def drift_log_mixture(self) -> float:
        """Log of the departure test's mixture likelihood ratio (0 without a history)."""
        return _log_mean_exp(self.drift_log_lr) if self.drift_log_lr else 0.0

    def _above_history(self, requests: int, errors: int, rho: float) -> bool:
        """Whether one window's baseline count lies more than :data:`PRIOR_Z` standard deviations
        above the history's prediction (the variance: the count's own, inflated by the dispersion,
        plus the history's uncertainty)."""
        rate = self.prior_rate
        if rate is None:
            return True
        mean = requests * rate
        var = mean * (1.0 - rate) * (1.0 + (requests - 1) * rho) + mean * mean / max(1.0, self.prior_errors)
        return var > 0 and (errors - mean) / math.sqrt(var) > PRIOR_Z

    def _drift(self, requests: int, errors: int, rho: float) -> tuple[float, ...]:
        """The departure test after one window of the live baseline: per ratio of the history's
        rate, a CUSUM of Poisson log-likelihood ratios of its count (each divided by the count's
        variance inflation: the dispersion, and the history's own uncertainty), held at 0 from
        below so that a drift starting late in the release is seen as soon as it starts."""
        rate = self.prior_rate
        if rate is None or requests <= 0:
            return self.drift_log_lr
        mean = requests * rate
        inflation = 1.0 + (requests - 1) * rho + mean / max(1.0, self.prior_errors)
        return tuple(
            max(0.0, lr + (errors * math.log(q) - (q - 1.0) * mean) / inflation)
            for lr, q in zip(self.drift_log_lr, DRIFT_RATIOS, strict=True)
        )

    def update(self, new_requests: int, new_errors: int, base_requests: int, base_errors: int) -> Evidence:
        """Add one window's counts (windows with no traffic on either slot add no evidence).

        The judge never hands in a NaN or infinite count (that window has no data); one here is
        a ValueError rather than evidence that compares false with every threshold."""
        _check_counts(new_requests, new_errors, base_requests, base_errors)
        log_lr = self.log_lr
        new_spread, base_spread = self.new_spread.add(new_requests, new_errors), self.base_spread
        base_spread = base_spread.add(base_requests, base_errors)
        dispersion = self.dispersion
        departed, prior_windows = self.prior_departed, self.prior_windows
        plain, plain_max, drift = self.plain_log_lr, self.plain_max_log_lr, self.drift_log_lr
        has_prior = self.prior_requests > 0 and not departed
        if new_requests > 0 and base_requests > 0:
            # quasi-likelihood: the share of errors varies (1 - s) phi_new + s phi_base times as
            # much as a binomial's, so each window's log-likelihood ratio is divided by that. Each
            # slot's phi is a beta-binomial's, 1 + (n - 1) rho, with the larger of the two slots'
            # intra-minute correlations rho: the baseline's many requests estimate it far better
            # than a 10 % canary's few, and one upstream's bad minutes hit both (and the history's:
            # an hour of minutes shows the bursts a release's first windows cannot)
            rho = max(new_spread.correlation, base_spread.correlation, self.prior_correlation)
            phi_new, phi_base = 1.0 + (new_requests - 1) * rho, 1.0 + (base_requests - 1) * rho

            def terms(prior_requests: float, prior_errors: float) -> tuple[tuple[float, ...], float]:
                share = new_requests / (new_requests + base_requests + prior_requests)
                errors = new_errors + base_errors + prior_errors
                inflation = (1.0 - share) * phi_new + share * phi_base
                found = tuple(
                    (new_errors * math.log(r) - errors * math.log1p((r - 1.0) * share)) / inflation
                    for r in self.alternatives
                )
                return found, inflation

            without, dispersion = terms(0.0, 0.0)
            if has_prior:
                plain = tuple(a + b for a, b in zip(plain, without, strict=True))
                plain_max = max(plain_max, _log_mean_exp(plain))
                drift = self._drift(base_requests, base_errors, rho)
                if _log_mean_exp(drift) >= math.log(1.0 / DEPARTURE_ALPHA):
                    # the baseline is not what its history was: judge the release without it
                    departed = True
                    log_lr = plain
                elif self._above_history(base_requests, base_errors, rho):
                    log_lr = tuple(a + b for a, b in zip(log_lr, without, strict=True))
                else:
                    # the history as a Gamma prior for this window's baseline rate (see with_prior)
                    found, dispersion = terms(self.prior_requests, self.prior_errors)
                    log_lr = tuple(a + b for a, b in zip(log_lr, found, strict=True))
                    prior_windows += 1
            else:
                log_lr = tuple(a + b for a, b in zip(log_lr, without, strict=True))
        mixed = _log_mean_exp(log_lr)
        # a baseline that departed from its history takes the history's evidence with it: the
        # largest mixture is the one the test without the history reached
        largest = plain_max if departed and not self.prior_departed else max(self.max_log_lr, mixed)
        return Evidence(
            alternatives=self.alternatives,
            log_lr=log_lr,
            new_requests=self.new_requests + new_requests,
            new_errors=self.new_errors + new_errors,
            base_requests=self.base_requests + base_requests,
            base_errors=self.base_errors + base_errors,
            windows=self.windows + 1,
            max_log_lr=largest,
            new_spread=new_spread,
            base_spread=base_spread,
            dispersion=dispersion,
            prior_requests=self.prior_requests,
            prior_errors=self.prior_errors,
            prior_correlation=self.prior_correlation,
            prior_departed=departed,
            prior_windows=prior_windows,
            plain_log_lr=plain,
            plain_max_log_lr=plain_max,
            drift_log_lr=drift,
        )

    @property
    def log_mixture(self) -> float:
        """Log of the mixture likelihood ratio now."""
        return _log_mean_exp(self.log_lr)

    @property
    def p_value(self) -> float:
        """Always-valid p-value of "equal rates": 1 / the largest mixture ratio seen so far."""
        return min(1.0, math.exp(-self.max_log_lr))

    def rejects(self, alpha: float) -> bool:
        """True once the evidence that the new slot errs more has reached ``1/alpha``."""
        return self.max_log_lr >= threshold(alpha)


@dataclass(frozen=True)
class Spread:
    """One slot's 5xx counts window by window, reduced to what its dispersion needs.

    The Pearson statistic of the windows' counts around the slot's pooled rate ``p`` is
    ``sum((e_i - n_i p)^2 / (n_i p (1 - p)))`` = ``(sum(e_i^2 / n_i) - E^2 / N) / (p (1 - p))``,
    so four running sums keep it exact however many windows there are.
    """

    windows: int = 0
    requests: int = 0
    errors: int = 0
    #: sum of e_i^2 / n_i over the windows
    squares: float = 0.0

    def add(self, requests: int, errors: int) -> Spread:
        if requests <= 0:
            return self
        squares = self.squares + errors**2 / requests
        return Spread(self.windows + 1, self.requests + requests, self.errors + errors, squares)

    @property
    def correlation(self) -> float:
        """The beta-binomial's intra-window correlation ``rho`` behind :attr:`dispersion`
        (``phi = 1 + (n - 1) rho`` at the slot's mean window of ``n`` requests)."""
        mean = self.requests / self.windows if self.windows else 0.0
        if mean <= 1.0:
            return 0.0
        return (self.dispersion - 1.0) / (mean - 1.0)

    @property
    def dispersion(self) -> float:
        """Variance of the counts over a binomial's (at least 1): the Pearson statistic's excess
        over what binomial counts give by chance (its mean ``df`` plus one standard deviation
        ``sqrt(2 df)``), per degree of freedom, shrunk by :data:`DISPERSION_PRIOR` windows.
        Binomial counts so keep 1 (no power lost to noise in the estimate); bursty ones do not."""
        if self.windows < 2 or self.errors <= 0 or self.errors >= self.requests:
            return 1.0
        p = self.errors / self.requests
        pearson = max(0.0, self.squares - self.errors**2 / self.requests) / (p * (1.0 - p))
        df = self.windows - 1
        excess = pearson - df - math.sqrt(2.0 * df)
        return 1.0 + max(0.0, excess) / (df + DISPERSION_PRIOR)


def threshold(alpha: float) -> float:
    """The log-likelihood-ratio bound of the sequential test at false-alarm rate ``alpha``."""
    return math.log(1.0 / alpha)


def hold_level(alpha: float) -> float:
    """Half the way to rejection (likelihood ratio ``1/sqrt(alpha)``): evidence leaning against
    the new version. Under equal rates it is ever reached with probability at most ``sqrt(alpha)``."""
    return threshold(alpha) / 2.0


def _log_mean_exp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


# --------------------------------------------------------------------------- fixed-horizon tests


@dataclass(frozen=True)
class RateComparison:
    """Conditional binomial comparison of two error counts (B against A)."""

    errors: int
    b_errors: int
    b_share: float
    #: P(B gets at least this many of the errors | equal rates): small means B errs more.
    p_worse: float
    #: P(B gets at most this many of the errors | equal rates): small means B errs less.
    p_better: float


def rate_comparison(a_requests: int, a_errors: int, b_requests: int, b_errors: int) -> RateComparison:
    """Exact conditional test of equal error rates for B against A (two Poisson rates)."""
    _check_counts(a_requests, a_errors, b_requests, b_errors)
    total = a_errors + b_errors
    share = b_requests / (a_requests + b_requests)
    return RateComparison(
        errors=total,
        b_errors=b_errors,
        b_share=share,
        p_worse=binom_sf(b_errors, total, share),
        p_better=binom_cdf(b_errors, total, share),
    )


@dataclass(frozen=True)
class SampleRatio:
    """Observed against configured share of requests for B."""

    expected_share: float
    observed_share: float
    chi2: float
    #: Variance inflation estimated from the windows (1 = plain binomial); chi2 is divided by it.
    dispersion: float
    p_value: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_ALPHA


def sample_ratio(a_counts: Sequence[int], b_counts: Sequence[int], expected_share: float) -> SampleRatio:
    """Chi-square test of the observed split against ``expected_share`` (B's share, 0-1).

    Requests are not independent draws — sticky users send many — so with three or more
    windows the Pearson dispersion of the per-window shares around the pooled share inflates
    the variance (a quasi-binomial correction); otherwise the plain chi-square is used.
    """
    _check_counts(*a_counts, *b_counts)
    a_total, b_total = sum(a_counts), sum(b_counts)
    total = a_total + b_total
    if total == 0:
        return SampleRatio(expected_share, float("nan"), 0.0, 1.0, 1.0)
    expected_b = total * expected_share
    expected_a = total - expected_b
    chi2 = (b_total - expected_b) ** 2 / expected_b + (a_total - expected_a) ** 2 / expected_a
    dispersion = _dispersion(a_counts, b_counts, b_total / total)
    return SampleRatio(
        expected_share=expected_share,
        observed_share=b_total / total,
        chi2=chi2,
        dispersion=dispersion,
        p_value=chi2_sf_1df(chi2 / dispersion),
    )


def _dispersion(a_counts: Sequence[int], b_counts: Sequence[int], pooled: float) -> float:
    pairs = [(a, b) for a, b in zip(a_counts, b_counts, strict=True) if a + b > 0]
    if len(pairs) < 3 or pooled in (0.0, 1.0):
        return 1.0
    pearson = sum((b - (a + b) * pooled) ** 2 / ((a + b) * pooled * (1 - pooled)) for a, b in pairs)
    return max(1.0, pearson / (len(pairs) - 1))


def sign_test(successes: int, trials: int) -> float:
    """One-sided sign test: P(at least ``successes`` of ``trials`` fair coin flips)."""
    return binom_sf(successes, trials, 0.5)
