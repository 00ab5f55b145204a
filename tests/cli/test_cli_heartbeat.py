"""Heartbeat events from the runner's waits, on the driver's fakes (virtual time): a wait made of
many short polls (a slot that never turns healthy) is reported every 30 s of the step, as a long
pause is (the sandbox's blue-green run in test_cli_pipeline.py)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drive"))

from drive_world import NEW, build_world

from rfs_deploy.drive import events
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.testing import Behaviour


def test_health_polls_of_one_step_are_reported_every_30_seconds() -> None:
    world = build_world({NEW: Behaviour(healthy=False)})
    record = world.deploy("canary")
    assert record.status is DeploymentStatus.ROLLED_BACK

    start = next(e for e in world.events if isinstance(e, events.StepStarted) and e.kind == "wait-healthy")
    end = next(e for e in world.events if isinstance(e, events.StepFinished) and e.kind == "wait-healthy")
    during = world.events[world.events.index(start) : world.events.index(end) + 1]
    beats = [e for e in during if isinstance(e, events.Heartbeat)]
    assert len(beats) >= 19  # 600 s of polling
    assert {b.label for b in beats} == {start.description} and {b.total for b in beats} == {None}
    assert [b.waited for b in beats] == [30 * (i + 1) for i in range(len(beats))]
    assert max(b.at - a.at for a, b in itertools.pairwise(during)) <= 30


def test_a_healthy_release_beats_only_in_its_long_waits() -> None:
    world = build_world()
    record = world.deploy("blue-green")
    assert record.status is DeploymentStatus.COMPLETED
    beats = [e for e in world.events if isinstance(e, events.Heartbeat)]
    pauses = {b.label: b.total for b in beats if b.total is not None}
    assert set(pauses) == {"switch delay", "scale-down delay"}
    timeline = [e.at for e in world.events]
    assert max(b - a for a, b in itertools.pairwise(timeline)) <= 60
