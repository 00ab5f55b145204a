"""The baseline's history: one read of the live slot's hour before the first traffic shift, and
the sequential test using it as a prior for the baseline's rate, robustly."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from drive_world import World, build_world

from rfs_deploy.cli import views
from rfs_deploy.drive.history import HISTORY_SECONDS, BaselineHistory, from_periods, with_history
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.drive.stats import Evidence, Spread
from rfs_deploy.metrics.base import Period, Readings, SlotMetrics, SlotSource
from rfs_deploy.report import render_html
from rfs_deploy.testing import FakeMetrics

ALPHA = 0.01
WEIGHTS = (10, 20, 30, 40, 50, 60, 70, 80, 90)


class OrderedMetrics(FakeMetrics):
    """The fake provider, logging which of its reads was asked for, in order."""

    def __init__(self, inner: FakeMetrics) -> None:
        super().__init__(inner.cloud)
        self.log: list[str] = []

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        self.log.append("tick")
        return super().read(sources, start, end, period)

    def read_periods(
        self, sources: Sequence[SlotSource], start: float, end: float, period: int
    ) -> dict[str, list[Period]]:
        self.log.append("history")
        return super().read_periods(sources, start, end, period)


def _deploy(world: World) -> DeploymentRecord:
    return world.deploy("canary", overrides={"strategy": {"steps": [10, 50]}})


def test_the_history_is_read_once_before_the_first_shift_over_the_hour_before_it() -> None:
    world = build_world()
    metrics = world.metrics = OrderedMetrics(world.metrics)

    record = _deploy(world)

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert metrics.log.count("history") == 1 and metrics.log[0] == "history"
    assert metrics.log.count("tick") >= 2  # both compared steps judged, one history between them
    (start, end, period), shift = metrics.period_reads[0], _first_shift(record)
    assert period == 60 and end == math.floor(shift / period) * period and end - start == HISTORY_SECONDS
    history = record.baseline_history
    assert history is not None and (history["start"], history["end"]) == (start, end)
    assert history["minutes"] == 60 and history["requests"] > 0 and history["p99"] is not None
    live = world.cloud.behaviour(world.start.slot(world.start.live).version)
    assert history["rate"] == history["errors"] / history["requests"]
    assert abs(history["rate"] - live.error_rate) < 0.001
    # kept in the record, so status and the report show it
    assert DeploymentRecord.from_json(record.to_json()).baseline_history == history
    assert f"Baseline before the release: {history['requests']:,} requests over 60 minutes" in render_html(
        record, b""
    )
    shown = views.view(None, record, record.stack)
    assert shown["baseline_history"] == history
    assert f"baseline before the release: {history['requests']:,} requests over 60 minutes" in (
        views.status_line(shown)
    )


def _first_shift(record: DeploymentRecord) -> float:
    return min(s.started_at for s in record.steps if s.kind == "set-weight")


def test_a_provider_failure_leaves_the_judge_as_without_a_history() -> None:
    failing, empty, usual = build_world(), build_world(), build_world()
    failing.metrics.period_errors = 1
    empty.metrics.period_missing = True

    records = [_deploy(w) for w in (failing, empty, usual)]

    assert [r.status for r in records] == [DeploymentStatus.COMPLETED] * 3
    assert [r.baseline_history is None for r in records] == [True, True, False]
    # no history: the same windows, the same verdicts, and no error for a history not read
    assert [v.reason for v in records[0].verdicts] == [v.reason for v in records[1].verdicts]
    assert failing.metrics.calls == empty.metrics.calls == usual.metrics.calls
    assert not any("history" in e for r in records for e in r.errors)


# --------------------------------------------------------------------------- the statistics


def _history(rng: np.random.Generator, rpm: int, rate: float) -> BaselineHistory:
    minutes = [SlotMetrics(int(n), int(rng.binomial(n, rate)), 0.3) for n in rng.poisson(rpm, 60)]
    found = from_periods(minutes, slot="blue", start=0.0, end=3600.0, period=60)
    assert found is not None
    return found


def _release(rng: np.random.Generator, new_rate: float, base_rates: Sequence[float], prior: bool) -> Evidence:
    """The default canary's compared steps, one 1,000-request window each."""
    evidence = Evidence.start()
    if prior:
        found = with_history(evidence, _history(rng, 1000, base_rates[0]), max_error_rate=0.05)
        assert found is not None
        evidence = found
    for weight, base_rate in zip(WEIGHTS, base_rates, strict=True):
        n = int(rng.binomial(1000, weight / 100))
        drifted = new_rate + base_rate - base_rates[0]
        e_new, e_base = int(rng.binomial(n, drifted)), int(rng.binomial(1000 - n, base_rate))
        evidence = evidence.update(n, e_new, 1000 - n, e_base)
        if evidence.rejects(ALPHA):
            break
    return evidence


def _rejected(new_rate: float, base_rates: Sequence[float], prior: bool, seeds: int = 300) -> float:
    rng = np.random.default_rng(15)
    return sum(_release(rng, new_rate, base_rates, prior).rejects(ALPHA) for _ in range(seeds)) / seeds


STEADY = (0.005,) * len(WEIGHTS)


def test_the_history_never_costs_detection_of_a_1_percent_regression_nor_adds_false_rollbacks() -> None:
    """The history is dropped as soon as the live baseline leans away from it (a likelihood ratio
    of 1.25: drift must not become false rollbacks), so over a steady baseline it gains little
    rate evidence (docs/decision.md measures how much); it must never lose any, nor add false
    rollbacks."""
    without, with_prior = _rejected(0.01, STEADY, prior=False), _rejected(0.01, STEADY, prior=True)

    assert with_prior >= without, (without, with_prior)
    assert _rejected(0.005, STEADY, prior=True) <= ALPHA


def test_a_baseline_drifting_up_during_the_release_does_not_fail_a_healthy_canary() -> None:
    # both slots go from 0.5 % to 3 % over the release; the history knew only the 0.5 %
    drift = tuple(0.005 + 0.025 * i / (len(WEIGHTS) - 1) for i in range(len(WEIGHTS)))
    rng = np.random.default_rng(15)
    releases = [_release(rng, 0.005, drift, prior=True) for _ in range(300)]

    assert sum(e.rejects(ALPHA) for e in releases) / len(releases) <= ALPHA
    assert sum(e.prior_departed for e in releases) / len(releases) >= 0.9


def test_once_the_baseline_departs_the_evidence_is_the_test_without_the_history() -> None:
    windows = [(100, 1, 900, 4), (200, 2, 800, 30), (300, 9, 700, 40), (400, 12, 600, 30)]
    plain = Evidence.start()
    primed = Evidence.start().with_prior(60_000, 300)
    for window in windows:
        plain, primed = plain.update(*window), primed.update(*window)

    assert primed.prior_departed and primed.prior_rate is None
    assert primed.log_lr == plain.log_lr and primed.max_log_lr == plain.max_log_lr
    assert primed.prior_windows == 1  # only the first window, before the baseline tripled


def test_a_steady_baseline_keeps_its_history_and_the_test_gains_from_it() -> None:
    plain, primed = Evidence.start(), Evidence.start().with_prior(60_000, 300)
    for window in [(500, 5, 500, 2), (500, 6, 500, 3)]:
        plain, primed = plain.update(*window), primed.update(*window)

    assert not primed.prior_departed and primed.prior_windows == 2
    assert primed.log_mixture > plain.log_mixture


def test_the_history_dispersion_is_the_judges_own_estimate_and_quantiles_are_robust() -> None:
    counts = [(1000, 2), (1000, 30), (1000, 1), (1000, 9), (1000, 0), (1000, 14)]
    minutes = [SlotMetrics(n, e, 0.2) for n, e in counts]
    minutes[1] = SlotMetrics(1000, 30, 9.0)  # one bad minute does not set the p99
    history = from_periods([*minutes, None], slot="green", start=0.0, end=360.0, period=60)

    spread = Spread()
    for n, e in counts:
        spread = spread.add(n, e)
    assert history is not None
    assert (history.requests, history.errors, history.minutes) == (6000, 56, 6)
    assert history.correlation == spread.correlation > 0 and history.dispersion == spread.dispersion
    assert history.p99 == 0.2 and history.p95 is None
    requests, errors, correlation = history.prior
    assert requests == 6000 / history.dispersion and errors == 56 / history.dispersion
    assert correlation == history.correlation
    assert from_periods([None, SlotMetrics(0, 0)], slot="green", start=0.0, end=120.0, period=60) is None


def test_a_history_without_errors_does_not_pin_the_baseline_below_a_tenth_of_the_limit() -> None:
    clean = from_periods([SlotMetrics(1000, 0)] * 60, slot="blue", start=0.0, end=3600.0, period=60)
    evidence = with_history(None, clean, max_error_rate=0.05)

    assert evidence is not None and evidence.prior_rate == 0.005
    assert with_history(None, None, max_error_rate=0.05) is None


def test_cloudwatch_answers_the_hour_period_by_period_in_one_request() -> None:
    from datetime import UTC, datetime

    from botocore.stub import Stubber

    from rfs_deploy.aws.session import AwsSession
    from rfs_deploy.metrics.cloudwatch import HISTORY_QUERIES, CloudWatchProvider

    client = AwsSession("us-east-1").client("cloudwatch")
    provider, stub = CloudWatchProvider(client), Stubber(client)
    t0 = 1_700_000_000.0

    def result(qid: str, points: list[tuple[float, float]]) -> dict[str, object]:
        stamps = [datetime.fromtimestamp(ts, tz=UTC) for ts, _ in points]
        return {"Id": qid, "Timestamps": stamps, "Values": [v for _, v in points], "StatusCode": "Complete"}

    answer = [
        result("req_blue", [(t0, 1000.0), (t0 + 60, 900.0)]),
        result("err_blue", [(t0 + 60, 9.0)]),  # no 5xx datapoint in the first minute: none
        result("p99_blue", [(t0, 0.3), (t0 + 60, 0.5)]),
        result("cpu_blue", [(t0, 30.0), (t0 + 60, 40.0)]),
        result("p95_blue", [(t0, 0.2), (t0 + 60, 0.25)]),
    ]
    stub.add_response("get_metric_data", {"MetricDataResults": answer})
    source = SlotSource("api", "blue", "v1", "app/lb/1", "targetgroup/tg/1", "arn:tg", "asg-blue")
    with stub:
        found = provider.read_periods([source], t0, t0 + 120, 60)["blue"]
    stub.assert_no_pending_responses()

    assert (provider.requests, provider.metrics_requested) == (1, HISTORY_QUERIES)
    assert [(p.at, p.metrics.requests, p.metrics.errors, p.metrics.p99, p.p95) for p in found] == [
        (t0, 1000, 0, 0.3, 0.2),
        (t0 + 60, 900, 9, 0.5, 0.25),
    ]
