"""A deployment's life across processes: deploy, status, history; killed, then resumed or aborted.

Each command is a new process over the same ``RFS_DEPLOY_STATE``: the sandbox session and the
deployment records are all that carries over, as on a CI runner that lost its job.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from cli_helpers import SERVICE, STACK, Place

from rfs_deploy.config.model import SLOTS
from rfs_deploy.connect import open_seams
from rfs_deploy.outputs import parse_outputs

DEPLOY = ("deploy", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0", "--strategy", "canary")
#: The progress line of the step to kill at: step 6 (weight 20%) finished, step 7 began.
KILL_AT = "step 7/25:"


def test_deploy_then_status_then_history(place: Place) -> None:
    done = place.run("--json", *DEPLOY)
    assert done.code == 0, done.stderr
    deployment = done.json()["deployment_id"]

    status = place.run("--json", "status", "--stack", STACK)
    assert status.code == 0, status.stderr
    payload = status.json()
    assert payload["deployment_id"] == deployment
    assert (payload["status"], payload["progress"], payload["journal"]) == ("COMPLETED", 100, "completed")

    text = place.run("status", "--stack", STACK, deployment[:4])  # a unique prefix names it
    assert text.code == 0 and text.stdout.startswith(f"{deployment}: COMPLETED 100%")

    history = place.run("--json", "history", "--stack", STACK, "--limit", "50")
    assert history.code == 0, history.stderr
    entries = history.json()
    [listed] = entries["deployments"]
    assert (listed["deployment_id"], listed["status"]) == (deployment, "COMPLETED")
    assert listed["service"] == SERVICE
    assert (listed["from_version"], listed["version"], listed["strategy"]) == ("v1.0.0", "v2.0.0", "canary")
    assert (listed["step"], listed["total_steps"], listed["source"]) == (25, 25, "journal+record")
    stack = entries["stack_history"]
    assert [e["version"] for e in stack] == list(range(len(stack), 0, -1))
    assert all(e["result"] == "succeeded" for e in stack)
    assert sum(f"dep={deployment}" in e["message"] for e in stack) == 13  # one update per change step


def kill_partway(place: Place) -> None:
    """Start a canary deployment and SIGKILL it once its progress shows step 7 began."""
    process = place.start(*DEPLOY)
    assert process.stderr is not None
    seen: list[str] = []
    try:
        for line in process.stderr:
            seen.append(line)
            if KILL_AT in line:
                os.kill(process.pid, signal.SIGKILL)
                break
    finally:
        process.wait(timeout=300)
        process.stderr.close()
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    assert not any("deployment COMPLETED" in line for line in seen)


def open_deployment(place: Place) -> dict[str, Any]:
    status = place.run("--json", "status", "--stack", STACK)
    assert status.code == 0, status.stderr
    payload: dict[str, Any] = status.json()
    assert payload["status"] == "IN_PROGRESS" and payload["journal"] == "in-progress"
    return payload


def test_killed_deploy_is_finished_by_resume_in_a_new_process(place: Place) -> None:
    kill_partway(place)
    killed = open_deployment(place)
    assert 6 <= killed["current_step"] + 1 < 25

    resumed = place.run("--json", "resume", "--stack", STACK)
    assert resumed.code == 0, resumed.stderr
    payload = resumed.json()
    assert payload["deployment_id"] == killed["deployment_id"]
    assert payload["status"] == "COMPLETED" and payload["exit_code"] == 0
    assert any(e.startswith("resumed at step") for e in payload["errors"])

    after = place.run("--json", "status", "--stack", STACK).json()
    assert (after["status"], after["journal"]) == ("COMPLETED", "completed")
    world = read_world(place)
    assert world["live_version"] == "v2.0.0" and world["weights"] == {"blue": 0, "green": 100}
    assert world["release"] != world["checkpoint_release"]


def test_killed_deploy_is_rolled_back_by_abort_in_a_new_process(place: Place) -> None:
    kill_partway(place)
    killed = open_deployment(place)

    aborted = place.run("--json", "abort", "--stack", STACK)
    assert aborted.code == 0, aborted.stderr  # the abort asked for did what it was asked
    payload = aborted.json()
    assert payload["deployment_id"] == killed["deployment_id"]
    assert payload["status"] == "ROLLED_BACK" and payload["exit_code"] == 0 and payload["on_request"]

    after = place.run("--json", "status", "--stack", STACK).json()
    assert (after["status"], after["journal"], after["requested"]) == ("ROLLED_BACK", "aborted", True)
    assert after["deployment_exit_code"] == 0
    world = read_world(place, checkpoint=payload["rolled_back_to"])
    assert world["release"] == world["checkpoint_release"]
    assert world["live_version"] == "v1.0.0" and world["weights"] == {"blue": 100, "green": 0}
    assert world["in_service"] == {"blue": 10, "green": 0}
    assert world["healthy"]["blue"] == 10


def in_service(seams: Any, asg: str) -> int:
    """Instances of the group InService, read through the sandbox's Auto Scaling client."""
    groups = seams.fleet._client.describe_auto_scaling_groups(AutoScalingGroupNames=[asg])
    return sum(1 for i in groups["AutoScalingGroups"][0]["Instances"] if i["LifecycleState"] == "InService")


def read_world(place: Place, checkpoint: int = 1) -> dict[str, Any]:
    """The session the commands left, opened in this process: config, listener, fleet."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in place.env().items():
            if key.startswith("RFS_DEPLOY_"):
                mp.setenv(key, value)
        seams = open_seams(STACK, backend="sim")
        try:
            history = {e.version: e for e in seams.backend.history()}
            release = seams.backend.read_config().release[SERVICE]
            entry = history[checkpoint]
            assert entry.result == "succeeded" and entry.release is not None
            out = parse_outputs(seams.backend.outputs(), SERVICE)
            by_tg = {out.slot(s).target_group_arn: s for s in SLOTS}
            weights = {by_tg[a]: w for a, w in seams.traffic.forward_weights(out.listener_arn).items()}
            return {
                "release": release.to_config(),
                "checkpoint_release": entry.release[SERVICE].to_config(),
                "live_version": release.slot(release.live).version,
                "weights": {s: weights.get(s, 0) for s in SLOTS},
                "in_service": {s: in_service(seams, out.slot(s).asg_name) for s in SLOTS},
                "healthy": {
                    s: seams.traffic.target_health(out.slot(s).target_group_arn).healthy for s in SLOTS
                },
            }
        finally:
            seams.close()
