"""The journal tag of every update is built in one place: DeploymentStack (drive/stack.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from drive_world import NEW, World, build_world
from source_tree import parse_file

from rfs_deploy.drive.journal import settings_digest
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.drive.stack import LEASE_MARGIN, DeploymentStack
from rfs_deploy.journal_tags import PHASES, PROGRESS_PHASES, JournalTag, this_owner
from rfs_deploy.testing import Behaviour

DRIVE = Path(__file__).resolve().parents[2] / "rfs_deploy" / "drive"


def deployment_tags(world: World, deployment_id: str) -> list[JournalTag]:
    return [t for t in world.tags() if t.deployment_id == deployment_id]


@pytest.mark.parametrize("healthy", [True, False], ids=["promoted", "rolled-back"])
def test_every_update_of_a_deployment_says_the_same_about_it(healthy: bool) -> None:
    world = build_world(None if healthy else {NEW: Behaviour(error_rate=0.05)})
    record = world.deploy("canary")
    expected = DeploymentStatus.COMPLETED if healthy else DeploymentStatus.ROLLED_BACK
    assert record.status is expected, record.errors

    tags = deployment_tags(world, record.deployment_id)
    assert len(tags) == world.stack.updates  # every update the deployment ran
    digest = settings_digest(world.config_service())
    assert len({tag.owner for tag in tags}) == 1, "one driver run wrote them all"
    for tag in tags:
        assert (tag.service, tag.version, tag.strategy) == (record.service, NEW, "canary")
        assert tag.checkpoint == 1
        assert tag.owner is not None and tag.owner.startswith(this_owner() + "+")
        assert tag.lease is not None
        # plan updates name the settings their plan was made from; restoring updates do not
        assert tag.settings == (digest if tag.phase in PROGRESS_PHASES else None)
    phases = {t.phase for t in tags}
    assert phases == ({"step"} if healthy else {"step", "rollback"})


def test_the_stack_tags_each_phase_from_the_deployment() -> None:
    world = build_world()
    record = world.deploy("canary")
    found = world.latest()
    assert found.checkpoint is not None
    deadline = world.clock.now() + 600
    stack = DeploymentStack(world.seams(), record, found.checkpoint, deadline, settings="0123456789ab")

    for phase in PHASES:
        wait = phase in ("rollback", "abort")
        tag = stack.tag(step=1, total=4, kind="pause", phase=phase, wait=wait)
        assert (tag.deployment_id, tag.service, tag.version, tag.strategy) == (
            record.deployment_id,
            record.service,
            record.version,
            record.strategy,
        )
        assert (tag.step, tag.total, tag.kind, tag.phase, tag.wait) == (1, 4, "pause", phase, wait)
        assert tag.checkpoint == found.checkpoint.version
        assert tag.settings == ("0123456789ab" if phase in PROGRESS_PHASES else None)
        assert tag.lease is not None and tag.lease >= 600 + LEASE_MARGIN


def _calls(path: Path) -> set[str]:
    """Names called in ``path``: ``f(...)`` and ``journal.f(...)`` as ``f``, ``x.f(...)`` as
    ``.f``, and methods handed to ``asyncio.to_thread`` as ``.f`` too."""
    found: set[str] = set()
    for node in ast.walk(parse_file(path)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            found.add(func.id)
        elif isinstance(func, ast.Attribute):
            found.add(f".{func.attr}")
            if isinstance(func.value, ast.Name) and func.value.id in ("journal", "journal_tags"):
                found.add(func.attr)  # journal.encode(...) is encode(...)
            if func.attr == "to_thread" and node.args and isinstance(node.args[0], ast.Attribute):
                found.add(f".{node.args[0].attr}")
    return found


def test_only_the_stack_module_writes_updates_and_builds_tags() -> None:
    """In drive/, a stack update is run, a release state written and a tag built or encoded in
    stack.py alone (pulumi_backend.py is the backend itself; the codec, rfs_deploy/journal_tags.py,
    lies outside drive/)."""
    writers: dict[str, set[str]] = {}
    for path in sorted(DRIVE.rglob("*.py")):
        calls = _calls(path) & {"JournalTag", "encode", ".up", ".write_release"}
        if calls:
            writers[str(path.relative_to(DRIVE))] = calls
    writers.pop("pulumi_backend.py", None)
    assert writers == {"stack.py": {"JournalTag", "encode", ".up", ".write_release"}}


def test_the_settings_digest_names_the_plan_not_who_is_told_or_what_runs_beside_it() -> None:
    """Hooks and webhooks do not make the plan: editing them while a deployment is paused must not
    lock promote out, and the digest of the same service without them is unchanged."""
    base = build_world().config_service()
    told = build_world(
        service_changes={
            "webhooks": [{"name": "chat", "type": "event", "url": "https://hooks.example.com/x"}],
            "hooks": {"postRollback": [{"command": ["true"]}]},
        }
    ).config_service()
    assert told.webhooks and told.hooks.post_rollback
    assert settings_digest(told) == settings_digest(base)
    slower = build_world(service_changes={"strategy": {"type": "canary", "canaryInterval": 120}})
    assert settings_digest(slower.config_service()) != settings_digest(base)
