"""Shared incidents and firing alarms in a compared release step: a baseline failing with the
canary holds the step, a canary worse than its baseline still fails, a lone burst is confirmed."""

from __future__ import annotations

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.judge import StepJudge
from rfs_deploy.drive.rules import Outcome, Window
from rfs_deploy.metrics.base import SlotMetrics

POLICY = Analysis()


def slot(requests: int, errors: int = 0) -> SlotMetrics:
    return SlotMetrics(requests=requests, errors=errors, p99=0.2, cpu=40.0)


def release_step(windows: int = 3) -> StepJudge:
    return StepJudge(POLICY, baseline=True, windows=windows, release=True)


def test_a_baseline_failing_with_the_canary_holds_the_step_and_judging_resumes_after() -> None:
    step = release_step(windows=2)
    assert step.observe(Window(slot(100, 1), slot(900, 4))).outcome is Outcome.PASS
    held = step.observe(Window(slot(100, 50), slot(900, 450)))  # both slots at 50 %
    assert held.outcome is Outcome.INCONCLUSIVE and held.reason.startswith("shared incident")
    assert "holding the weight until the baseline recovers" in held.reason
    assert step.result is None and step.incident == 1
    # the incident's minutes are set aside: the sequential test saw only the healthy windows
    assert step.evidence is not None and step.evidence.new_requests == 100
    assert step.observe(Window(slot(100, 0), slot(900, 5))).outcome is Outcome.PASS
    assert step.result is not None and step.result.outcome is Outcome.PASS
    assert step.result.numbers["windows_incident"] == 1


def test_a_canary_worse_than_its_failing_baseline_is_still_rolled_back() -> None:
    step = release_step()
    verdict = step.observe(Window(slot(100, 90), slot(900, 90)))  # 90 % against 10 %
    assert verdict.outcome is Outcome.FAIL and "sequential test" in verdict.reason
    assert step.result is not None and step.result.outcome is Outcome.FAIL


def test_an_alarm_while_the_baseline_fails_too_is_held() -> None:
    step = release_step()
    window = Window(slot(100, 50), slot(900, 450))
    step.observe(window)
    weighed = step.alarm("api-green-5xx", window)
    assert weighed.outcome is Outcome.INCONCLUSIVE and "shared incident" in weighed.reason
    assert step.result is None


def test_an_alarm_over_a_healthy_baseline_rolls_back_binomial_traffic_at_once() -> None:
    step = release_step()
    window = Window(slot(100, 7), slot(900, 4))
    step.observe(window)
    if step.result is None:
        assert step.alarm("api-green-5xx", window).outcome is Outcome.FAIL
    assert step.result is not None and step.result.outcome is Outcome.FAIL


def test_a_lone_burst_over_a_healthy_baseline_of_bursty_traffic_is_confirmed_first() -> None:
    step = release_step(windows=20)
    # bursty minutes on both slots, so their dispersion is estimated above a binomial's
    for errors in (0, 9, 0, 1, 0, 12, 1, 0):
        step.observe(Window(slot(100, 0), slot(900, errors * 3)))
    assert step.evidence is not None and step.evidence.base_spread.dispersion > 1.0
    # 19 of 200: beyond chance of 5 % (p = 0.006), under the hard limit of 10 %
    burst = Window(slot(200, 19), slot(1800, 8))
    first = step.observe(burst)
    assert first.outcome is Outcome.INCONCLUSIVE and "confirming with the next" in first.reason
    weighed = step.alarm("api-green-5xx", burst)
    assert weighed.outcome is Outcome.INCONCLUSIVE and step.result is None
    step.observe(burst)
    if step.result is None:
        step.alarm("api-green-5xx", burst)
    assert step.result is not None and step.result.outcome is Outcome.FAIL
