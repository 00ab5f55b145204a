"""Step-list plans run by the driver on the fakes: what the list says is what happens (the gates'
run time is tested with the gates, in tests/drive/test_gates.py)."""

from __future__ import annotations

from drive_world import NEW, build_world

from rfs_deploy.drive.records import DeploymentStatus


def test_a_canary_step_list_without_gates_runs_as_written() -> None:
    world = build_world(
        service_changes={
            "strategy": {
                "type": "canary",
                "steps": [
                    {"setWeight": 10},
                    {"analyze": {"duration": "2m", "interval": "1m"}},
                    {"pause": "90s"},
                    {"setWeight": 30},
                    {"setWeight": 60},
                    {"analyze": "1m"},
                ],
            }
        }
    )
    record = world.deploy()
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert [s.kind for s in record.steps] == [
        "deploy-idle",
        "wait-healthy",
        "validate",
        "set-weight",
        "analyze",
        "pause",
        "scale-idle",
        "set-weight",
        "set-weight",
        "analyze",
        "scale-idle",
        "set-weight",
        "analyze",
        "promote",
        "scale-down",
    ]
    assert all(s.outcome == "passed" for s in record.steps)
    # 30 % is set and left without a verdict: only the analyze steps judge
    judged = {v.step for v in record.verdicts}
    assert judged == {i for i, s in enumerate(record.steps) if s.kind == "analyze"}
    assert world.release().slot(world.release().live).version == NEW


def test_a_blue_green_timed_pause_holds_before_the_switch() -> None:
    world = build_world()
    record = world.deploy(
        "blue-green", overrides={"strategy": {"steps": [{"pause": "45s"}], "switchDelay": 0}}
    )
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    kinds = [s.kind for s in record.steps]
    assert kinds[3:5] == ["pause", "set-weight"]
    pause = record.steps[3]
    assert "before the switch" in pause.description and pause.ended_at is not None
    assert pause.ended_at - pause.started_at >= 45
