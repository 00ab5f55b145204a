"""The A/B decision: the winner, sample ratio mismatch, not enough data."""

from __future__ import annotations

import numpy as np
import pytest

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.ab import decide_ab
from rfs_deploy.drive.rules import Window
from rfs_deploy.metrics.base import SlotMetrics

POLICY = Analysis()  # 5 % errors, p99 2 s, CPU 90 %, 100 requests, significance 0.01, tolerance 1.5


def slot(requests: int, errors: int = 0, p99: float | None = 0.2, cpu: float | None = 40.0) -> SlotMetrics:
    return SlotMetrics(requests=requests, errors=errors, p99=p99, cpu=cpu)


def ab(a: SlotMetrics, b: SlotMetrics, count: int = 10) -> list[Window]:
    return [Window(new=b, baseline=a) for _ in range(count)]


AB_CASES = [
    ("b no worse", ab(slot(5000, 25), slot(5000, 24)), 50, "B", "B is no worse", False),
    ("b better", ab(slot(5000, 100), slot(5000, 25)), 50, "B", "better on error rate", False),
    ("b errs more", ab(slot(5000, 25), slot(5000, 50)), 50, "A", "higher than A's", False),
    ("b above threshold", ab(slot(5000, 25), slot(5000, 300)), 50, "A", "B error rate 6.00% > 5.00%", False),
    ("b slower", ab(slot(5000, 25, p99=0.3), slot(5000, 25, p99=0.6)), 50, "A", "in 10 of 10 windows", False),
    ("srm", ab(slot(5000, 25), slot(4000, 20)), 50, "A", "sample ratio mismatch: B got 44.4%", True),
    ("split honoured", ab(slot(8000, 40), slot(2000, 10)), 20, "B", "no worse", False),
    ("not enough data", ab(slot(5, 0), slot(5, 0)), 50, None, "undecided: not enough data", False),
    (
        "no usable windows",
        [Window(None, slot(5000)), Window(slot(5000), slot(5000), partial=True)],
        50,
        "A",
        "not enough",
        False,
    ),
]


@pytest.mark.parametrize(
    ("windows", "split", "winner", "words", "srm"), [c[1:] for c in AB_CASES], ids=[c[0] for c in AB_CASES]
)
def test_ab_decision(windows: list[Window], split: int, winner: str | None, words: str, srm: bool) -> None:
    decision = decide_ab(windows, split, POLICY)
    assert (decision.winner, decision.srm) == (winner, srm)
    assert words in decision.reason
    if winner == "A" and decision.numbers.get("srm_p_value") is not None:
        assert "keep A" in decision.reason


def test_ab_srm_allows_for_sticky_users() -> None:
    """Per-window shares that wander (users send bursts) are not a mismatch; a steady skew is."""
    rng = np.random.default_rng(3)
    shares = np.clip(rng.normal(0.5, 0.03, 30), 0.3, 0.7)
    wobbly = [Window(new=slot(int(10_000 * s)), baseline=slot(10_000 - int(10_000 * s))) for s in shares]
    decision = decide_ab(wobbly, 50, POLICY)
    assert decision.srm is False and float(decision.numbers["srm_dispersion"]) > 1  # type: ignore[arg-type]
    skewed = [Window(new=slot(4600), baseline=slot(5400)) for _ in range(30)]
    assert decide_ab(skewed, 50, POLICY).srm is True
