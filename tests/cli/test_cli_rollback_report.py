"""A rollback explains itself, as a new user sees it: ``rfs-deploy --json simulate --scenario
error-spike --strategy canary --report DIR`` prints a record whose verdict carries the alarm's
numbers, and its timeline has data in the panel that failed with the failure marked on it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from cli_helpers import Place

from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.report import timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def saved_record(place: Place, deployment_id: str) -> DeploymentRecord:
    (path,) = [p for base in (place.state, place.cwd) for p in base.rglob(f"{deployment_id}.json")]
    return DeploymentRecord.from_json(json.loads(path.read_text(encoding="utf-8")))


def test_the_error_spike_canary_records_the_alarms_numbers_and_plots_them(place: Place) -> None:
    done = place.run(
        "--json", "simulate", "--scenario", "error-spike", "--strategy", "canary", "--report", "report"
    )
    assert done.code == 3, done.stderr
    payload = done.json()
    assert payload["status"] == "ROLLED_BACK"

    (verdict,) = payload["verdicts"]
    numbers = verdict["numbers"]
    assert verdict["outcome"] == "FAIL" and verdict["reason"].startswith(
        f"alarm {numbers['alarm']} is firing: "
    )
    assert "-5xx-green-" in numbers["alarm"]
    assert (numbers["source"], numbers["slot"], numbers["metric"]) == ("alarm", "green", "error_rate")
    assert numbers["threshold"] == 0.05 and numbers["comparison"] == "GreaterThanThreshold"
    assert numbers["datapoints"] and numbers["breaching"]
    assert all(p["value"] > 0.05 for p in numbers["breaching"])
    assert numbers["value"] == numbers["breaching"][-1]["value"] > 0.05
    assert numbers["requests"] > 0 and numbers["error_rate"] > 0.05  # the window's own metrics
    assert payload["summary"]["requests"] == numbers["requests"] > 0

    png, _ = (place.cwd / p for p in payload["report"])
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and struct.unpack(">II", data[16:24]) == (1100, 800)

    tl = timeline(saved_record(place, payload["deployment_id"]))
    (marker,) = tl.markers
    assert marker.panel == "error_rate" and marker.y == numbers["value"] * 100
    green = [y for _, y in tl.series[("error_rate", "green")]]
    assert green and all(y == y for y in green), "the panel that failed has the new slot's data"
    assert tl.alarm_points["error_rate"] and tl.thresholds["error_rate"] == 5.0
    assert tl.rollback is not None and tl.rollback[2] == "rollback to stack v1"
    assert Path(payload["report"][0]).parent == Path("report")
