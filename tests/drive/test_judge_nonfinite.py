"""Metrics that are not numbers: a NaN or infinite value is no data, never a pass.

NaN compares false with every threshold, so a p99 of NaN used to pass every window
(``PASS ... p99 nan``) and a release whose latency could not be measured was promoted. Every
path that judges metrics is covered here: one window, a step of windows (with and without the
baseline comparison, thin windows carried), the A/B decision, the load probe's latencies, and
whole deployments on the fakes and in the sandbox.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from drive_world import NEW, OLD, SERVICE, build_world

from rfs_deploy.config.model import Analysis, Probe, ValidationSettings
from rfs_deploy.drive.ab import decide_ab
from rfs_deploy.drive.judge import StepJudge
from rfs_deploy.drive.probe import run_probe, server_timing
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.drive.rules import Outcome, SlotMetrics, Window, judge
from rfs_deploy.drive.stats import Evidence, rate_comparison
from rfs_deploy.metrics import MetricsProvider, Readings, SlotSource
from rfs_deploy.testing import Behaviour

POLICY = Analysis()  # 5 % errors, p99 2 s, CPU 90 %, 100 requests
NAN, INF = math.nan, math.inf
ODD = [NAN, INF, -INF]


def slot(requests: Any = 2000, errors: Any = 10, p99: Any = 0.2, cpu: Any = 40.0) -> SlotMetrics:
    return SlotMetrics(requests=requests, errors=errors, p99=p99, cpu=cpu)


GOOD = slot()


# --------------------------------------------------------------------------- one window


@pytest.mark.parametrize("value", ODD, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("metric", ["p99", "cpu", "requests", "errors"])
@pytest.mark.parametrize("baseline", [False, True])
def test_a_window_with_a_non_finite_metric_on_the_new_slot_is_no_data(
    metric: str, value: float, baseline: bool
) -> None:
    window = Window(slot(**{metric: value}), GOOD if baseline else None)
    verdict = judge(window, POLICY, baseline=baseline)

    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.reason == f"no data: the new slot's {metric} {value} (NaN, infinite or negative)"
    assert verdict.numbers["unusable"] == f"{metric} {value}"
    assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in verdict.numbers.values())


def test_non_finite_values_never_reach_the_fields_so_nothing_compares_with_them() -> None:
    m = slot(requests=INF, errors=NAN, p99=NAN, cpu=-INF)
    assert (m.requests, m.errors, m.p99, m.cpu) == (0, 0, None, None)
    assert m.unusable == ("requests inf", "errors nan", "p99 nan", "cpu -inf")
    assert slot(p99=-0.5).unusable == ("p99 -0.5",)  # a negative latency is no measurement either


@pytest.mark.parametrize("value", ODD, ids=["nan", "inf", "-inf"])
def test_a_baseline_with_a_non_finite_p99_is_not_compared_and_says_so(value: float) -> None:
    verdict = judge(Window(GOOD, slot(18_000, 90, p99=value)), POLICY, baseline=True)

    assert verdict.outcome is Outcome.PASS  # the new slot's own numbers are all there
    assert f"the baseline's p99 {value} is not compared" in verdict.reason
    assert "p99_ratio" not in verdict.numbers


def test_a_baseline_with_non_finite_counts_is_no_baseline_data() -> None:
    verdict = judge(Window(GOOD, slot(NAN, 90)), POLICY, baseline=True)

    assert verdict.outcome is Outcome.PASS
    assert "no baseline data this window (its requests nan): thresholds only" in verdict.reason
    assert verdict.evidence is not None and verdict.evidence.windows == 0  # no evidence from it


def test_a_non_finite_new_slot_is_no_data_even_when_a_threshold_would_fail_it() -> None:
    # a NaN p99 next to a 50 % error rate: the window has no data, the step's limits decide
    verdict = judge(Window(slot(2000, 1000, p99=NAN)), POLICY, baseline=False)
    assert verdict.outcome is Outcome.INCONCLUSIVE and "p99 nan" in verdict.reason


# --------------------------------------------------------------------------- a step


def run_step(windows: Sequence[Window], baseline: bool = False, planned: int = 10) -> StepJudge:
    sj = StepJudge(POLICY, baseline=baseline, windows=planned)
    for window in windows:
        sj.observe(window)
        if sj.result is not None:
            break
    return sj


@pytest.mark.parametrize("baseline", [False, True])
@pytest.mark.parametrize("value", ODD, ids=["nan", "inf", "-inf"])
def test_a_step_of_non_finite_p99s_fails_for_not_enough_data_instead_of_passing_ten_times(
    value: float, baseline: bool
) -> None:
    base = slot(18_000, 90) if baseline else None
    sj = run_step([Window(slot(p99=value), base)] * 20, baseline=baseline)

    assert sj.result is not None and sj.result.outcome is Outcome.FAIL
    assert sj.passed == 0 and sj.missing == POLICY.max_inconclusive + 1
    limit = POLICY.max_inconclusive
    assert sj.result.reason.startswith(
        f"not enough data: {limit + 1} windows in a row without data (limit {limit})"
    )
    assert f"p99 {value}" in sj.result.reason


def test_a_lone_nan_window_extends_the_step_like_missing_data() -> None:
    windows = [Window(GOOD), Window(slot(p99=NAN)), Window(GOOD), Window(GOOD)]
    sj = run_step(windows, planned=3)

    assert sj.result is not None and sj.result.outcome is Outcome.PASS
    assert (sj.passed, sj.missing, len(sj.verdicts)) == (3, 1, 4)


def test_a_nan_window_after_thin_windows_is_not_pooled_into_a_pass() -> None:
    thin, base = slot(60, 0), slot(540, 2)
    sj = run_step([Window(thin, base), Window(slot(60, 0, p99=NAN), base), Window(thin, base)], baseline=True)

    assert [v.outcome for v in sj.verdicts] == [Outcome.INCONCLUSIVE, Outcome.INCONCLUSIVE, Outcome.PASS]
    assert "p99 nan" in sj.verdicts[1].reason
    assert sj.verdicts[2].numbers["pooled_requests"] == 120  # the two thin windows, not the NaN one


def test_the_sequential_test_refuses_counts_that_are_not_numbers() -> None:
    with pytest.raises(ValueError, match="finite"):
        Evidence.start().update(100, NAN, 100, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        rate_comparison(1000, 5, INF, 5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- A/B


def ab_windows(b: SlotMetrics, count: int = 10) -> list[Window]:
    return [Window(b, slot(1000, 5)) for _ in range(count)]


@pytest.mark.parametrize("metric", ["p99", "requests", "errors"])
def test_an_ab_test_whose_b_metrics_are_not_numbers_keeps_a(metric: str) -> None:
    decision = decide_ab(ab_windows(slot(**{"requests": 1000, "errors": 5, metric: NAN})), 50, POLICY)

    assert decision.winner == "A"
    assert "not enough data" in decision.reason and "10 window(s) left out for NaN" in decision.reason
    assert decision.numbers["windows"] == 0 and decision.numbers["windows_unusable"] == 10


def test_an_ab_test_judges_only_its_finite_windows() -> None:
    windows = ab_windows(slot(1000, 5)) + ab_windows(slot(1000, 5, p99=INF), 3)
    decision = decide_ab(windows, 50, POLICY)

    assert decision.winner == "B" and decision.numbers["windows"] == 10
    assert decision.numbers["windows_unusable"] == 3


# --------------------------------------------------------------------------- the probe


def test_a_server_timing_that_is_not_a_number_is_an_unknown_latency() -> None:
    for header, finite in [
        ("total;dur=nan", False),
        ("total;dur=1.2.3", False),
        ("total;dur=" + "9" * 400, False),
    ]:
        value = server_timing(httpx.Response(200, headers={"server-timing": header}))
        assert value is not None and math.isfinite(value) is finite, header
    assert server_timing(httpx.Response(200, headers={"server-timing": "total;dur=12"})) == 0.012


def test_a_probe_whose_latencies_are_not_numbers_fails_instead_of_passing() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="ok", headers={"server-timing": "total;dur=NaN"})

    settings = ValidationSettings(probe=Probe(requests=200))
    result = asyncio.run(
        run_probe("http://test.internal", None, settings, POLICY, transport=httpx.MockTransport(answer))
    )

    assert not result.passed
    assert result.verdict.reason.startswith("not enough data")
    assert all("p99 nan" in batch.verdict.reason for batch in result.batches)


# --------------------------------------------------------------------------- whole deployments


@pytest.mark.parametrize("strategy", ["canary", "blue-green", "ab-test"])
@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "inf"])
def test_a_new_version_whose_p99_is_not_a_number_is_never_promoted(strategy: str, value: float) -> None:
    world = build_world({NEW: Behaviour(p99=value)})
    record = world.deploy(strategy)

    assert record.status is not DeploymentStatus.COMPLETED, record.errors
    assert record.status is DeploymentStatus.ROLLED_BACK
    assert world.applied().slot(world.applied().live).version == OLD
    # no window passed on the new slot's numbers: every one of its p99s is not a number
    assert not [v for v in record.verdicts if v.outcome == "PASS" and "p99" in v.reason]
    assert any(f"p99 {value}" in v.reason for v in record.verdicts), [v.reason for v in record.verdicts]


class NonFinite:
    """A metrics provider handing on another's readings with one metric of every slot replaced
    (``req``, ``err``, ``p99``, ``cpu``: as the series of that metric would all be ``value``)."""

    name = "non-finite"

    def __init__(self, inner: MetricsProvider, kind: str, value: float) -> None:
        self.inner, self.kind, self.value = inner, kind, value

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        found = self.inner.read(sources, start, end, period)
        field = {"req": "requests", "err": "errors"}.get(self.kind, self.kind)
        slots = {
            slot: replace(m, **{field: self.value}) if m is not None and getattr(m, field) is not None else m
            for slot, m in found.slots.items()
        }
        return Readings(slots, partial=found.partial)


@pytest.mark.parametrize(("kind", "value"), [("req", NAN), ("err", INF), ("cpu", NAN)])
def test_non_finite_counts_from_the_metrics_source_do_not_crash_or_pass_a_deployment(
    kind: str, value: float
) -> None:
    world = build_world()
    seams = world.seams()
    seams.metrics = NonFinite(world.metrics, kind, value)
    from rfs_deploy.drive.driver import Driver

    record = asyncio.run(Driver(seams).deploy(SERVICE, NEW, "canary", {"strategy": {"steps": [10, 50]}}))

    assert record.status is DeploymentStatus.ROLLED_BACK, record.errors
    assert any("not enough data" in s.reason for s in record.steps if s.outcome == "failed")


def test_a_sandbox_canary_whose_p99_comes_out_nan_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rfs_deploy.connect import open_seams
    from rfs_deploy.drive.driver import Driver

    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    seams = open_seams("production", backend="sim", scenario="healthy", fresh=True)
    try:
        seams.metrics = NonFinite(seams.metrics, "p99", NAN)
        record = asyncio.run(Driver(seams).deploy(SERVICE, NEW, "canary", {"strategy": {"steps": [10, 50]}}))
    finally:
        seams.close()

    assert record.status is DeploymentStatus.ROLLED_BACK, record.errors
    failed = [s for s in record.steps if s.outcome == "failed"]
    assert failed and "not enough data" in failed[0].reason and "p99 nan" in failed[0].reason
    assert not [v for v in record.verdicts if v.outcome == "PASS"]


class OneBadMinute:
    """p99 is NaN in every window that covers the start of the first window asked for."""

    name = "one-bad-minute"

    def __init__(self, inner: MetricsProvider) -> None:
        self.inner = inner
        self.bad: float | None = None

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        self.bad = start if self.bad is None else self.bad
        found = self.inner.read(sources, start, end, period)
        if not start <= self.bad < end:
            return found
        return NonFinite(StaticSource(found), "p99", NAN).read(sources, start, end, period)


class StaticSource:
    name = "static"

    def __init__(self, readings: Readings) -> None:
        self.readings = readings

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        return self.readings


def test_one_nan_minute_is_skipped_not_asked_for_again_so_the_rest_of_the_step_is_judged() -> None:
    world = build_world()
    seams = world.seams()
    seams.metrics = OneBadMinute(world.metrics)
    from rfs_deploy.drive.driver import Driver

    record = asyncio.run(Driver(seams).deploy(SERVICE, NEW, "canary", {"strategy": {"steps": [10, 50]}}))

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert [v.reason for v in record.verdicts if "p99 nan" in v.reason] == [
        "no data: the new slot's p99 nan (NaN, infinite or negative)"
    ]
