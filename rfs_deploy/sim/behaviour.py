"""What one instance does at one moment: its health state and how it serves requests.

A pure function of the scenario behaviour of the instance's version, its age and the scenario's
outage of the moment, so the traffic model, the HTTP answers, the target-health answers and the
instance refresh all agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from rfs_deploy.sim.scenario import Behaviour

HealthState = Literal["initial", "healthy", "unhealthy"]

#: z-score of the 99th percentile of a standard normal distribution.
Z99 = 2.3263478740408408


@dataclass(frozen=True)
class Conduct:
    """How an instance serves right now."""

    state: HealthState
    error_rate: float
    #: Log-normal latency parameters (seconds): ``exp(mu)`` is the median.
    mu: float
    sigma: float
    cpu: float
    cpu_noise: float

    @property
    def in_service(self) -> bool:
        return self.state == "healthy"


def conduct(behaviour: Behaviour, age: float, outage: float = 0.0) -> Conduct:
    """The conduct of an instance of ``behaviour`` launched ``age`` seconds ago.

    ``outage``: the 5xx rate a shared outage imposes right now (an upstream down fails every
    version alike; health checks keep passing, as they do when only a dependency is down).
    """
    slow = behaviour.slow_start
    if behaviour.never_healthy:
        state: HealthState = "initial" if age < behaviour.boot_time else "unhealthy"
    elif age < behaviour.boot_time:
        state = "initial"
    elif age < slow.unhealthy_for:
        state = "unhealthy"
    else:
        state = "healthy"
    degraded = age < max(slow.degraded_for, slow.unhealthy_for)
    median = behaviour.latency.median * (slow.latency_factor if degraded else 1.0)
    sigma = math.log(behaviour.latency.p99 / behaviour.latency.median) / Z99
    error_rate = behaviour.error_rate
    cpu = behaviour.cpu
    if degraded:
        error_rate = slow.error_rate if slow.error_rate is not None else error_rate
        cpu = slow.cpu if slow.cpu is not None else cpu
    error_rate = max(error_rate, outage)
    if state != "healthy":
        # A target that is booting or failing its health checks fails what it is sent (the ALB
        # sends it requests only when a whole target group is unhealthy: it fails open).
        error_rate = 1.0
    return Conduct(
        state=state,
        error_rate=error_rate,
        mu=math.log(median),
        sigma=sigma,
        cpu=cpu,
        cpu_noise=behaviour.cpu_noise,
    )
