"""The rules of one window: thresholds, the baseline comparison, data problems, the worst first."""

from __future__ import annotations

import math

import pytest

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.rules import Outcome, Verdict, Window, judge, worst
from rfs_deploy.drive.stats import Evidence
from rfs_deploy.metrics.base import SlotMetrics

POLICY = Analysis()  # 5 % errors, p99 2 s, CPU 90 %, 100 requests, significance 0.01, tolerance 1.5


def slot(requests: int, errors: int = 0, p99: float | None = 0.2, cpu: float | None = 40.0) -> SlotMetrics:
    return SlotMetrics(requests=requests, errors=errors, p99=p99, cpu=cpu)


HEALTHY_BASE = slot(18_000, 90)  # 0.5 %

WINDOWS = [
    # (id, window, baseline?, outcome, words in the reason)
    ("pass", Window(slot(2000, 10)), False, Outcome.PASS, "0.50% over 2000 requests"),
    (
        "pass against baseline",
        Window(slot(2000, 10), HEALTHY_BASE),
        True,
        Outcome.PASS,
        "no worse than baseline",
    ),
    ("error rate threshold", Window(slot(2000, 120)), False, Outcome.FAIL, "error rate 6.00% > 5.00%"),
    ("p99 threshold", Window(slot(2000, 10, p99=2.5)), False, Outcome.FAIL, "p99 2.5s > 2s"),
    ("cpu threshold", Window(slot(2000, 10, cpu=95.0)), False, Outcome.FAIL, "CPU 95.0% > 90.0%"),
    (
        "two thresholds at once",
        Window(slot(2000, 120, p99=3.0)),
        False,
        Outcome.FAIL,
        "error rate 6.00% > 5.00%; p99 3s > 2s",
    ),
    (
        "outage on both slots is named",
        Window(slot(2000, 200), slot(18_000, 1800)),
        True,
        Outcome.FAIL,
        "(baseline also 10.00%)",
    ),
    (
        "2 % vs 0.5 % baseline",
        Window(slot(2000, 40), HEALTHY_BASE),
        True,
        Outcome.FAIL,
        "2.00% vs baseline 0.50%",
    ),
    ("2 % without baseline passes thresholds", Window(slot(2000, 40)), False, Outcome.PASS, "2.00%"),
    (
        "p99 beyond tolerance of baseline",
        Window(slot(2000, 10, p99=0.8), slot(18_000, 90, p99=0.4)),
        True,
        Outcome.FAIL,
        "2.00x the baseline's",
    ),
    (
        "p99 within tolerance",
        Window(slot(2000, 10, p99=0.5), slot(18_000, 90, p99=0.4)),
        True,
        Outcome.PASS,
        "p99 0.5s",
    ),
    ("low traffic", Window(slot(40, 0)), False, Outcome.INCONCLUSIVE, "only 40 requests (need 100)"),
    ("low traffic even if all fail", Window(slot(40, 40)), False, Outcome.INCONCLUSIVE, "only 40 requests"),
    ("no data", Window(None), False, Outcome.INCONCLUSIVE, "no data for the new slot"),
    ("no requests", Window(slot(0)), False, Outcome.INCONCLUSIVE, "no requests reached"),
    ("partial data", Window(slot(2000, 10), partial=True), False, Outcome.INCONCLUSIVE, "partial data"),
    ("errors above requests", Window(slot(10, 20)), False, Outcome.INCONCLUSIVE, "more errors than requests"),
    ("baseline missing", Window(slot(2000, 10)), True, Outcome.PASS, "thresholds only"),
    ("unknown p99 and cpu", Window(slot(2000, 10, p99=None, cpu=None)), False, Outcome.PASS, "0.50%"),
]


@pytest.mark.parametrize(
    ("window", "baseline", "outcome", "words"), [w[1:] for w in WINDOWS], ids=[w[0] for w in WINDOWS]
)
def test_one_window(window: Window, baseline: bool, outcome: Outcome, words: str) -> None:
    verdict = judge(window, POLICY, baseline)
    assert (verdict.outcome, "\n" in verdict.reason) == (outcome, False)
    assert words in verdict.reason


def test_numbers_behind_a_baseline_failure() -> None:
    verdict = judge(Window(slot(2000, 40), HEALTHY_BASE), POLICY, baseline=True)
    n = verdict.numbers
    assert (n["requests"], n["errors"], n["error_rate"]) == (2000, 40, 0.02)
    assert (n["baseline_requests"], n["baseline_errors"], n["baseline_error_rate"]) == (18_000, 90, 0.005)
    assert n["max_error_rate"] == 0.05 and n["significance"] == 0.01
    assert n["log_lr_threshold"] == pytest.approx(math.log(100))
    assert float(n["max_log_lr"]) > float(n["log_lr_threshold"])  # type: ignore[arg-type]
    assert float(n["p_value"]) < 0.01  # type: ignore[arg-type]
    assert "SPRT" in str(n["test"])


def test_baseline_comparison_can_be_switched_off() -> None:
    policy = Analysis(baseline_comparison=False)
    verdict = judge(Window(slot(2000, 40), HEALTHY_BASE), policy, baseline=True)
    assert verdict.outcome is Outcome.PASS and verdict.evidence is None


def test_cumulative_evidence_fails_small_windows() -> None:
    """The sequential test's guarantee needs no min_requests per window: 1 % vs 0.5 % adds up."""
    policy = Analysis(min_requests=1000)
    evidence = Evidence.start()
    outcomes = []
    for _ in range(9):
        verdict = judge(Window(slot(400, 4), slot(3600, 18)), policy, True, evidence)
        evidence = verdict.evidence  # type: ignore[assignment]
        outcomes.append(verdict.outcome)
    assert outcomes == [Outcome.INCONCLUSIVE] * 8 + [Outcome.FAIL]
    assert "1.00% vs baseline 0.50% over 3600 requests" in verdict.reason


def test_worst_first() -> None:
    p = Verdict(Outcome.PASS, "ok")
    i = Verdict(Outcome.INCONCLUSIVE, "thin")
    f = Verdict(Outcome.FAIL, "bad")
    assert worst([p, i, f, p]) is f
    assert worst([p, i]) is i
    with pytest.raises(ValueError):
        worst([])
