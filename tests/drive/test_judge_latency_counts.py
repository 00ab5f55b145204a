"""Latency as counts: a slot's requests slower than the threshold, judged like its 5xx.

The rules of a window run the sequential test on the slow-request counts beside the 5xx test; the
p99 comparison is made only for a window without counts (a provider that has none, the window
the threshold is learnt from), and ``maxP99Latency`` stays a hard limit. The driver asks for the
counts against ``analysis.latencyThreshold``, else the baseline history's p95, else the
baseline's p99 in the first window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
from drive_world import NEW, SERVICE, build_world

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.judge import StepJudge
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.drive.rules import Outcome, SlotMetrics, Window, judge, merge
from rfs_deploy.metrics import MetricsProvider, Readings, SlotSource
from rfs_deploy.testing import Behaviour

POLICY = Analysis()  # significance 1 %, p99 limit 2 s, tolerance 1.5x
T = 0.35  # the baseline's p99 in the benchmark's and the sandbox's model


def slot(requests: int, slow: int | None, p99: float = 0.3, threshold: float = T) -> SlotMetrics:
    return SlotMetrics(
        requests, 0, p99=p99, cpu=30.0, slow=slow, slow_threshold=None if slow is None else threshold
    )


def step(windows: Sequence[Window], planned: int | None = None) -> StepJudge:
    """A compared release step fed ``windows`` until it ends (or they run out)."""
    sj = StepJudge(POLICY, baseline=True, windows=planned or len(windows), release=True)
    for window in windows:
        if sj.result is not None:
            break
        sj.observe(window)
    return sj


def test_three_times_the_baselines_share_of_slow_requests_fails_with_a_readable_reason() -> None:
    # a canary of 300 requests a minute, 3 % of them slower than 0.35 s; the baseline 1 %
    window = Window(new=slot(300, 9), baseline=slot(2700, 27))

    sj = step([window] * 10)

    assert sj.result is not None and sj.result.outcome is Outcome.FAIL
    reason = sj.result.reason
    assert "latency: " in reason and "requests slower than 0.35s (3.0%) vs the baseline's 1.0%" in reason
    assert "sequential test p=" in reason
    assert sj.passed < 3  # proven within a few windows, with every request as evidence
    numbers = sj.result.numbers
    assert numbers["latency_threshold"] == T and numbers["slow"] == 9 and numbers["baseline_slow"] == 27
    assert numbers["slow_p_value"] is not None and float(numbers["slow_p_value"]) <= POLICY.significance


def test_the_same_share_as_the_baseline_passes_and_says_so() -> None:
    sj = step([Window(new=slot(300, 3), baseline=slot(2700, 27))] * 5)

    assert sj.result is not None and sj.result.outcome is Outcome.PASS
    assert "1.0% slower than 0.35s" in sj.result.reason


def test_a_p99_far_above_the_baselines_is_not_compared_when_the_counts_are_there() -> None:
    """A p99 over 300 requests is their third largest: with the counts it is no evidence."""
    window = Window(new=slot(300, 3, p99=0.9), baseline=slot(2700, 27, p99=0.35))

    verdict = judge(window, POLICY, baseline=True)

    assert verdict.outcome is Outcome.PASS, verdict.reason
    assert "p99_ratio" not in verdict.numbers


def test_without_counts_the_p99s_are_compared_as_before() -> None:
    window = Window(new=slot(3000, None, p99=0.9), baseline=slot(3000, None, p99=0.35))

    verdict = judge(window, POLICY, baseline=True)

    assert verdict.outcome is Outcome.FAIL
    assert "is 2.57x the baseline's 0.35s" in verdict.reason


def test_counts_against_different_thresholds_are_not_compared() -> None:
    window = Window(new=slot(3000, 300, p99=0.9, threshold=0.2), baseline=slot(3000, 30, p99=0.35))

    verdict = judge(window, POLICY, baseline=True)

    assert "slow_p_value" not in verdict.numbers
    assert "the baseline's 0.35s" in verdict.reason  # the p99 comparison instead


def test_the_absolute_p99_limit_is_still_a_hard_limit() -> None:
    window = Window(new=slot(300, 3, p99=2.5), baseline=slot(2700, 27))

    verdict = judge(window, POLICY, baseline=True)

    assert verdict.outcome is Outcome.FAIL and "p99 2.5s > 2s" in verdict.reason


def test_thin_windows_pool_their_slow_counts() -> None:
    pooled = merge(slot(40, 2), slot(70, 3))
    assert pooled is not None and (pooled.requests, pooled.slow, pooled.slow_threshold) == (110, 5, T)
    mixed = merge(slot(40, 2), slot(70, None))
    assert mixed is not None and mixed.slow is None and mixed.slow_threshold is None


# --------------------------------------------------------------------------- simulated releases


def release(rng: np.random.Generator, new_share: float, base_share: float, rpm: int) -> Outcome:
    """A canary 10 % → 90 % in steps of 10, one window a minute, slow counts binomial."""
    evidence = None
    for weight in range(10, 100, 10):
        sj = StepJudge(POLICY, baseline=True, windows=1, evidence=evidence, release=True)
        while sj.result is None:
            total = int(rng.normal(rpm, 0.05 * rpm))
            new = int(rng.binomial(total, weight / 100))
            base = total - new
            window = Window(
                new=slot(new, int(rng.binomial(new, new_share))),
                baseline=slot(base, int(rng.binomial(base, base_share))),
            )
            sj.observe(window)
        evidence = sj.evidence
        if sj.result.outcome is not Outcome.PASS:
            return sj.result.outcome
    return Outcome.PASS


# With the threshold at the baseline's p95 (the benchmark's log-normal, median 80 ms, p99 350 ms),
# 5 % of the baseline's requests are slow and 10.9 % of a version whose whole distribution is
# 30 % slower.
P95_SHARE, SLOWER_SHARE = 0.05, 0.109


def test_a_whole_distribution_30_percent_slower_is_caught_at_200_requests_a_minute() -> None:
    rng = np.random.default_rng(15)
    outcomes = [release(rng, SLOWER_SHARE, P95_SHARE, 200) for _ in range(60)]

    assert outcomes.count(Outcome.FAIL) >= 54  # at least 90 %; a p99 comparison caught a quarter


def test_a_healthy_release_is_not_rolled_back_for_its_slow_requests() -> None:
    rng = np.random.default_rng(16)
    outcomes = [release(rng, P95_SHARE, P95_SHARE, 200) for _ in range(200)]

    assert outcomes.count(Outcome.FAIL) <= 4  # the test's bound is 1 % per release


# --------------------------------------------------------------------------- the driver's threshold


class CountingSlow:
    """The fake provider with slow counts: each slot's share of slow requests as its version's
    behaviour says (``shares`` by version), against the threshold the driver asked for."""

    name = "counting"

    def __init__(self, inner: MetricsProvider, shares: dict[str, float]) -> None:
        self.inner = inner
        self.shares = shares
        self.thresholds: list[float | None] = []

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        found = self.inner.read(sources, start, end, period)
        self.thresholds.append(sources[0].latency_threshold)
        slots: dict[str, SlotMetrics | None] = {}
        for source in sources:
            m = found.slots.get(source.slot)
            if m is None or source.latency_threshold is None:
                slots[source.slot] = m
                continue
            share = self.shares.get(source.version or "", 0.01)
            slow = round(m.requests * share)
            slots[source.slot] = SlotMetrics(
                m.requests, m.errors, m.p99, m.cpu, slow=slow, slow_threshold=source.latency_threshold
            )
        return Readings(slots, partial=found.partial)


def deploy(
    shares: dict[str, float], analysis: dict[str, object] | None = None
) -> tuple[DeploymentRecord, CountingSlow]:
    world = build_world({NEW: Behaviour(p99=0.3)})
    seams = world.seams()
    provider = CountingSlow(seams.metrics, shares)
    seams.metrics = provider
    overrides: dict[str, object] = {"strategy": {"steps": [10, 30, 50]}}
    if analysis:
        overrides["analysis"] = analysis
    record = asyncio.run(Driver(seams).deploy(SERVICE, NEW, "canary", overrides))
    return record, provider


def test_the_configured_threshold_is_asked_for_from_the_first_window() -> None:
    record, provider = deploy({NEW: 0.01}, {"latencyThreshold": 0.42})

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert provider.thresholds and all(t == 0.42 for t in provider.thresholds)


def test_a_version_with_more_slow_requests_than_its_baseline_is_rolled_back_by_the_counts() -> None:
    record, _ = deploy({NEW: 0.06}, {"latencyThreshold": 0.42})

    assert record.status is DeploymentStatus.ROLLED_BACK
    reasons = [v.reason for v in record.verdicts if v.outcome == "FAIL"]
    assert any("requests slower than 0.42s" in r for r in reasons), reasons


def test_without_config_or_history_the_threshold_is_the_baselines_first_p99() -> None:
    from rfs_deploy.drive.analysis import Analyst

    analyst = Analyst.__new__(Analyst)
    analyst.policy = Analysis()
    analyst._learnt_threshold = None
    assert analyst.latency_threshold() is None
    analyst._learn_threshold(slot(900, None, p99=0.37))
    assert analyst.latency_threshold() == 0.37
    analyst._learn_threshold(slot(900, None, p99=0.9))  # learnt once
    assert analyst.latency_threshold() == 0.37
    analyst.__dict__["history"] = SimpleNamespace(p95=0.2, p99=0.35)  # the baseline's hour
    assert analyst.latency_threshold() == 0.2  # the history's p95 first
    analyst.policy = Analysis(latencyThreshold=0.5)  # type: ignore[call-arg]
    assert analyst.latency_threshold() == 0.5  # the config above all
