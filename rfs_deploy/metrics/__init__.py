"""Metrics providers behind one seam: the analysis asks for slot metrics over a window and any
provider answers in the same terms.

- :mod:`~rfs_deploy.metrics.base` — the seam: :class:`MetricsProvider`, :class:`SlotSource`,
  :class:`Readings`, :class:`SlotMetrics` and the shared per-period :func:`aggregate`.
- :mod:`~rfs_deploy.metrics.definitions` — the CloudWatch metrics the provider, the alarms and
  the sandbox share (namespace, name, statistic, dimensions), defined once.
- :mod:`~rfs_deploy.metrics.cloudwatch` — CloudWatch GetMetricData, one request per tick (the
  default).
- :mod:`~rfs_deploy.metrics.prometheus` — a Prometheus server's HTTP query API (self-hosted or
  Amazon Managed Service for Prometheus).

A provider is chosen per service by ``analysis.metrics.provider`` (:func:`provider_for`). The
provider raises :class:`rfs_deploy.errors.MetricsUnavailable` when it cannot answer; the analysis
counts that window as a failed fetch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rfs_deploy.errors import InvalidInput
from rfs_deploy.metrics.base import (
    MetricsProvider,
    Readings,
    SlotMetrics,
    SlotSource,
    aggregate,
    slot_sources,
)

if TYPE_CHECKING:
    from rfs_deploy.config.model import MetricsSettings


def provider_for(settings: MetricsSettings, cloudwatch: MetricsProvider) -> MetricsProvider:
    """The provider a service's ``analysis.metrics`` names.

    ``cloudwatch`` is the one the seams hold (``cloudwatch``: built once over the driver's AWS
    session, or the sandbox's, or a test's fake); any other provider is built from its settings.
    """
    if settings.provider == "cloudwatch":
        return cloudwatch
    if settings.provider == "prometheus":
        # imported here: a CloudWatch user never loads the HTTP client Prometheus is asked with
        from rfs_deploy.metrics.prometheus import PrometheusProvider

        return PrometheusProvider(settings)
    raise InvalidInput(f"unknown metrics provider {settings.provider!r}")  # pragma: no cover


__all__ = [
    "MetricsProvider",
    "Readings",
    "SlotMetrics",
    "SlotSource",
    "aggregate",
    "provider_for",
    "slot_sources",
]
