"""Figures that sum a deployment up (the seed's DeploymentMetrics), computed from its samples."""

from __future__ import annotations

from dataclasses import dataclass

from rfs_deploy.drive.records import DeploymentRecord


@dataclass(frozen=True)
class Summary:
    requests: int
    errors: int
    success_rate: float
    error_rate: float
    #: Worst p99 seen on the new version's slot, seconds.
    p99_latency: float
    cpu_usage: float
    instance_count: int
    healthy_instances: int


def summarize(record: DeploymentRecord) -> Summary:
    """Totals over every analysis sample of the slot that received the new version."""
    requests = errors = 0
    p99 = 0.0
    cpus: list[float] = []
    for sample in record.samples:
        numbers = sample.slots.get(sample.new_slot)
        if not numbers:
            continue
        requests += int(numbers.get("requests") or 0)
        errors += int(numbers.get("errors") or 0)
        p99 = max(p99, float(numbers.get("p99") or 0.0))
        if numbers.get("cpu") is not None:
            cpus.append(float(numbers["cpu"] or 0.0))
    error_rate = errors / requests if requests else 0.0
    return Summary(
        requests=requests,
        errors=errors,
        success_rate=1.0 - error_rate if requests else 0.0,
        error_rate=error_rate,
        p99_latency=p99,
        cpu_usage=sum(cpus) / len(cpus) if cpus else 0.0,
        instance_count=record.instance_count,
        healthy_instances=record.healthy_instances,
    )
