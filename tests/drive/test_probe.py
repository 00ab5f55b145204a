"""The load probe: batches through the test listener (and the live one), judged like analysis windows.

Both listeners are answered by an ``httpx.MockTransport`` whose behaviour each test scripts:
which requests fail and what ``Server-Timing`` latency each answer reports.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import httpx
import pytest
from drive_world import NEW, build_world
from pydantic import ValidationError

from rfs_deploy.config.model import Analysis, Probe, ReleaseState, ServiceConfig, ValidationSettings
from rfs_deploy.drive import events
from rfs_deploy.drive.plans import plan
from rfs_deploy.drive.probe import ProbeResult, probe_paths, run_probe, server_timing
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.drive.rules import Outcome
from rfs_deploy.drive.steps import Validate
from rfs_deploy.testing import Behaviour

TEST = "http://alb.sim:8080"
LIVE = "http://alb.sim:80"

#: An answer: (status, seconds of Server-Timing) for the n-th request to one listener.
Answers = Callable[[int, str], tuple[int, float]]


def healthy(n: int, path: str) -> tuple[int, float]:
    return 200, 0.05 + (n % 10) * 0.005


class Slots:
    """A transport that answers the test listener with ``new`` and the live one with ``live``."""

    def __init__(self, new: Answers, live: Answers = healthy) -> None:
        self.behaviour = {8080: new, 80: live}
        self.count = {8080: itertools.count(), 80: itertools.count()}
        self.paths: dict[int, list[str]] = {8080: [], 80: []}
        self.headers: list[httpx.Headers] = []

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            port = request.url.port or 80
            self.paths[port].append(request.url.path)
            self.headers.append(request.headers)
            status, seconds = self.behaviour[port](next(self.count[port]), request.url.path)
            return httpx.Response(
                status, text="x", headers={"server-timing": f"total;dur={seconds * 1000:.1f}"}
            )

        return httpx.MockTransport(handle)


def probe(
    slots: Slots,
    settings: ValidationSettings | None = None,
    policy: Analysis | None = None,
    compare: bool = True,
) -> ProbeResult:
    settings = settings or ValidationSettings(critical_endpoints=["/api/users", "/api/orders"])
    return asyncio.run(
        run_probe(
            TEST, LIVE if compare else None, settings, policy or Analysis(), transport=slots.transport()
        )
    )


def test_a_healthy_slot_passes_on_one_batch_compared_with_the_live_slot() -> None:
    slots = Slots(healthy)
    result = probe(slots)
    assert result.passed
    assert [b.verdict.outcome for b in result.batches] == [Outcome.PASS]
    batch = result.batches[0]
    assert (batch.new.requests, batch.new.errors) == (200, 0)
    assert batch.live is not None and batch.live.requests == 200
    assert batch.new.p99 == pytest.approx(0.095)
    assert "no worse than baseline" in result.verdict.reason
    # the batch cycles through the critical endpoints, the same requests to both listeners
    assert slots.paths[8080] == slots.paths[80] == ["/api/users", "/api/orders"] * 100


def test_an_error_spike_fails_on_the_error_rate_before_any_traffic() -> None:
    result = probe(Slots(lambda n, _: (500 if n % 8 == 0 else 200, 0.05)))
    assert not result.passed
    assert result.verdict.outcome is Outcome.FAIL
    assert result.batches[0].new.errors == 25
    assert "error rate 12.50% > 5.00%" in result.verdict.reason
    assert result.verdict.numbers["windows_failed"] == 1


def test_a_latency_regression_fails_on_the_p99_threshold_and_the_ratio() -> None:
    result = probe(Slots(lambda n, _: (200, 3.0 if n % 20 == 0 else 0.4)))
    assert not result.passed
    assert "p99 3s > 2s" in result.verdict.reason
    assert "x the baseline's" in result.verdict.reason


def test_one_slow_tail_on_a_small_batch_must_repeat_before_it_fails() -> None:
    """Three slow answers in the first 200 make its p99 9x the live slot's, below the threshold:
    held as a thin tail, and the next batch, which is fast, decides PASS."""
    result = probe(Slots(lambda n, _: (200, 0.9 if n in (1, 2, 3) else 0.05)))
    outcomes = [b.verdict.outcome for b in result.batches]
    assert outcomes == [Outcome.INCONCLUSIVE, Outcome.PASS]
    assert "on a thin tail (200 requests)" in result.batches[0].verdict.reason
    assert result.passed and result.requests == 400


def test_a_slow_tail_that_repeats_fails() -> None:
    result = probe(Slots(lambda n, _: (200, 0.9 if n % 200 in (1, 2, 3) else 0.05)))
    assert [b.verdict.outcome for b in result.batches] == [Outcome.INCONCLUSIVE, Outcome.FAIL]
    assert not result.passed


def test_batches_below_min_requests_are_carried_until_there_is_enough_data() -> None:
    settings = ValidationSettings(probe=Probe(requests=60))
    result = probe(Slots(healthy), settings=settings)
    assert [b.verdict.outcome for b in result.batches] == [Outcome.INCONCLUSIVE, Outcome.PASS]
    assert "only 60 requests (need 100)" in result.batches[0].verdict.reason
    assert result.requests == 120


def test_too_little_data_never_passes() -> None:
    """Without the live comparison nothing is carried: batches below min_requests are
    inconclusive until max_inconclusive, and the probe fails for lack of data."""
    settings = ValidationSettings(probe=Probe(requests=20))
    result = probe(Slots(healthy), settings=settings, policy=Analysis(max_inconclusive=2), compare=False)
    assert not result.passed
    assert len(result.batches) == 3
    assert result.verdict.reason.startswith("not enough data: 3 inconclusive windows")


def test_connection_errors_are_errors_and_thresholds_alone_judge_without_the_live_slot() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    settings = ValidationSettings(probe=Probe(requests=100))
    result = asyncio.run(run_probe(TEST, None, settings, Analysis(), transport=httpx.MockTransport(refused)))
    assert not result.passed
    assert result.batches[0].live is None
    assert (result.batches[0].new.requests, result.batches[0].new.errors) == (100, 100)
    assert "error rate 100.00% > 5.00%" in result.verdict.reason


def test_probe_requests_carry_the_validation_headers() -> None:
    slots = Slots(healthy)
    settings = ValidationSettings(headers={"X-Api-Key": "k-123"}, probe=Probe(requests=100))
    probe(slots, settings=settings)
    assert {h["x-api-key"] for h in slots.headers} == {"k-123"}


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("total;dur=123.4", 0.1234),
        ("db;dur=5, app;dur=50", 0.05),
        ('total;desc="all of it";dur=7', 0.007),
        ("db;dur=5", None),
        ("", None),
    ],
)
def test_server_timing_header(header: str, seconds: float | None) -> None:
    response = httpx.Response(200, headers={"server-timing": header} if header else {})
    assert server_timing(response) == (pytest.approx(seconds) if seconds is not None else None)


def test_probe_paths_fall_back_to_the_critical_endpoints_then_the_health_path() -> None:
    assert probe_paths(ValidationSettings()) == ["/health"]
    assert probe_paths(ValidationSettings(critical_endpoints=["/a"])) == ["/a"]
    assert probe_paths(ValidationSettings(critical_endpoints=["/a"], probe=Probe(paths=["/b"]))) == ["/b"]


@pytest.mark.parametrize(
    "probe", [{"requests": -1}, {"concurrency": 0}, {"paths": ["api"]}, {"compareLive": "maybe"}, {"x": 1}]
)
def test_bad_probe_settings_are_refused(probe: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ValidationSettings.model_validate({"probe": probe})


BASE = {"artifact": {"defaultAmi": "ami-0123456789abcdef0"}, "strategy": {"type": "blue-green"}}


def _validate_step(service: dict[str, object]) -> Validate:
    config = ServiceConfig.model_validate(service)
    release = ReleaseState.model_validate({"live": "blue", "blue": {"version": "v1", "capacity": 2}})
    steps = plan(config, config.strategy, release, "v2")
    return next(s for s in steps if isinstance(s, Validate))


def test_blue_green_plans_probe_in_its_validate_step_unless_turned_off() -> None:
    assert _validate_step(BASE).probe
    assert "under probe load" in _validate_step(BASE).describe()
    off = {**BASE, "validation": {"probe": {"requests": 0}}}
    assert not _validate_step(off).probe
    canary = {**BASE, "strategy": {"type": "canary"}}
    assert not _validate_step(canary).probe


@pytest.mark.parametrize("strategy", ["canary", "ab-test"])
def test_a_canary_or_ab_test_may_add_the_probe_as_a_gate_before_traffic(strategy: str) -> None:
    gated = {**BASE, "strategy": {"type": strategy}, "validation": {"probe": {"strategies": [strategy]}}}
    assert _validate_step(gated).probe
    # listing another strategy replaces the default: blue-green no longer probes
    assert not _validate_step({**gated, "strategy": {"type": "blue-green"}}).probe


def test_a_rolling_release_cannot_be_probed() -> None:
    with pytest.raises(ValidationError, match="blue-green"):
        ValidationSettings.model_validate({"probe": {"strategies": ["rolling"]}})


def test_a_canary_gated_by_the_probe_rolls_back_before_its_first_step() -> None:
    world = build_world(
        {NEW: Behaviour(error_rate=0.10)},
        service_changes={"validation": {"probe": {"strategies": ["canary"]}}},
    )
    record = world.deploy("canary")
    assert record.status is DeploymentStatus.ROLLED_BACK
    failed = next(s for s in record.steps if s.outcome == "failed")
    assert failed.kind == "validate" and "load probe of 200 requests" in failed.reason
    assert all(tag.kind != "set-weight" for tag in world.tags())


# --------------------------------------------------------------------------- through the driver


def test_a_blue_green_release_that_fails_its_probe_is_rolled_back_before_the_switch() -> None:
    world = build_world({NEW: Behaviour(error_rate=0.10)})
    ticks: list[events.Tick] = []
    record = world.deploy(
        "blue-green", listeners=[lambda e: ticks.append(e) if isinstance(e, events.Tick) else None]
    )

    assert record.status is DeploymentStatus.ROLLED_BACK
    failed = next(s for s in record.steps if s.outcome == "failed")
    assert failed.kind == "validate"
    assert failed.reason.startswith(
        "load probe of 200 requests (/api/users, /api/products, /api/orders) failed"
    )
    assert "error rate 10.00% > 5.00%" in failed.reason
    # no update ever gave the new slot traffic, and the probe's batch is on the record
    assert all(tag.kind != "set-weight" for tag in world.tags())
    probe_verdicts = [v for v in record.verdicts if v.numbers.get("probe")]
    assert [v.outcome for v in probe_verdicts] == ["FAIL"]
    assert probe_verdicts[0].numbers["baseline_requests"] == 200
    sample = record.samples[-1]
    assert sample.weights == {"blue": 100, "green": 0}
    assert sample.slots["green"]["errors"] == 20 and sample.slots["blue"]["requests"] == 200
    assert [t.reason for t in ticks] == [v.reason for v in probe_verdicts]
    assert world.release() == world.start and world.applied() == world.start


def test_a_healthy_blue_green_release_passes_its_probe_and_says_so() -> None:
    world = build_world()
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    validate = next(s for s in record.steps if s.kind == "validate")
    assert "load probe of 200 requests" in validate.reason and "passed" in validate.reason
    assert [v.outcome for v in record.verdicts if v.numbers.get("probe")] == ["PASS"]
    served = [path for path, version in world.http_requests if version == NEW and path.startswith("/api/")]
    assert len(served) == 3 + 200  # three critical checks, then one probe batch


def test_the_progress_line_of_a_probe_batch_shows_both_slots() -> None:
    import io

    from rfs_deploy.cli.progress import ProgressPrinter

    out = io.StringIO()
    world = build_world({NEW: Behaviour(p99=3.0)})
    world.deploy("blue-green", listeners=[ProgressPrinter(out, color=False)])
    line = next(text for text in out.getvalue().splitlines() if "probe:" in text and "FAIL" in text)
    assert "[blue 100%/green 0%]" in line
    assert "new: 200 req, err 0.50% | p99 3s | baseline err 0.50%, p99 0.25s" in line
    assert line.endswith("(tolerance 1.50x)")


def test_the_report_marks_probe_samples_and_only_those() -> None:
    from rfs_deploy.report import probe_samples, render_png

    world = build_world()
    record = world.deploy("blue-green")
    probed = probe_samples(record)
    assert len(probed) == 1 and probed[0].weights == {"blue": 100, "green": 0}
    assert len(record.samples) > 1, "the bake's samples (green at 100 %) are not probe samples"
    assert render_png(record).startswith(b"\x89PNG")


def test_the_probe_times_round_trips_on_the_drivers_clock_not_the_machines() -> None:
    """Under a virtual clock a simulated request takes no time of its own: CPU spent answering
    it (here: a real 30 ms sleep in one request of 20 to the idle slot, as a busy sandbox would)
    must not look like a slow new version. This rolled back a healthy release once, on a loaded
    machine, when the probe used the wall clock."""
    import time

    world = build_world(service_changes={"validation": {"criticalEndpoints": []}})  # probe /health
    answer = world.transport()
    calls = itertools.count()

    def slow_idle_slot(request: httpx.Request) -> httpx.Response:
        if request.url.port != 80 and next(calls) % 20 == 0:
            time.sleep(0.03)
        return answer.handle_request(request)

    seams = world.seams()
    seams.http_transport = httpx.MockTransport(slow_idle_slot)
    from rfs_deploy.drive.driver import Driver

    record = asyncio.run(Driver(seams).deploy("api-service", NEW, "blue-green"))
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    probe = [v for v in record.verdicts if v.numbers.get("probe")]
    assert [v.outcome for v in probe] == ["PASS"]
    assert probe[0].numbers["p99"] == 0  # /health reports no Server-Timing; no virtual time passed
