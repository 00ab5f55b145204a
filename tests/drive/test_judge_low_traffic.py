"""Release steps on low traffic: thin windows pooled within and across steps, a significant breach
on few requests, and an undecided step ending as ``analysis.onInconclusive`` says."""

from __future__ import annotations

import pytest

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.judge import LEANING_EXTENSION, StepJudge
from rfs_deploy.drive.rules import Outcome, Window, alarm_min_requests, thin_breach
from rfs_deploy.metrics.base import SlotMetrics

POLICY = Analysis()


def slot(requests: int, errors: int = 0, p99: float | None = 0.2) -> SlotMetrics:
    return SlotMetrics(requests=requests, errors=errors, p99=p99, cpu=40.0)


def run(step: StepJudge, windows: list[Window]) -> None:
    for window in windows:
        if step.result is not None:
            break
        step.observe(window)


def test_a_thin_threshold_only_step_pools_its_windows_and_passes_on_the_pool() -> None:
    step = StepJudge(POLICY, baseline=False, windows=1, release=True)
    run(step, [Window(slot(40)) for _ in range(6)])
    assert step.result is not None and step.result.outcome is Outcome.PASS
    assert step.result.numbers["pooled_requests"] == 120 and step.result.numbers["windows_inconclusive"] == 2


@pytest.mark.parametrize(
    ("setting", "outcome", "words"),
    [
        ("pause", Outcome.INCONCLUSIVE, "waiting for a person"),
        ("rollback", Outcome.FAIL, "not enough data"),
        ("promote", Outcome.PASS, "promoted, as analysis.onInconclusive says"),
    ],
)
def test_an_undecided_threshold_only_step_ends_as_on_inconclusive_says(
    setting: str, outcome: Outcome, words: str
) -> None:
    policy = Analysis(on_inconclusive=setting)  # type: ignore[arg-type]
    step = StepJudge(policy, baseline=False, windows=1, release=True)
    run(step, [Window(slot(5)) for _ in range(20)])
    assert step.result is not None and step.result.outcome is outcome and words in step.result.reason
    assert "30 requests pooled (need 100)" in step.result.reason


def test_outside_a_release_thin_windows_still_fail_for_not_enough_data() -> None:
    step = StepJudge(POLICY, baseline=False, windows=1)
    run(step, [Window(slot(5)) for _ in range(20)])
    assert step.result is not None and step.result.outcome is Outcome.FAIL
    assert "not enough data" in step.result.reason


def test_a_clean_thin_compared_step_advances_and_hands_its_pool_on() -> None:
    base = slot(45)
    first = StepJudge(POLICY, baseline=True, windows=1, release=True)
    run(first, [Window(slot(5), base) for _ in range(6)])
    assert first.result is not None and first.result.outcome is Outcome.PASS
    assert first.result.reason.startswith("advancing on thin data")
    assert first.pool is not None and first.pool.new is not None and first.pool.new.requests == 30
    evidence = first.evidence
    second = StepJudge(POLICY, baseline=True, windows=1, evidence=evidence, release=True, pool=first.pool)
    verdict = second.observe(Window(slot(80), slot(320)))
    assert verdict.outcome is Outcome.PASS and verdict.numbers["pooled_requests"] == 110


def test_a_thin_step_the_evidence_leans_against_is_extended_then_paused() -> None:
    # the canary errs in every other window, the baseline never (a 10 % share)
    step = StepJudge(POLICY, baseline=True, windows=1, release=True)
    windows = [Window(slot(5, 1 if i % 2 == 0 else 0), slot(45)) for i in range(100)]
    run(step, windows)
    assert step.result is not None
    # the sequential test rejects while the step is extended, or the step pauses at the extension's end
    assert step.result.outcome in (Outcome.FAIL, Outcome.INCONCLUSIVE)
    assert len(step.verdicts) > POLICY.max_inconclusive + 1
    assert len(step.verdicts) <= LEANING_EXTENSION * (POLICY.max_inconclusive + 1)


def test_a_significant_breach_on_few_requests_fails_and_one_error_in_five_does_not() -> None:
    assert thin_breach(slot(5, 1), POLICY) is None
    breach = thin_breach(slot(40, 20), POLICY)
    assert breach is not None and "over only 40 requests" in breach
    step = StepJudge(POLICY, baseline=False, windows=1, release=True)
    assert step.observe(Window(slot(40, 20))).outcome is Outcome.FAIL


def test_the_alarms_minimum_request_count_makes_three_errors_no_breach() -> None:
    assert alarm_min_requests(Analysis()) == 50  # half minRequests: 3 errors of 50 are 6 %
    assert alarm_min_requests(Analysis(max_error_rate=0.2)) == 15  # 3 errors of 15 are 20 %, not above
    assert alarm_min_requests(Analysis(min_requests=10, max_error_rate=0.01)) == 5


FEW = Analysis(min_requests=10)  # a user's minRequests for a 1 % first step at 1,000 requests/min


def test_one_error_among_ten_requests_holds_the_weight_and_its_alarm_is_within_chance() -> None:
    step = StepJudge(FEW, baseline=True, windows=3, release=True)
    window = Window(slot(10, 1), slot(990, 5))  # 10 % of ten requests over a 0.5 % baseline
    held = step.observe(window)
    assert held.outcome is Outcome.INCONCLUSIVE
    assert held.reason == (
        "error rate 10.00% > 5.00%, within chance of 5.00% (1 error(s) among 10 requests): holding the weight"
    )
    weighed = step.alarm("api-green-5xx", window)
    assert weighed.outcome is Outcome.INCONCLUSIVE and step.result is None
    assert (
        "on 1 error(s) among 10 requests, within chance of 5.00%: the sequential test decides"
        in weighed.reason
    )
    run(step, [Window(slot(10, 0), slot(990, 5))] * 3)
    assert step.result is not None and step.result.outcome is Outcome.PASS


def test_breaches_within_chance_in_a_row_are_pooled_until_they_are_beyond_it() -> None:
    step = StepJudge(FEW, baseline=True, windows=10, release=True)
    reasons = []
    for _ in range(4):
        if step.result is not None:
            break
        reasons.append(step.observe(Window(slot(10, 2), slot(990, 5))).reason)
    assert "(2 error(s) among 10 requests)" in reasons[0]  # p = 0.09 at 5 %
    assert step.result is not None and step.result.outcome is Outcome.FAIL
    assert len(reasons) <= 3  # 6 of 30 (p = 0.003) at the latest, or the sequential test first


def test_an_alarm_on_few_requests_beyond_chance_rolls_back_at_once() -> None:
    step = StepJudge(FEW, baseline=True, windows=3, release=True)
    window = Window(slot(10, 5), slot(990, 5))  # 5 of 10: p < 0.0001 at 5 %
    step.observe(window)
    if step.result is None:
        assert step.alarm("api-green-5xx", window).outcome is Outcome.FAIL
    assert step.result is not None and step.result.outcome is Outcome.FAIL
