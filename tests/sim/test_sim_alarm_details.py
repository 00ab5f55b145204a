"""The sandbox's alarm evaluator writes StateReasonData like CloudWatch, and the production
adapter reads an alarm's numbers back from it (moto stores the document as given)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from rfs_deploy.drive.steps import DeployIdle, SetWeight
from rfs_deploy.sim.sandbox import Sandbox

Open = Callable[..., Sandbox]


def release_step(box: Sandbox, step: object, message: str) -> None:
    state = box.backend.read_config().release["api-service"]
    box.backend.write_release({"api-service": step.apply(state)})  # type: ignore[attr-defined]
    box.backend.up(message)


def test_a_firing_sandbox_alarm_reports_its_threshold_and_datapoints(open_sandbox: Open) -> None:
    box = open_sandbox("error-spike")
    out = box.topology()["api-service"]
    release_step(box, DeployIdle("v2.0.0", 4), "deploy idle")
    asyncio.run(box.clock.sleep(120))
    release_step(box, SetWeight(20), "weight 20")
    asyncio.run(box.clock.sleep(180))
    green = list(out.slot("green").alarm_names)

    details = box.adapters.alarms.firing_details(green)

    assert [d.name for d in details] == [green[0]]  # the 5xx-rate alarm, as firing() says
    alarm = details[0]
    assert alarm.metric == "IF(requests >= 50, FILL(errors, 0) / requests, 0)"  # minRequests / 2
    assert "HTTPCode_Target_5XX_Count" in alarm.metric_names
    assert alarm.threshold == 0.05 and alarm.comparison == "GreaterThanThreshold"
    assert alarm.period == 60
    assert alarm.datapoints, "the evaluated datapoints come back from StateReasonData"
    assert all(p.at is not None and p.at % 60 == 0 for p in alarm.datapoints)
    assert alarm.breaching and all(p.value is not None and p.value > 0.05 for p in alarm.breaching)
    assert 0.08 < alarm.breaching[-1].value < 0.2  # type: ignore[operator]  # the scenario's 12 % errors
    assert "breached 0.05" in alarm.reason

    raw = box.aws.raw("cloudwatch").describe_alarms(AlarmNames=[green[0]])["MetricAlarms"][0]
    data = json.loads(raw["StateReasonData"])
    assert data["version"] == "1.0" and data["threshold"] == 0.05 and data["period"] == 60
    assert data["recentDatapoints"] == [p["value"] for p in data["evaluatedDatapoints"]]
    assert data["evaluatedDatapoints"][0]["timestamp"].endswith(":00.000+0000")
    assert box.adapters.alarms.firing_details(list(out.slot("blue").alarm_names)) == []
