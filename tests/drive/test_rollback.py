"""Restoring a checkpoint without a Runner: rollback.roll_back / restore on a DeploymentStack."""

from __future__ import annotations

import ast
from pathlib import Path

from drive_world import NEW, SERVICE, World, build_world, run, same_release
from source_tree import parse_file

from rfs_deploy.drive import events, rollback
from rfs_deploy.drive.journal import Checkpoint
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.drive.stack import VERIFY_POLL, VERIFY_TIMEOUT, DeploymentStack, time_budget
from rfs_deploy.testing import Behaviour

DRIVE = Path(__file__).resolve().parents[2] / "rfs_deploy" / "drive"


def left_open() -> tuple[World, DeploymentRecord, Checkpoint]:
    """A failed canary with automatic rollback off: open in history, the new version taking
    traffic, and the checkpoint it started from."""
    world = build_world(
        {NEW: Behaviour(error_rate=0.05)}, service_changes={"deploy": {"autoRollback": False}}
    )
    record = world.deploy("canary")
    assert record.status is DeploymentStatus.FAILED, record.errors
    found = world.latest()
    assert found.open and found.checkpoint is not None
    assert not same_release(world.applied(), world.start)
    return world, record, found.checkpoint


def stack_of(world: World, record: DeploymentRecord, checkpoint: Checkpoint) -> DeploymentStack:
    service = world.config_service()
    return DeploymentStack(world.seams(), record, checkpoint, record.started_at + time_budget(service, 0))


def test_restore_brings_the_checkpoint_back_on_a_stack_alone() -> None:
    world, record, checkpoint = left_open()
    before = world.stack.updates
    stack = stack_of(world, record, checkpoint)

    ok = run(rollback.restore(stack, attempts=3, reason="by hand", phase="abort"))

    assert ok is True
    assert record.rollback_attempts == 1
    assert same_release(world.release(), world.start)
    assert same_release(world.applied(), world.start)
    # one restoring update, then the confirmation once the world shows it
    assert world.stack.updates == before + 2
    restoring, confirmed = world.tags()[-2:]
    assert (restoring.phase, restoring.kind, restoring.wait) == ("abort", "abort", True)
    assert (confirmed.phase, confirmed.kind, confirmed.wait) == ("abort", "restored", False)
    for tag in (restoring, confirmed):
        assert (tag.deployment_id, tag.checkpoint) == (record.deployment_id, checkpoint.version)
        assert (tag.step, tag.total) == (0, 3)
        assert tag.settings is None  # restoring updates never carry the plan's settings digest
    assert world.latest().status == "aborted"


def test_roll_back_finishes_the_record_and_reports_without_a_runner() -> None:
    world, record, checkpoint = left_open()
    stack = stack_of(world, record, checkpoint)
    seen = len(world.events)

    run(rollback.roll_back(stack, world.config_service().deploy, "asked", on_request=True, phase="abort"))

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert record.rolled_back_to == checkpoint.version
    assert record.ended_at is not None
    kinds = [type(e) for e in world.events[seen:]]
    assert kinds[0] is events.RollbackStarted
    assert kinds[-1] is events.DeploymentFinished
    assert world.events[-1].reason == "rolled back: asked"


def test_a_restore_the_load_balancer_never_shows_fails_with_the_recovery_command() -> None:
    world, record, checkpoint = left_open()
    # the restored weights stay invisible longer than every attempt's check waits
    world.cloud.weight_lag_reads = 10 * (VERIFY_TIMEOUT // VERIFY_POLL + 1)
    stack = stack_of(world, record, checkpoint)
    attempts = world.config_service().deploy.max_rollback_attempts

    run(rollback.roll_back(stack, world.config_service().deploy, "asked", on_request=True))

    assert record.status is DeploymentStatus.FAILED
    assert record.rollback_attempts == attempts
    assert record.recovery == (
        f"rfs-deploy rollback --stack {record.stack} --service {SERVICE} --to {checkpoint.version}"
    )
    failures = [e for e in record.errors if e.startswith("rollback attempt")]
    assert len(failures) == attempts
    assert all("load balancer does not show the change" in e for e in failures)


def test_the_driver_restores_without_building_a_runner() -> None:
    """abort, rollback and an interrupted restore call rollback.roll_back directly: the driver
    builds a Runner only for a plan (deploy; resume and promote through _continue) and reaches
    into none of its private parts."""
    tree = parse_file(DRIVE / "driver.py")
    builders: set[str] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Runner":
                builders.add(function.name)
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "runner"
                and node.attr.startswith("_")
            ):
                raise AssertionError(f"driver.{function.name} uses runner.{node.attr}")
    assert builders == {"deploy", "_continue"}
    assert "Runner" not in (DRIVE / "rollback.py").read_text()
