"""SandboxBackend: updates through the real program, history, outputs, lock, faults, sessions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rfs_deploy.drive.steps import DeployIdle
from rfs_deploy.errors import BackendError, StackBusy
from rfs_deploy.outputs import parse_outputs
from rfs_deploy.sim.sandbox import Sandbox

Open = Callable[..., Sandbox]


def in_service(box: Sandbox, asg: str) -> int:
    """Instances of the group InService, as moto holds them."""
    groups = box.aws.raw("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[asg])
    return sum(1 for i in groups["AutoScalingGroups"][0]["Instances"] if i["LifecycleState"] == "InService")


def test_first_update_creates_everything_and_exports_outputs(open_sandbox: Open) -> None:
    box = open_sandbox()
    [entry] = box.backend.history()
    assert (entry.version, entry.result) == (1, "succeeded")
    assert entry.release is not None and entry.release["api-service"].blue.version == "v1.0.0"
    out = parse_outputs(box.backend.outputs(), "api-service")
    elbv2 = box.aws.raw("elbv2")
    assert elbv2.describe_listeners(ListenerArns=[out.listener_arn])["Listeners"][0]["Port"] == 80
    assert in_service(box, out.slot("blue").asg_name) == 4
    assert in_service(box, out.slot("green").asg_name) == 0
    resources = box.backend.export()["deployment"]["resources"]
    assert {r["type"] for r in resources} >= {"aws:lb/listener:Listener", "aws:autoscaling/group:Group"}
    assert all(r["urn"].startswith("urn:pulumi:sandbox::") for r in resources)


def test_write_release_changes_only_the_release(open_sandbox: Open) -> None:
    box = open_sandbox()
    before = dict(box.backend.namespace)
    state = box.backend.read_config().release["api-service"]
    box.backend.write_release({"api-service": DeployIdle("v2.0.0", 2).apply(state)})
    after = box.backend.namespace
    assert {k for k in after if after[k] != before[k]} == {"release"}
    assert len(box.backend.history()) == 1  # nothing ran yet
    result = box.backend.up("deploy idle")
    assert result.version == 2 and result.changes.get("update", 0) >= 2
    newest = box.backend.history(limit=1)[0]
    # an untagged update after write_release takes the config's release state, and says so
    assert newest.message == "rfs-deploy[release=config] deploy idle"
    assert newest.release is not None and newest.release["api-service"].green.version == "v2.0.0"


def test_an_update_that_owns_no_release_keeps_the_live_one(open_sandbox: Open) -> None:
    """A plain update (``pulumi up``) with a stale release state in its config changes no weight
    and no version: the program keeps the live release state (rfs_deploy.releases)."""
    box = open_sandbox()
    live = box.backend.read_config().release["api-service"]
    stale = DeployIdle("v2.0.0", 2).apply(live)
    box.backend.namespace["release"] = {"api-service": stale.to_config()}  # a stale checkout
    result = box.backend.up("change the instance type")
    assert result.changes.get("update", 0) == 0
    newest = box.backend.history(limit=1)[0]
    assert newest.release is not None and newest.release["api-service"] == live
    assert box.backend.read_config().release["api-service"] == live


def test_concurrent_update_raises_stack_busy(open_sandbox: Open) -> None:
    box = open_sandbox()
    with box.backend.hold_lock(), pytest.raises(StackBusy, match="locked"):
        box.backend.up("second driver")
    assert box.backend.up("after the lock").version == 2


def test_injected_failures_are_recorded_in_history(open_sandbox: Open) -> None:
    box = open_sandbox()
    box.backend.fail_next_updates(2)
    for _ in range(2):
        with pytest.raises(BackendError, match="injected failure"):
            box.backend.up("doomed")
    assert [e.result for e in box.backend.history()] == ["failed", "failed", "succeeded"]
    assert box.backend.up("fine again").version == 4


def test_session_resumes_in_a_new_sandbox(open_sandbox: Open, tmp_path: Path) -> None:
    session = tmp_path / "session"
    box = open_sandbox(session_dir=session)
    state = box.backend.read_config().release["api-service"]
    box.backend.write_release({"api-service": DeployIdle("v2.0.0", 2).apply(state)})
    box.backend.up("deploy idle")
    outputs = box.backend.outputs()
    now = box.clock.now()
    box.close()

    again = open_sandbox(provision=False, session_dir=session, stack=None)
    assert [e.message for e in again.backend.history()] == [
        "rfs-deploy[release=config] deploy idle",
        "sandbox: create the stack",
    ]
    assert again.backend.outputs() == outputs
    assert again.clock.now() >= now
    out = parse_outputs(outputs, "api-service")
    green = out.slot("green")
    assert in_service(again, green.asg_name) == 2  # rebuilt with the same ARNs and names
    assert {i.version for i in again.world.fleet.of_group(green.asg_name)} == {"v2.0.0"}
    assert again.adapters.traffic.forward_weights(out.listener_arn)[out.slot("blue").target_group_arn] == 100
    assert again.backend.up("after resume").version == 3
