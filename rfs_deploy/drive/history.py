"""The baseline's history: the live slot's last hour before a release shifts any traffic.

One metrics read per deployment, over ``[first shift - 60 min, first shift)`` at the analysis
period, gives the judge what a release's first windows cannot: the baseline's own 5xx rate over
tens of thousands of requests, how much its minutes vary (the beta-binomial correlation the
sequential test's quasi-likelihood uses, estimated as :class:`rfs_deploy.drive.stats.Spread`
estimates it during the release) and its latency quantiles. The judge uses it robustly
(:meth:`rfs_deploy.drive.stats.Evidence.with_prior`): a baseline that departs from its history
during the release is learnt from its live minutes alone, as without a history.

No history (no provider answer, no data, no baseline, a provider that fails) is None, and then
everything is as it was without one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rfs_deploy.drive.stats import Evidence, Spread
from rfs_deploy.errors import MetricsUnavailable
from rfs_deploy.metrics.base import MetricsProvider, SlotMetrics, SlotSource

#: Seconds of the live slot's history read before the first traffic shift.
HISTORY_SECONDS = 3600


@dataclass(frozen=True)
class BaselineHistory:
    """The live slot's metrics over the hour before the first traffic shift."""

    slot: str
    #: The hour read, [start, end) in epoch seconds (end: the first shift's start).
    start: float
    end: float
    period: int
    #: Minutes of the hour that had request data.
    minutes: float
    requests: int
    errors: int
    rate: float
    #: The beta-binomial intra-period correlation ``rho`` of the periods' 5xx counts, and the
    #: variance inflation ``phi = 1 + (n - 1) rho`` at the hour's mean period of ``n`` requests
    #: (1 and 0 without overdispersion), as :class:`~rfs_deploy.drive.stats.Spread` estimates them.
    correlation: float
    dispersion: float
    #: The median of the periods' p95 and p99 response times in seconds (a bad minute does not
    #: move them); None when the provider had none.
    p95: float | None
    p99: float | None

    @property
    def prior(self) -> tuple[float, float, float]:
        """The history as the sequential test's prior: (requests, errors) over the dispersion
        (counts ``phi`` times as variable as a binomial's carry ``1 / phi`` of its information),
        and the correlation."""
        phi = max(1.0, self.dispersion)
        return self.requests / phi, self.errors / phi, self.correlation

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def history_text(saved: dict[str, Any]) -> str:
    """A saved history (:meth:`BaselineHistory.to_json`, as a record keeps it) in one phrase,
    for ``status`` and the report."""
    p99 = saved.get("p99")
    latency = f", p99 {p99:.3g}s" if isinstance(p99, int | float) else ""
    return (
        f"{int(saved.get('requests', 0)):,} requests over {float(saved.get('minutes', 0)):g} minutes, "
        f"{100 * float(saved.get('rate', 0.0)):.2f} % 5xx, "
        f"dispersion {float(saved.get('dispersion', 1.0)):.2f}{latency}"
    )


def from_periods(
    periods: Sequence[SlotMetrics | None],
    *,
    slot: str,
    start: float,
    end: float,
    period: int,
    p95s: Sequence[float | None] = (),
) -> BaselineHistory | None:
    """The history from the live slot's per-period metrics (None: no period had requests)."""
    spread = Spread()
    p99s: list[float] = []
    for m in periods:
        if m is None or m.unusable or m.requests <= 0 or m.errors > m.requests:
            continue
        spread = spread.add(m.requests, m.errors)
        if m.p99 is not None:
            p99s.append(m.p99)
    if spread.windows == 0 or spread.requests <= 0:
        return None
    return BaselineHistory(
        slot=slot,
        start=start,
        end=end,
        period=period,
        minutes=spread.windows * period / 60,
        requests=spread.requests,
        errors=spread.errors,
        rate=spread.errors / spread.requests,
        correlation=spread.correlation,
        dispersion=spread.dispersion,
        p95=_median([p for p in p95s if p is not None and math.isfinite(p)]),
        p99=_median(p99s),
    )


def read_history(
    provider: MetricsProvider, source: SlotSource, first_shift: float, period: int
) -> BaselineHistory | None:
    """The live slot's hour before ``first_shift``, from one provider request.

    Only a provider with per-period answers (``read_periods``: CloudWatch, the fakes) has a
    history: the rate alone, without the minutes' variation, is not worth an extra request
    (a provider without one, e.g. Prometheus today, gives None). A provider that fails, or has
    no data for the hour, gives None."""
    per_period = getattr(provider, "read_periods", None)
    if per_period is None:
        return None
    end = math.floor(first_shift / period) * period
    start = end - HISTORY_SECONDS
    try:
        found = per_period([source], start, end, period).get(source.slot, [])
    except MetricsUnavailable:
        return None
    return from_periods(
        [p.metrics for p in found],
        slot=source.slot,
        start=start,
        end=end,
        period=period,
        p95s=[p.p95 for p in found],
    )


#: The least 5xx rate a history may pin the baseline to, as a share of ``maxErrorRate``.
RATE_FLOOR = 0.1


def with_history(
    evidence: Evidence | None, history: BaselineHistory | None, max_error_rate: float
) -> Evidence | None:
    """``evidence`` (fresh when None) with ``history`` as its baseline prior; unchanged without a
    history, or when the evidence already has one (it is set once, at the release's first step).

    A history with (almost) no errors does not pin the baseline below :data:`RATE_FLOOR` x
    ``max_error_rate``: over a baseline that served an hour without a 5xx, a canary's handful of
    errors would otherwise count as a regression that the release's own thresholds say is none."""
    if history is None:
        return evidence
    evidence = evidence or Evidence.start()
    if evidence.prior_requests > 0 or evidence.windows > 0:
        return evidence
    requests, errors, correlation = history.prior
    errors = min(requests, max(errors, requests * RATE_FLOOR * max_error_rate))
    return evidence.with_prior(requests, errors, correlation)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
