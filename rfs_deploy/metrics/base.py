"""The provider-neutral metrics seam: what the analysis asks for and what a provider answers.

The analysis asks one question per tick: *the metrics of these slots over [start, end)*. A
provider (:mod:`rfs_deploy.metrics.cloudwatch`, :mod:`rfs_deploy.metrics.prometheus`, the fakes
of :mod:`rfs_deploy.testing`) answers with one :class:`SlotMetrics` per slot, or None for a
slot it had no request data for, and says whether the answer was partial. It raises
:class:`~rfs_deploy.errors.MetricsUnavailable` when it cannot answer at all. Nothing here knows
a query language: each provider owns its own queries, batching and aggregation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from rfs_deploy.config.model import ReleaseState, SlotName
    from rfs_deploy.outputs import ServiceOutputs


@dataclass(frozen=True)
class SlotMetrics:
    """One slot's aggregates over one window (errors are the slot's 5xx responses).

    A metric given as NaN, infinite (or negative) is no data: it is kept out of the fields
    (``p99`` and ``cpu`` become None, counts 0) and named in :attr:`unusable`, and a window whose
    new slot has any is judged INCONCLUSIVE — never compared, so never passed.
    """

    requests: int
    errors: int
    #: p99 target response time in seconds; None when the provider had none.
    p99: float | None = None
    #: Average CPU percent over the slot's fleet; None when unknown.
    cpu: float | None = None
    #: The metrics that came as a NaN, infinite or negative value, e.g. ``("p99 nan",)``: no data.
    unusable: tuple[str, ...] = ()
    #: Requests slower than :attr:`slow_threshold` seconds; None when the provider was not asked
    #: for them or could not count them (the judge then compares p99s).
    slow: int | None = None
    slow_threshold: float | None = None

    def __post_init__(self) -> None:
        found = list(self.unusable)
        for name in ("requests", "errors", "p99", "cpu", "slow"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                found.append(f"{name} {value}")
                object.__setattr__(self, name, 0 if name in ("requests", "errors") else None)
        if self.slow is not None and self.slow_threshold is None:
            raise ValueError("a slow-request count needs the threshold it counts against")
        if self.slow is not None and self.slow > self.requests:
            # a trimmed count is an interpolated estimate: never more slow requests than requests
            object.__setattr__(self, "slow", self.requests)
        if len(found) != len(self.unusable):
            object.__setattr__(self, "unusable", tuple(dict.fromkeys(found)))

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None


@dataclass(frozen=True)
class SlotSource:
    """Where one slot's metrics are found: everything a provider may select them by.

    Built from the stack's outputs (:func:`slot_sources`); a provider uses
    what its backend knows (CloudWatch: the dimensions and the group name; Prometheus: labels
    substituted into the configured queries)."""

    service: str
    #: ``blue`` or ``green``.
    slot: SlotName
    #: The version the slot runs, None when the slot is empty.
    version: str | None
    #: CloudWatch's ``LoadBalancer`` dimension, ``app/<name>/<id>``.
    load_balancer: str
    #: CloudWatch's ``TargetGroup`` dimension, ``targetgroup/<name>/<id>``.
    target_group: str
    target_group_arn: str
    asg_name: str
    #: Seconds above which a request counts as slow (:attr:`SlotMetrics.slow`); None: do not count.
    latency_threshold: float | None = None


def slot_sources(
    service: str,
    outputs: ServiceOutputs,
    slots: Sequence[SlotName],
    release: ReleaseState | None = None,
    latency_threshold: float | None = None,
) -> list[SlotSource]:
    """The sources of ``slots`` of one service (each slot once, in the order given); the
    versions come from ``release`` (None: unknown), and the slow requests are counted against
    ``latency_threshold`` (None: not counted)."""
    sources: list[SlotSource] = []
    for slot in dict.fromkeys(slots):
        out = outputs.slot(slot)
        sources.append(
            SlotSource(
                service=service,
                slot=slot,
                version=release.slot(slot).version if release is not None else None,
                load_balancer=outputs.load_balancer_dimension,
                target_group=out.target_group_dimension,
                target_group_arn=out.target_group_arn,
                asg_name=out.asg_name,
                latency_threshold=latency_threshold,
            )
        )
    return sources


@dataclass(frozen=True)
class Readings:
    """A provider's answer for one window: each slot asked for, by name."""

    slots: Mapping[str, SlotMetrics | None]
    #: True when the provider said some of the data is not in yet (CloudWatch's PartialData).
    partial: bool = False


@dataclass(frozen=True)
class Period:
    """One period of one slot, for a provider's per-period answer (``read_periods``: the
    baseline's history before a release). ``p95`` when the provider was asked for it."""

    at: float
    metrics: SlotMetrics
    p95: float | None = None


@runtime_checkable
class MetricsProvider(Protocol):
    """Slot metrics for a window, from one metrics backend."""

    #: The provider's name as configured (``cloudwatch``, ``prometheus``), used in reasons.
    name: str

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        """The metrics of every slot of ``sources`` over [start, end), made of whole ``period``
        second steps (one backend request per call wherever the backend allows it).

        A slot without request data is None in :attr:`Readings.slots`. Raises
        :class:`~rfs_deploy.errors.MetricsUnavailable` when the backend cannot be asked or
        answers with an error (after the provider's own retries).
        """
        ...


def aggregate(
    requests: Sequence[float] | None,
    errors: Sequence[float] | None,
    p99: Sequence[float] | None,
    cpu: Sequence[float] | None,
    slow: Sequence[float] | None = None,
    slow_threshold: float | None = None,
) -> SlotMetrics | None:
    """One slot's window from per-period values: counts summed, the worst period's p99, the mean
    CPU. None when there were no request values at all.

    ``slow`` are the per-period counts of requests slower than ``slow_threshold`` (None: not
    asked for). As for errors, a missing or empty series next to request data is no slow request
    (CloudWatch has no response-time datapoint for a period without a response); each period's
    count is rounded, a trimmed count being an interpolated estimate.

    A missing or empty error series next to request data is zero errors (ALBs publish their 5xx
    count only for periods that had one; a Prometheus rate over a counter that never moved has no
    samples). A metric with a NaN or infinite value (or sum) is no data: it is named in
    ``unusable`` and never compared.
    """
    if not requests:
        return None
    unusable: list[str] = []

    def combined(
        kind: str, values: Sequence[float] | None, how: Callable[[Sequence[float]], float]
    ) -> float | None:
        if not values:
            return None
        odd = next((v for v in values if not math.isfinite(v)), None)
        value = how(values) if odd is None else odd
        if not math.isfinite(value):  # a NaN or infinite value, or a sum beyond floats
            # (negative values are SlotMetrics' to refuse)
            unusable.append(f"{kind} {value}")
            return None
        return value

    total = combined("requests", requests, sum)
    failed = combined("errors", errors, sum)
    slower: float | None = None
    if slow_threshold is not None:
        slower = combined("slow", slow, lambda v: sum(round(x) for x in v)) if slow else 0.0
    return SlotMetrics(
        requests=int(total or 0),
        errors=int(failed or 0),
        p99=combined("p99", p99, max),
        cpu=combined("cpu", cpu, lambda v: sum(v) / len(v)),
        unusable=tuple(unusable),
        slow=None if slower is None else int(slower),
        slow_threshold=None if slower is None else slow_threshold,
    )
