"""Why a deployment rolled back, in its record and its report: an alarm's numbers as a verdict,
and the timeline's data model (series, thresholds, failure markers, step labels) over real
driver runs on the fakes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from drive_world import NEW, SERVICE, World, build_world

from rfs_deploy.drive import events
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus, VerdictRecord
from rfs_deploy.errors import AwsError
from rfs_deploy.readback import AlarmDatapoint, AlarmDetails
from rfs_deploy.report import METRIC_PANELS, STYLES, failed_metric, render_png, timeline
from rfs_deploy.testing import Behaviour, FakeAlarms

P99_ALARM = f"{SERVICE}-green-p99"


def fire_on_analysis(world: World, name: str, details: AlarmDetails | None = None) -> Any:
    """A listener that makes ``name`` fire once the first analysis step starts."""
    if details is not None:
        world.alarms.details[name] = details

    def listener(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.kind == "analyze":
            world.alarms.firing_names.add(name)

    return listener


def p99_details(at: float) -> AlarmDetails:
    return AlarmDetails(
        name=P99_ALARM,
        metric="TargetResponseTime",
        metric_names=("TargetResponseTime",),
        threshold=2.0,
        comparison="GreaterThanThreshold",
        datapoints=(AlarmDatapoint(at - 120, 1.5), AlarmDatapoint(at - 60, 3.1)),
        reason="Threshold Crossed: 1 out of the last 2 datapoints [3.1] was greater than the threshold "
        "(2.0).",
        period=60,
        statistic="p99",
    )


def alarm_verdict(record: DeploymentRecord) -> VerdictRecord:
    (verdict,) = [v for v in record.verdicts if v.numbers.get("source") == "alarm"]
    return verdict


def test_an_alarm_that_ends_analysis_is_a_fail_verdict_with_its_numbers(world: World) -> None:
    at = world.clock.now()
    record = world.deploy("canary", listeners=[fire_on_analysis(world, P99_ALARM, p99_details(at))])

    assert record.status is DeploymentStatus.ROLLED_BACK
    verdict = alarm_verdict(record)
    assert verdict.outcome == "FAIL"
    assert verdict.reason.startswith(f"alarm {P99_ALARM} is firing: p99 3.1 > 2 in 1 of 2")
    numbers = verdict.numbers
    assert (numbers["alarm"], numbers["slot"], numbers["metric"]) == (P99_ALARM, "green", "p99")
    assert (numbers["threshold"], numbers["comparison"], numbers["period"]) == (
        2.0,
        "GreaterThanThreshold",
        60,
    )
    assert numbers["datapoints"] == [{"at": at - 120, "value": 1.5}, {"at": at - 60, "value": 3.1}]
    assert numbers["breaching"] == [{"at": at - 60, "value": 3.1}]
    assert numbers["value"] == 3.1
    # the window's own metrics, from the provider, as the judge's numbers would have them
    assert numbers["requests"] > 0 and numbers["p99"] == 0.25 and numbers["baseline_requests"] > 0
    sample = record.samples[-1]
    assert sample.at == verdict.at and sample.new_slot == "green" and sample.slots["green"]["requests"]
    assert verdict.step == next(s.index for s in record.steps if s.outcome == "failed")


def test_the_failure_marker_sits_on_the_alarms_panel_at_its_value(world: World) -> None:
    at = world.clock.now()
    record = world.deploy("canary", listeners=[fire_on_analysis(world, P99_ALARM, p99_details(at))])

    tl = timeline(record)

    (marker,) = tl.markers
    assert marker.panel == "p99" and marker.y == 3.1
    assert marker.x == pytest.approx((alarm_verdict(record).at - record.started_at) / 60)
    assert tl.thresholds["p99"] == 2.0
    assert [value for _, _, value in tl.alarm_points["p99"]] == [1.5, 3.1]
    x0, x1, _ = tl.alarm_points["p99"][1]
    assert x1 - x0 == pytest.approx(1.0)  # one 60 s period, in minutes
    assert [y for _, y in tl.series[("p99", "green")]] == [0.25]  # the panel that failed has data
    assert tl.rollback is not None and tl.rollback[2] == f"rollback to stack v{record.rolled_back_to}"
    assert tl.restored == {"green": (tl.rollback[1], 0.0), "blue": (tl.rollback[1], 100.0)}
    assert render_png(record).startswith(b"\x89PNG\r\n\x1a\n")


def test_an_alarm_without_numbers_still_ends_the_step_and_marks_the_weight_panel(world: World) -> None:
    record = world.deploy("canary", listeners=[fire_on_analysis(world, P99_ALARM)])

    verdict = alarm_verdict(record)
    assert verdict.reason == f"alarm {P99_ALARM} is firing"
    assert verdict.numbers["alarm"] == P99_ALARM
    assert verdict.numbers["threshold"] is None and verdict.numbers["datapoints"] == []
    (marker,) = timeline(record).markers
    assert (marker.panel, marker.y) == ("weight", 10.0)  # the canary's weight when it fired


@pytest.mark.parametrize(
    ("behaviour", "panel", "value"),
    [(Behaviour(p99=3.0), "p99", 3.0), (Behaviour(error_rate=0.2), "error_rate", 20.0)],
)
def test_a_judge_failure_is_marked_on_the_panel_of_the_metric_that_failed(
    behaviour: Behaviour, panel: str, value: float
) -> None:
    world = build_world({NEW: behaviour})
    record = world.deploy("canary")
    assert record.status is DeploymentStatus.ROLLED_BACK

    tl = timeline(record)

    fails = [v for v in record.verdicts if v.outcome == "FAIL"]
    assert [failed_metric(v)[0] for v in fails] == [panel] * len(fails)
    assert {m.panel for m in tl.markers} == {panel}
    assert tl.markers[0].y == pytest.approx(value, rel=0.02)
    ys = [y for x, y in tl.series[(panel, "green")] if x == tl.markers[0].x]
    assert ys == [tl.markers[0].y]  # the cross is on the new slot's line
    assert tl.thresholds[panel] == {"p99": 2.0, "error_rate": 5.0}[panel]


def test_ab_lines_differ_and_step_labels_never_share_a_place() -> None:
    world = build_world()
    record = world.deploy("ab-test")

    tl = timeline(record)

    blue = [y for _, y in tl.series[("weight", "blue")]]
    green = [y for _, y in tl.series[("weight", "green")]]
    assert 50.0 in blue and 50.0 in green  # the two 50 % lines lie on each other...
    assert STYLES["blue"]["ls"] != STYLES["green"]["ls"] and STYLES["blue"]["lw"] > STYLES["green"]["lw"]
    places = [(round(label.x, 6), label.row) for label in tl.step_labels]
    assert len(places) == len(set(places))
    covered: list[int] = []
    for label in tl.step_labels:
        first, _, last = label.text.partition("-")
        covered += range(int(first), int(last or first) + 1)
    assert sorted(covered) == sorted(s.index + 1 for s in record.steps)  # each step labelled once
    assert all(f"{s.index + 1} " in tl.legend for s in record.steps)
    assert set(METRIC_PANELS) == {"error_rate", "p99", "cpu"}


def test_a_rolling_rollback_draws_no_weight_swap() -> None:
    """A rolling release refreshes the live slot in place: its rollback moves no traffic."""
    world = build_world({NEW: Behaviour(p99=3.0)})
    record = world.deploy("rolling")
    assert record.status is DeploymentStatus.ROLLED_BACK

    tl = timeline(record)

    assert tl.rollback is not None and tl.restored == {}
    assert {m.panel for m in tl.markers} == {"p99"}


class UnreadableAlarms(FakeAlarms):
    """Alarm states read, their details not (DescribeAlarms throttled on the second call)."""

    def firing_details(self, names: Sequence[str]) -> list[AlarmDetails]:
        raise AwsError("CloudWatch DescribeAlarms: Rate exceeded")


def test_alarm_details_that_cannot_be_read_still_end_the_step_with_the_alarms_name() -> None:
    world = build_world()
    world.alarms = UnreadableAlarms()
    record = world.deploy("canary", listeners=[fire_on_analysis(world, P99_ALARM)])

    assert record.status is DeploymentStatus.ROLLED_BACK
    verdict = alarm_verdict(record)
    assert verdict.reason == f"alarm {P99_ALARM} is firing"
    assert (verdict.numbers["alarm"], verdict.numbers["slot"]) == (P99_ALARM, "green")
    assert any("its datapoints could not be read" in e and "Rate exceeded" in e for e in record.errors)
