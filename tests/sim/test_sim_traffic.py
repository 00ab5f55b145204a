"""The traffic model on its own: weighted splits, fail-open, p99, and instance conduct over time."""

from __future__ import annotations

import numpy as np
import pytest

from rfs_deploy.sim.behaviour import conduct
from rfs_deploy.sim.scenario import Behaviour, Latency, SlowStart
from rfs_deploy.sim.traffic import Route, serve, simulate_minute, split_requests


def test_split_follows_weights() -> None:
    rng = np.random.default_rng(0)
    split = split_requests(rng, 100_000, [Route(1.0, {"blue": 70, "green": 30})])
    assert split["blue"] / 100_000 == pytest.approx(0.70, abs=0.01)
    assert split["green"] / 100_000 == pytest.approx(0.30, abs=0.01)


def test_header_rules_take_their_share() -> None:
    rng = np.random.default_rng(1)
    routes = [Route(0.9, {"blue": 100, "green": 0}), Route(0.1, {"green": 100})]
    split = split_requests(rng, 50_000, routes)
    assert split["green"] / 50_000 == pytest.approx(0.1, abs=0.01)


def test_errors_and_p99_follow_the_behaviour() -> None:
    rng = np.random.default_rng(2)
    behaviour = Behaviour(error_rate=0.1, latency=Latency(median=0.1, p99=1.0))
    minute = serve(rng, 20_000, [conduct(behaviour, 10_000)] * 4)
    assert minute.errors / 20_000 == pytest.approx(0.1, abs=0.01)
    assert minute.latency is not None
    assert minute.latency.p99 == pytest.approx(1.0, rel=0.15)
    assert minute.latency.count == pytest.approx(20_000)


def test_unhealthy_group_fails_open_and_empty_group_gives_elb_errors() -> None:
    rng = np.random.default_rng(3)
    never = conduct(Behaviour(never_healthy=True), 10_000)
    result = simulate_minute(rng, 1_000, [Route(1.0, {"a": 50, "b": 50})], {"a": [never]})
    assert result.groups["a"].errors == result.groups["a"].requests > 0
    assert result.elb_errors == 1_000 - result.groups["a"].requests


def test_slow_start_phases() -> None:
    behaviour = Behaviour(
        boot_time=60,
        slow_start=SlowStart(unhealthy_for=180, degraded_for=300, latency_factor=3.0, error_rate=0.05),
    )
    assert conduct(behaviour, 30).state == "initial"
    assert conduct(behaviour, 120).state == "unhealthy"
    degraded = conduct(behaviour, 240)
    assert degraded.state == "healthy" and degraded.error_rate == 0.05
    settled = conduct(behaviour, 400)
    assert settled.error_rate == behaviour.error_rate
    assert degraded.mu > settled.mu
