"""Pipelines on fresh runners, through the real engine: the release state lives in the backend.

Each "runner" is a fresh checkout of the project (Pulumi.yaml, __main__.py and the committed
stack file, whose release state says v1.0.0 on blue) with its own Pulumi home, sharing one state
backend (the file backend, or Pulumi's S3 backend on moto), as CI runners do. Nothing is ever
committed back.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from engine_support import PROJECT, SERVICE, canary_stack, engine_sandbox

from rfs_deploy.config.model import ReleaseState
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.pulumi_backend import PulumiBackend
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.sim.engine import EngineBackend, EngineSandbox, prepare_project


def checkout(
    sandbox: EngineSandbox, stack_file: Path, directory: Path, qualified: bool = False
) -> EngineBackend:
    """A fresh checkout on its own runner: the committed files, its own Pulumi home. With
    ``qualified`` it names the stack ``organization/rfs-deploy/<stack>``, as Pulumi Cloud users do
    (``organization`` is the file backend's organization)."""
    prepare_project(PROJECT, directory, stack_file)
    name = sandbox.backend.stack_name
    backend = PulumiBackend(
        f"organization/rfs-deploy/{name}" if qualified else name,
        directory,
        pulumi_root=sandbox.bin_dir.parent,
        env_vars=sandbox.env,
        pulumi_home=str(directory / "pulumi-home"),
    )
    return EngineBackend(backend, sandbox.box)


def deploy(sandbox: EngineSandbox, backend: EngineBackend, version: str) -> ReleaseState:
    record = asyncio.run(Driver(sandbox.seams(backend)).deploy(SERVICE, version))
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    release = backend.read_config().release[SERVICE]
    assert release.slot(release.live).version == version
    return release


def serving(sandbox: EngineSandbox, backend: EngineBackend, release: ReleaseState) -> int:
    """The production listener's weight on ``release``'s live slot, as the load balancer has it."""
    out = backend.topology()[SERVICE]
    weights = sandbox.box.adapters.traffic.forward_weights(out.listener_arn)
    return weights.get(out.slot(release.live).target_group_arn, 0)


def stale_pulumi_up(sandbox: EngineSandbox, stack_file: Path, directory: Path) -> str:
    """Plain `pulumi up` by a person whose checkout still says v1.0.0 on blue; its output."""
    prepare_project(PROJECT, directory, stack_file)
    env = {**os.environ, **sandbox.env, "PULUMI_HOME": str(directory / "pulumi-home")}
    env.pop("RFS_DEPLOY_RELEASE_OWNER", None)
    stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
    done = subprocess.run(
        [str(sandbox.bin_dir / "pulumi"), "up", "--yes", "--skip-preview", "--stack", stack],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout + done.stderr


def test_fresh_checkouts_sharing_a_file_backend_release_after_release(tmp_path: Path) -> None:
    stack_file = canary_stack(tmp_path)
    with engine_sandbox(stack_file, tmp_path / "runner-0", scenario="healthy") as sandbox:
        sandbox.provision()
        # what the team commits after `pulumi stack init`: the file with the stack's encryption
        # salt, which Pulumi adds to a passphrase stack's file (later checkouts start from it)
        stack_file.write_text((tmp_path / "runner-0" / "stacks" / stack_file.name).read_text())
        committed = stack_file.read_text()
        assert "encryptionsalt" in committed
        first = checkout(sandbox, stack_file, tmp_path / "runner-1")
        live = deploy(sandbox, first, "v2.0.0")

        # plain `pulumi up` from a stale checkout keeps the live release, and says so
        said = stale_pulumi_up(sandbox, stack_file, tmp_path / "laptop")
        assert "differs from the live release state" in said and "keeping the live one" in said
        second = checkout(sandbox, stack_file, tmp_path / "runner-2")
        assert second.read_config().release[SERVICE] == live
        newest = second.history(limit=1)[0]
        assert newest.result == "succeeded" and newest.release is not None
        assert newest.release[SERVICE] == live  # history says what that update applied
        assert serving(sandbox, second, live) == 100

        # the next pipelines, each on a fresh checkout, go on from the live state
        back = deploy(sandbox, second, "v1.0.0")
        third = checkout(sandbox, stack_file, tmp_path / "runner-3", qualified=True)
        assert third.read_config().release[SERVICE] == back
        final = deploy(sandbox, third, "v2.0.0")
        assert serving(sandbox, checkout(sandbox, stack_file, tmp_path / "runner-4"), final) == 100
        for runner in ("runner-1", "runner-2", "runner-3", "laptop"):
            # no checkout was written: a fresh runner never commits anything back
            assert (tmp_path / runner / "stacks" / stack_file.name).read_text() == committed


@pytest.mark.parametrize("state", ["s3"])
def test_fresh_checkouts_sharing_pulumis_s3_backend(tmp_path: Path, state: str) -> None:
    stack_file = canary_stack(tmp_path)
    with engine_sandbox(stack_file, tmp_path / "runner-0", scenario="healthy", state=state) as sandbox:
        assert sandbox.env["PULUMI_BACKEND_URL"].startswith("s3://")
        sandbox.provision()
        deploy(sandbox, checkout(sandbox, stack_file, tmp_path / "runner-1"), "v2.0.0")
        second = checkout(sandbox, stack_file, tmp_path / "runner-2")
        back = deploy(sandbox, second, "v1.0.0")
        assert serving(sandbox, checkout(sandbox, stack_file, tmp_path / "runner-3"), back) == 100
