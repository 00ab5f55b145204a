"""Metrics providers behind one seam: the analysis asks for slot metrics over a window and any
provider answers in the same terms.

- :mod:`~rfs_deploy.metrics.base` — the seam: :class:`MetricsProvider`, :class:`SlotSource`,
  :class:`Readings`, :class:`SlotMetrics` and the shared per-period :func:`aggregate`.
- :mod:`~rfs_deploy.metrics.prometheus` — a Prometheus server's HTTP query API (self-hosted or
  Amazon Managed Service for Prometheus).

A provider is chosen per service by ``analysis.metrics.provider``. The provider raises
:class:`rfs_deploy.errors.MetricsUnavailable` when it cannot answer; the analysis counts that
window as a failed fetch.
"""

from rfs_deploy.metrics.base import MetricsProvider, Readings, SlotMetrics, SlotSource, aggregate

__all__ = ["MetricsProvider", "Readings", "SlotMetrics", "SlotSource", "aggregate"]
