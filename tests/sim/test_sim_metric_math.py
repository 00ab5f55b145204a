"""The sandbox's metric math: what the program's alarms ask of CloudWatch, answered as CloudWatch does."""

from __future__ import annotations

import pytest

from rfs_deploy.infra.alarms import error_rate_expression
from rfs_deploy.sim.alarms import evaluate_expression


@pytest.mark.parametrize(
    ("requests", "errors", "rate"),
    [
        (5.0, 1.0, 0.0),  # one error among five requests: below the minimum count, not a 20 % rate
        (99.0, 50.0, 0.0),
        (100.0, 7.0, 0.07),
        (200.0, None, 0.0),  # no 5xx datapoint: FILL makes it 0
    ],
)
def test_the_5xx_alarm_counts_a_period_only_with_min_requests(
    requests: float, errors: float | None, rate: float
) -> None:
    value = evaluate_expression(error_rate_expression(100), {"requests": requests, "errors": errors})
    assert value == pytest.approx(rate)


def test_a_period_without_a_request_count_has_no_rate() -> None:
    assert evaluate_expression(error_rate_expression(100), {"requests": None, "errors": 3.0}) is None


def test_comparisons_and_if() -> None:
    values = {"a": 3.0, "b": 4.0}
    assert evaluate_expression("IF(a > b, a, b)", values) == 4.0
    assert evaluate_expression("IF(a <= b, a, b)", values) == 3.0
    assert evaluate_expression("a == 3", values) == 1.0
