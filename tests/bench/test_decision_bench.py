"""The decision benchmark's machinery: the traffic model, each policy on hand-made minutes, the
floor, the cost counters, and the command end to end on a handful of seeds. No timings."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from benchmarks.decision.cells import ANCHORS, MAIN_CELLS, Row, evaluate, policies
from benchmarks.decision.cost import deploy_once, expected_calls
from benchmarks.decision.floor import (
    bernoulli_kl,
    detection_ceiling,
    exposure_bound,
    floor,
    limits,
    two_sample_power,
    wald_expected_n,
)
from benchmarks.decision.policies import Alarm, Ours, Threshold, WaldPerMinute, window_of
from benchmarks.decision.report import goal_table
from benchmarks.decision.run import main
from benchmarks.decision.traffic import (
    DEFAULT_WEIGHTS,
    Cell,
    Minute,
    SeedTrace,
    latency_params,
    norm_ppf,
    sample_p99,
    simulate,
)
from rfs_deploy.metrics.cloudwatch import HISTORY_QUERIES

GOOD = Minute(200, 1, 0.30, 800, 4, 0.30)
BAD = Minute(200, 20, 0.30, 800, 4, 0.30)  # 10 % 5xx
SLOW = Minute(200, 1, 0.60, 800, 4, 0.30)  # above Flagger's 500 ms, below the alarm's 2 s
EMPTY = Minute(0, 0, None, 1000, 5, 0.30)


def trace(minute: Callable[[int, int], Minute], horizon: int = 40) -> SeedTrace:
    """A seed whose minute ``t`` at plan step ``step`` is ``minute(t, step)``."""
    table = [[minute(t, s) for s in range(len(DEFAULT_WEIGHTS))] for t in range(1, horizon + 1)]

    def column(name: str) -> list[list[float]]:
        values = [[getattr(m, name) for m in row] for row in table]
        return [[math.nan if v is None else v for v in row] for row in values]

    return SeedTrace(
        DEFAULT_WEIGHTS,
        *(column(n) for n in ("new_requests", "new_errors", "new_p99")),  # type: ignore[arg-type]
        *(column(n) for n in ("base_requests", "base_errors", "base_p99")),
    )


def bad_at(*minutes: int, bad: Minute = BAD) -> SeedTrace:
    return trace(lambda t, s: bad if t in minutes else GOOD)


# --------------------------------------------------------------------------- policies


def test_threshold_limit_1_rolls_back_at_the_first_failed_interval() -> None:
    decision = Threshold(1).decide(bad_at(3))
    assert (decision.rolled_back, decision.minute, decision.exposure) == (True, 3, 600)
    assert decision.reason == "error rate"


def test_threshold_limit_2_holds_the_weight_after_a_failure() -> None:
    """Requests grow with the step, so exposure tells which weight each minute ran at."""
    by_step = trace(lambda t, s: Minute(100 * (s + 1), 20 if t in (2, 4) else 0, 0.3, 500, 2, 0.3))
    decision = Threshold(2).decide(by_step)
    # minute 1 step 0; minute 2 step 1 fails and holds; minute 3 step 1 passes; minute 4 step 2 fails
    assert (decision.rolled_back, decision.minute, decision.exposure) == (True, 4, 100 + 200 + 200 + 300)


def test_threshold_latency_and_missing_data() -> None:
    assert Threshold(1).decide(bad_at(2, bad=SLOW)).reason == "p99"
    skipped = Threshold(1).decide(trace(lambda t, s: EMPTY if t == 1 else GOOD))
    assert (skipped.rolled_back, skipped.minute) == (False, len(DEFAULT_WEIGHTS) + 1)


@pytest.mark.parametrize(
    ("periods", "bad", "rolled_back", "minute"),
    [(1, (4,), True, 4), (2, (2, 4, 6), False, 10), (2, (5, 6), True, 6)],
    ids=["one period", "never two in a row", "two in a row"],
)
def test_alarm_needs_consecutive_breaching_periods(
    periods: int, bad: tuple[int, ...], rolled_back: bool, minute: int
) -> None:
    decision = Alarm(periods).decide(bad_at(*bad))
    assert (decision.rolled_back, decision.minute) == (rolled_back, minute)


def test_alarm_ignores_what_is_below_its_thresholds() -> None:
    assert not Alarm(1).decide(bad_at(2, 3, bad=SLOW)).rolled_back  # 0.6 s < 2 s
    assert not Alarm(1).decide(trace(lambda t, s: EMPTY if t < 3 else GOOD)).rolled_back  # missing: OK


def test_ours_promotes_a_good_version_after_one_window_per_step() -> None:
    decision = Ours().decide(trace(lambda t, s: GOOD))
    assert (decision.rolled_back, decision.minute, decision.exposure) == (False, 10, 2000)


def test_ours_checks_the_alarm_before_judging_the_window() -> None:
    decision = Ours().decide(bad_at(1))
    assert (decision.rolled_back, decision.minute, decision.reason) == (True, 1, "alarm")


def test_ours_weighs_an_alarm_on_a_window_the_judge_cannot_fail() -> None:
    # a thin minute (60 requests, below minRequests) the judge cannot fail on, whose 6.7 % the
    # alarm counts (it needs 50): over a healthy baseline of binomial traffic, it rolls back at once
    decision = Ours().decide(bad_at(1, bad=Minute(60, 4, 0.30, 800, 4, 0.30)))
    assert (decision.rolled_back, decision.minute, decision.reason) == (True, 1, "alarm")


def test_ours_merges_a_minute_without_data_into_the_next_window() -> None:
    decision = Ours().decide(trace(lambda t, s: EMPTY if t == 1 else GOOD))
    assert (decision.rolled_back, decision.minute) == (False, 11)
    merged = window_of([EMPTY, GOOD], compare=True)
    assert merged.new is not None and merged.baseline is not None
    assert (merged.new.requests, merged.baseline.requests, merged.new.p99) == (200, 1800, 0.30)
    assert window_of([EMPTY], compare=True).new is None


def test_ours_catches_a_2_percent_regression_with_the_sequential_test() -> None:
    two_percent = trace(lambda t, s: Minute(500, 10, 0.3, 500, 2, 0.3))
    decision = Ours().decide(two_percent)
    assert decision.rolled_back and decision.reason == "sequential test"
    assert not Threshold(1).decide(two_percent).rolled_back


def test_sprt_reference_accumulates_the_log_likelihood_ratio() -> None:
    five = trace(lambda t, s: Minute(100, 5, 0.3, 900, 4, 0.3))
    # 5 ln 10 + 95 ln(0.95 / 0.995) = 7.1 nats > ln 99 in the first minute
    assert WaldPerMinute(0.005, 0.05).decide(five).minute == 1
    healthy = WaldPerMinute(0.005, 0.05).decide(trace(lambda t, s: GOOD))
    assert (healthy.rolled_back, healthy.reason) == (False, "accepted")


# --------------------------------------------------------------------------- the floor


def test_wald_expected_sample_size() -> None:
    kl = 0.05 * math.log(10) + 0.95 * math.log(0.95 / 0.995)
    assert bernoulli_kl(0.05, 0.005) == pytest.approx(kl)
    assert wald_expected_n(0.005, 0.05) == pytest.approx((0.99 * math.log(99) + 0.01 * math.log(1 / 99)) / kl)
    with pytest.raises(ValueError):
        wald_expected_n(0.01, 0.005)


def test_wald_expected_sample_size_matches_a_simulated_sprt() -> None:
    """Wald's formula ignores the overshoot: the simulated SPRT needs a little more, not less."""
    rng = np.random.default_rng(1)
    p0, p1 = 0.005, 0.02
    steps = np.where(rng.random((1500, 3000)) < p1, math.log(p1 / p0), math.log((1 - p1) / (1 - p0)))
    llr = np.cumsum(steps, axis=1)
    crossed = (llr >= math.log(99)) | (llr <= math.log(1 / 99))
    assert crossed.any(axis=1).all()
    mean_n = float((crossed.argmax(axis=1) + 1).mean())
    assert wald_expected_n(p0, p1) <= mean_n <= 1.25 * wald_expected_n(p0, p1)


def test_floor_is_the_larger_of_sprt_and_one_metric_period() -> None:
    assert floor(0.005, 0.20, 1000, DEFAULT_WEIGHTS).exposure == 100  # one minute at 10 %
    assert floor(0.005, 0.20, 1000, (1, *DEFAULT_WEIGHTS)).exposure == 10
    slow = floor(0.005, 0.01, 1000, DEFAULT_WEIGHTS)
    assert slow.exposure == pytest.approx(2316, abs=1) and slow.minutes == 7  # 100+200+...+700 >= 2316


def test_the_two_sample_power_is_the_tests_size_at_equal_rates_and_grows_with_the_counts() -> None:
    assert two_sample_power(0.005, 0.005 * (1 + 1e-9), 4500, 4500, 0.01) == pytest.approx(0.01, abs=1e-6)
    powers = [two_sample_power(0.005, 0.01, n, n, 0.005) for n in (2000, 4500, 9000)]
    assert powers == sorted(powers) and 0.2 < powers[0] < powers[-1] < 1
    with pytest.raises(ValueError):
        two_sample_power(0.01, 0.005, 100, 100, 0.01)


def test_the_two_sample_power_matches_the_conditional_test_simulated() -> None:
    """The randomised conditional test on simulated Poisson counts rejects as often as computed."""
    rng = np.random.default_rng(3)
    new, base, p0, p1, alpha, runs = 1500, 1500, 0.005, 0.015, 0.01, 40_000
    x, y = rng.poisson(new * p1, runs), rng.poisson(base * p0, runs)
    rejected = 0.0
    for errors, total in zip(x.tolist(), (x + y).tolist(), strict=True):
        pmf = [math.comb(total, k) / 2**total for k in range(total + 1)]  # equal shares of requests
        above = sum(pmf[errors + 1 :])
        if above + pmf[errors] <= alpha:
            rejected += 1
        elif above <= alpha:  # errors is the critical count: reject with the leftover probability
            rejected += (alpha - above) / pmf[errors]
    assert two_sample_power(p0, p1, new, base, alpha) == pytest.approx(rejected / runs, abs=0.01)


def test_what_the_counts_allow_under_the_default_plan() -> None:
    ceiling = detection_ceiling(0.005, 0.01, 1000, DEFAULT_WEIGHTS, 0.005)
    assert ceiling == pytest.approx(two_sample_power(0.005, 0.01, 4500, 4500, 0.005))
    assert 0.5 < ceiling < 0.85  # 9 compared minutes of 4,500 requests on each slot
    bound = exposure_bound(0.005, 0.05, 1000, DEFAULT_WEIGHTS, 0.005)
    assert 100 < bound < 300  # the first minute's 100 requests, then the second's when undecided
    one, five = limits(DEFAULT_WEIGHTS)
    assert one.best == pytest.approx(ceiling) and "85 % needs 16 such minutes" in one.how
    assert five.best == pytest.approx(bound / 100)


# --------------------------------------------------------------------------- traffic model


def test_normal_quantiles() -> None:
    probabilities = [1e-6, 0.001, 0.02, 0.3, 0.5, 0.9, 0.999]
    exact = [statistics.NormalDist().inv_cdf(p) for p in probabilities]
    assert norm_ppf(np.array(probabilities)) == pytest.approx(exact, abs=1e-7)


@pytest.mark.parametrize("requests", [1, 3, 100, 2500])
def test_p99_has_the_distribution_of_the_sandboxs_percentile(requests: int) -> None:
    rng = np.random.default_rng(requests)
    mu, sigma = latency_params()
    fast = sample_p99(rng, np.full(3000, requests), mu, sigma)
    draws = rng.lognormal(mu, sigma, size=(3000, min(requests, 2000)))
    direct = np.percentile(draws, 99, axis=1)
    assert np.percentile(fast, [10, 50, 90]) == pytest.approx(np.percentile(direct, [10, 50, 90]), rel=0.06)
    assert np.isnan(sample_p99(rng, np.array([0]), mu, sigma)).all()


def test_simulated_traffic_is_the_same_for_the_same_seed() -> None:
    cell = Cell("t", 1000, 0.02)
    one, two = simulate(cell, 5, 12, seed=3), simulate(cell, 5, 12, seed=3)
    assert np.array_equal(one.new_errors, two.new_errors) and np.array_equal(
        one.base_p99, two.base_p99, equal_nan=True
    )
    assert one.new_requests.shape == (5, 12, len(DEFAULT_WEIGHTS))
    totals = one.new_requests + one.base_requests
    assert np.array_equal(totals[:, :, 0], totals[:, :, -1])  # one total per minute, split by weight
    assert (one.new_errors <= one.new_requests).all() and (one.base_requests[:, :, -1] == 0).all()


# --------------------------------------------------------------------------- end to end


def test_every_policy_judges_the_same_draws() -> None:
    cell = next(c for c in MAIN_CELLS if c.name == "5xx 20 %")
    rows = evaluate(cell, 8, base_seed=6)
    assert [r.policy for r in rows] == [p.name for p in policies(cell)]
    assert all(r.runs == 8 and r.rolled_back == 1.0 for r in rows)
    assert rows == evaluate(cell, 8, base_seed=6)  # common random numbers: the same every time


def test_cost_counts_match_the_plan() -> None:
    record, cost = deploy_once(0.005)
    assert record.status.value == "COMPLETED"
    # the baseline's history (one request per deployment) gives the latency threshold from the
    # first tick on, so every tick also counts slow requests
    updates, requests, metrics = expected_calls(DEFAULT_WEIGHTS, learnt=0)
    counted = (cost.stack_updates, cost.get_metric_data_requests, cost.metrics_requested)
    assert counted == (updates, requests, metrics)
    assert (updates, requests, metrics) == (13, 10 + 1, 9 * 10 + 5 + HISTORY_QUERIES)
    _, rolled = deploy_once(0.20)
    assert (rolled.status, rolled.ticks, rolled.metrics_requested) == ("ROLLED_BACK", 1, 10 + HISTORY_QUERIES)
    assert (cost.history_requests, rolled.history_requests) == (1, 1)
    assert cost.get_metric_data_requests == cost.ticks + 1
    assert record.baseline_history is not None and record.baseline_history["requests"] > 0


def test_the_command_writes_its_tables(tmp_path: Path) -> None:
    assert main(["--seeds", "4", "--no-cost", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "decision.md").read_text()
    assert "| healthy (0.5 % 5xx) | rfs-deploy |" in text and "## The exposure floor" in text
    assert "| 5xx 1 %: detection ≥ 85 % | 57.2 % |" in text
    assert (tmp_path / "decision.csv").read_text().startswith("cell,policy,runs,faulty,rolled_back")


def _row(cell: str, policy: str, faulty: bool, rolled_back: float, floor: float | None = None) -> Row:
    return Row(cell, policy, 100, faulty, rolled_back, 0.0, 5, 9, 100.0, 90.0, 300.0, floor, "")


def test_the_goal_table_counts_each_target_and_shows_the_judge_before() -> None:
    rows = []
    for policy, healthy, caught in (
        ("rfs-deploy", 0.003, 0.9),
        ("rfs-deploy before (abc123)", 0.02, 0.4),
        *((a, 0.001, 0.6) for a in ANCHORS),
    ):
        rows += [
            _row("healthy (0.5 % 5xx)", policy, False, healthy),
            _row("5xx 1 %", policy, True, caught),
            _row("5xx 5 %", policy, True, 1.0, floor=100.0),
        ]
    text = goal_table(rows, before="rfs-deploy before (abc123)")
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()[2:]}
    false = lines["healthy cells: false rollbacks ≤ the lowest anchor's + 0.5 points"]
    assert "| 0 of 1 cells (missed: healthy (0.5 % 5xx)) | 1 of 1 cells | yes |" in false
    assert lines["5xx 1 %: detection ≥ 85.0 %"].endswith("| 40.0 % | 90.0 % | yes |")
    assert lines["5xx 5 %: mean exposure / floor ≤ 1.5x"].endswith("| 1.00x | 1.00x | yes |")
    assert "**no**" not in text
