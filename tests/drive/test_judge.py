"""The step judge: a step of windows, the rules of a compared step, and the statistics under them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.judge import MAX_HOLDS, StepJudge, planned_windows
from rfs_deploy.drive.rules import Outcome, Verdict, Window
from rfs_deploy.drive.stats import (
    Evidence,
    binom_cdf,
    binom_sf,
    chi2_sf_1df,
    hold_level,
    sample_ratio,
    threshold,
)
from rfs_deploy.metrics.base import SlotMetrics

POLICY = Analysis()  # 5 % errors, p99 2 s, CPU 90 %, 100 requests, significance 0.01, tolerance 1.5


def slot(requests: int, errors: int = 0, p99: float | None = 0.2, cpu: float | None = 40.0) -> SlotMetrics:
    return SlotMetrics(requests=requests, errors=errors, p99=p99, cpu=cpu)


# --------------------------------------------------------------------------- step


GOOD = Window(slot(2000, 10))
BAD = Window(slot(2000, 200))
THIN = Window(slot(20))
NONE = Window(None)
PARTIAL = Window(slot(2000, 10), partial=True)
ERR = "error"

STEPS = [
    # (id, policy, planned windows, events, outcome or None while running, words)
    ("passes after planned windows", Analysis(), 3, [GOOD, GOOD, GOOD], Outcome.PASS, "3 window(s) passed"),
    ("still running", Analysis(), 3, [GOOD, GOOD], None, ""),
    (
        "first failure ends it",
        Analysis(),
        3,
        [GOOD, BAD],
        Outcome.FAIL,
        "1 failed window(s): error rate 10.00%",
    ),
    ("failure limit 2 tolerates one", Analysis(failure_limit=2), 2, [BAD, GOOD, GOOD], Outcome.PASS, ""),
    ("failure limit 2 reached", Analysis(failure_limit=2), 3, [BAD, GOOD, BAD], Outcome.FAIL, "2 failed"),
    ("inconclusive extends the step", Analysis(), 2, [THIN, GOOD, NONE, GOOD], Outcome.PASS, ""),
    ("extension still running", Analysis(), 2, [THIN, GOOD, NONE], None, ""),
    (
        "too many thin windows",
        Analysis(max_inconclusive=2),
        2,
        [THIN, GOOD, THIN, THIN],
        Outcome.FAIL,
        "not enough data: 3 inconclusive windows (limit 2): only 20 requests (need 100)",
    ),
    (
        "too many windows in a row without data",
        Analysis(max_inconclusive=2),
        2,
        [GOOD, NONE, PARTIAL, NONE],
        Outcome.FAIL,
        "not enough data: 3 windows in a row without data (limit 2): no data for the new slot",
    ),
    (
        "scattered missing data only extends the step",
        Analysis(max_inconclusive=2),
        3,
        [NONE, GOOD, NONE, PARTIAL, GOOD, NONE, NONE, GOOD],
        Outcome.PASS,
        "",
    ),
    (
        "thin and missing windows are limited separately",
        Analysis(max_inconclusive=2),
        2,
        [THIN, NONE, THIN, NONE, GOOD],
        None,
        "",
    ),
    ("no inconclusive allowed", Analysis(max_inconclusive=0), 1, [THIN], Outcome.FAIL, "not enough data"),
    (
        "fetch errors in a row",
        Analysis(consecutive_error_limit=3),
        3,
        [GOOD, ERR, ERR, ERR],
        Outcome.FAIL,
        "3 metric fetch errors in a row: metrics unavailable: throttled",
    ),
    (
        "scattered fetch errors",
        Analysis(consecutive_error_limit=2),
        3,
        [ERR, GOOD, ERR, GOOD, ERR, GOOD],
        Outcome.PASS,
        "",
    ),
    ("errors do not count as inconclusive", Analysis(max_inconclusive=0), 1, [ERR, GOOD], Outcome.PASS, ""),
    ("flaky mix", Analysis(), 3, [NONE, GOOD, ERR, PARTIAL, GOOD, THIN, ERR, GOOD], Outcome.PASS, ""),
]


@pytest.mark.parametrize(
    ("policy", "windows", "events", "outcome", "words"), [s[1:] for s in STEPS], ids=[s[0] for s in STEPS]
)
def test_step(
    policy: Analysis, windows: int, events: list[Window | str], outcome: Outcome | None, words: str
) -> None:
    step = StepJudge(policy, baseline=False, windows=windows)
    for event in events:
        if isinstance(event, str):
            step.fetch_failed("throttled")
        else:
            step.observe(event)
    if outcome is None:
        assert step.result is None
        return
    assert step.result is not None
    assert step.result.outcome is outcome
    assert words in step.result.reason
    assert step.result.numbers["windows_planned"] == windows
    with pytest.raises(RuntimeError):
        step.observe(GOOD)


def test_step_records_every_verdict_and_counts() -> None:
    step = StepJudge(POLICY, baseline=False, windows=2)
    step.observe(THIN)
    step.fetch_failed("timeout")
    step.observe(GOOD)
    step.observe(GOOD)
    assert [v.outcome for v in step.verdicts] == [
        Outcome.INCONCLUSIVE,
        Outcome.INCONCLUSIVE,
        Outcome.PASS,
        Outcome.PASS,
    ]
    assert step.result is not None
    n = step.result.numbers
    assert (n["windows_passed"], n["windows_inconclusive"], n["fetch_errors"]) == (2, 1, 1)


def test_evidence_carries_across_steps() -> None:
    """A 1 % canary over a 0.5 % baseline: each step alone stays below the bound, the release does not."""
    window = Window(slot(1000, 10), slot(9000, 45))
    fresh = [StepJudge(POLICY, baseline=True, windows=1) for _ in range(6)]
    assert all(s.observe(window).outcome is Outcome.PASS for s in fresh)
    evidence = None
    outcomes = []
    for _ in range(6):
        step = StepJudge(POLICY, baseline=True, windows=1, evidence=evidence)
        while step.result is None:  # the step may hold its weight while the evidence leans
            step.observe(window)
        outcomes.append(step.result.outcome)
        evidence = step.evidence
    assert Outcome.FAIL in outcomes
    assert evidence is not None and evidence.rejects(0.01)


# --------------------------------------------------------------------------- rules of a compared step

BASE_900 = slot(900, 4, p99=0.35)


def observe_all(step: StepJudge, windows: list[Window]) -> list[Verdict]:
    return [step.observe(w) for w in windows]


def test_thin_windows_are_carried_into_the_next_when_comparing() -> None:
    step = StepJudge(POLICY, baseline=True, windows=1)
    first, second = observe_all(step, [Window(slot(60, 0), BASE_900), Window(slot(60, 0), BASE_900)])
    assert first.outcome is Outcome.INCONCLUSIVE and "only 60 requests (need 100)" in first.reason
    assert (
        second.outcome is Outcome.PASS
        and "over 120 requests (with the thin windows before it)" in second.reason
    )
    assert second.numbers["requests"] == 60 and second.numbers["pooled_requests"] == 120
    assert step.evidence is not None and step.evidence.new_requests == 120  # each window counted once


def test_carried_counts_meet_the_thresholds() -> None:
    step = StepJudge(POLICY, baseline=True, windows=1)
    verdicts = observe_all(step, [Window(slot(60, 4), BASE_900), Window(slot(60, 3), BASE_900)])
    assert [v.outcome for v in verdicts] == [Outcome.INCONCLUSIVE, Outcome.FAIL]
    assert "error rate 5.83% > 5.00%" in verdicts[1].reason


def test_thin_windows_stay_thin_without_a_baseline() -> None:
    """Thresholds alone: every window must reach min_requests by itself (never a pass on less)."""
    step = StepJudge(POLICY, baseline=False, windows=1)
    verdicts = observe_all(step, [Window(slot(60)) for _ in range(6)])
    assert all(v.outcome is Outcome.INCONCLUSIVE for v in verdicts)
    assert step.result is not None and "not enough data" in step.result.reason


BASE_1800 = slot(1800, 9, p99=0.4)
SLOW_THIN = Window(slot(200, 1, p99=0.8), BASE_1800)


@pytest.mark.parametrize(
    ("windows", "outcomes", "words"),
    [
        ([SLOW_THIN, SLOW_THIN], ["INCONCLUSIVE", "FAIL"], "2.00x the baseline's"),
        (
            [SLOW_THIN, Window(slot(200, 1, p99=0.45), slot(1800, 9, p99=0.4))],
            ["INCONCLUSIVE", "PASS"],
            "p99 0.45s",
        ),
        ([SLOW_THIN, Window(None), SLOW_THIN], ["INCONCLUSIVE", "INCONCLUSIVE", "FAIL"], "2.00x"),
        ([Window(slot(2000, 10, p99=0.8), slot(18_000, 90, p99=0.4))], ["FAIL"], "2.00x the baseline's"),
    ],
    ids=["repeats", "does not repeat", "no data between", "thick tails fail at once"],
)
def test_a_p99_on_a_thin_tail_must_repeat(windows: list[Window], outcomes: list[str], words: str) -> None:
    step = StepJudge(POLICY, baseline=True, windows=1)
    verdicts = observe_all(step, windows)
    assert [v.outcome.value for v in verdicts] == outcomes
    assert words in verdicts[-1].reason
    if len(windows) > 1:
        assert "on a thin tail (200 requests): confirming over the next window" in verdicts[0].reason
    assert step.result is not None and step.result.numbers["windows_held"] == (len(windows) > 1)


LEANING = Window(slot(1000, 12), slot(9000, 45))  # likelihood ratio about 12: above 10, below 100
STILL_LEANING = Window(slot(1000, 8), slot(9000, 45))


def test_the_weight_is_held_while_the_evidence_leans_against_the_new_version() -> None:
    step = StepJudge(POLICY, baseline=True, windows=1)
    verdicts = observe_all(step, [LEANING, STILL_LEANING, STILL_LEANING])
    assert [v.outcome for v in verdicts] == [Outcome.INCONCLUSIVE, Outcome.INCONCLUSIVE, Outcome.PASS]
    assert (
        "holding this weight: the sequential test leans against the new version (p=0.08" in verdicts[0].reason
    )
    assert step.result is not None and step.result.passed
    n = step.result.numbers
    assert (n["windows_held"], n["windows_inconclusive"], n["windows_passed"]) == (MAX_HOLDS, 0, 1)
    assert verdicts[1].evidence is not None and verdicts[1].evidence.log_mixture >= hold_level(0.01)


def test_a_held_regression_fails_at_the_same_weight() -> None:
    step = StepJudge(POLICY, baseline=True, windows=1)
    verdicts = observe_all(step, [LEANING, LEANING])
    assert [v.outcome for v in verdicts] == [Outcome.INCONCLUSIVE, Outcome.FAIL]
    assert "higher (sequential test" in verdicts[1].reason


def test_no_hold_without_a_baseline_comparison() -> None:
    step = StepJudge(Analysis(baseline_comparison=False), baseline=True, windows=1)
    assert step.observe(LEANING).outcome is Outcome.PASS


def test_planned_windows() -> None:
    assert [planned_windows(d, i) for d, i in [(300, 60), (60, 60), (90, 60), (10, 60), (0, 60)]] == [
        5,
        1,
        2,
        1,
        1,
    ]


# --------------------------------------------------------------------------- simulation


def _release(rng: np.random.Generator, q_new: float, policy: Analysis, per_window: int = 5000) -> bool:
    """One canary release 10 % ... 90 % (a window per step), evidence carried; True if promoted."""
    evidence = None
    for weight in range(10, 100, 10):
        step = StepJudge(policy, baseline=True, windows=1, evidence=evidence)
        while step.result is None:
            n = int(rng.binomial(per_window, weight / 100))
            m = per_window - n
            new = slot(n, int(rng.binomial(n, q_new)))
            step.observe(Window(new, slot(m, int(rng.binomial(m, 0.005)))))
        if step.result.outcome is Outcome.FAIL:
            return False
        evidence = step.evidence
    return True


def test_simulated_false_rollbacks_stay_below_significance() -> None:
    rng = np.random.default_rng(20240601)
    runs = 500
    rollbacks = sum(not _release(rng, 0.005, POLICY) for _ in range(runs))
    # At most alpha by construction; allow binomial noise of three standard deviations.
    assert rollbacks / runs <= POLICY.significance + 3 * math.sqrt(0.01 * 0.99 / runs)


@pytest.mark.parametrize("q_new", [0.01, 0.02])
def test_simulated_regressions_are_caught_where_a_fixed_threshold_is_not(q_new: float) -> None:
    rng = np.random.default_rng(7)
    caught = sum(not _release(rng, q_new, POLICY) for _ in range(100))
    thresholds_only = sum(not _release(rng, q_new, Analysis(baseline_comparison=False)) for _ in range(100))
    assert caught >= 90
    assert thresholds_only == 0


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("k", "n", "p"), [(0, 5, 0.3), (3, 10, 0.1), (5, 5, 0.3), (20, 110, 0.1), (2, 130, 0.1)]
)
def test_binomial_tails_match_the_definition(k: int, n: int, p: float) -> None:
    exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert binom_sf(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-15)
    assert binom_cdf(k - 1, n, p) == pytest.approx(1 - exact, rel=1e-9, abs=1e-12)


def test_statistics_edges() -> None:
    assert (binom_sf(6, 5, 0.5), binom_sf(0, 5, 0.5), binom_sf(3, 5, 0.0), binom_sf(3, 5, 1.0)) == (
        0,
        1,
        0,
        1,
    )
    assert chi2_sf_1df(3.841458820694124) == pytest.approx(0.05)
    assert threshold(0.01) == pytest.approx(math.log(100))
    assert sample_ratio([0], [0], 0.5).p_value == 1.0
    with pytest.raises(ValueError):
        Evidence.start([1.0])


def test_evidence_only_grows_towards_rejection() -> None:
    evidence = Evidence.start((2.0,))
    evidence = evidence.update(1000, 30, 1000, 5)
    high = evidence.max_log_lr
    evidence = evidence.update(1000, 0, 1000, 40)
    assert evidence.log_mixture < high == evidence.max_log_lr
    assert evidence.update(0, 0, 1000, 5).log_lr == evidence.log_lr  # no traffic, no evidence
    assert (evidence.new_requests, evidence.base_errors, evidence.windows) == (2000, 45, 2)
