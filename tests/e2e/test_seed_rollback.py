"""The seed's checkpoint practice against the sandbox: checkpoint, release, roll back to it.

``RollbackManager.create_checkpoint`` before a release (with configuration and environment
variables holding secrets), a canary of v2.0.0 through the seed's strategy API, then
``rollback_to_checkpoint``: the stack is back at v1.0.0 and no secret value reached the disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_world import NEW, OLD, SERVICE, STACK, sandbox_of

from rfs_deploy import seed_support
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.outputs import parse_outputs
from rfs_deploy.rollback import RollbackManager
from rfs_deploy.strategies import CanaryStrategy, DeploymentConfig, DeploymentType

SECRETS = ("hunter2-db-password", "tok-3f9a1c7e")


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("RFS_DEPLOY_BACKEND", "sim")
    monkeypatch.setenv("RFS_DEPLOY_SCENARIO", "healthy")
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    seed_support.reset()
    yield tmp_path / "state"
    seed_support.reset()


def test_checkpoint_release_and_roll_back_to_it(state: Path) -> None:
    manager = RollbackManager()
    checkpoint = asyncio.run(
        manager.create_checkpoint(
            service_name=SERVICE,
            version=OLD,
            configuration={"database": {"password": SECRETS[0]}, "replicas": 10},
            environment_variables={"API_TOKEN": SECRETS[1], "LOG_LEVEL": "info"},
        )
    )
    assert checkpoint.stack_version == 1 and checkpoint.release["blue"]["version"] == OLD

    strategy = CanaryStrategy(DeploymentConfig(deployment_type=DeploymentType.CANARY))
    released = asyncio.run(strategy.deploy(service_name=SERVICE, new_version=NEW))
    assert released.is_success(), released
    seams = seed_support.seams_for(STACK)
    assert seams.backend.read_config().release[SERVICE].slot("green").version == NEW

    restored = asyncio.run(manager.rollback_to_checkpoint(checkpoint.checkpoint_id))
    assert restored.is_success(), restored
    assert restored.value.status is DeploymentStatus.ROLLED_BACK and restored.value.rolled_back_to == 1
    release = seams.backend.read_config().release[SERVICE]
    assert release.to_config() == checkpoint.release
    out = parse_outputs(seams.backend.outputs(), SERVICE)
    box = sandbox_of(seams)
    box.world.fleet.sync(box.clock.now())
    live = [i.version for i in box.world.fleet.of_group(out.slot(release.live).asg_name)]
    assert live == [OLD] * 10
    assert manager.environment_drift(checkpoint, {"API_TOKEN": SECRETS[1], "LOG_LEVEL": "debug"}) == [
        "LOG_LEVEL"
    ]

    seed_support.reset()  # the sandbox session is saved on close
    for path in state.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert not any(secret.encode() in text for secret in SECRETS), path
