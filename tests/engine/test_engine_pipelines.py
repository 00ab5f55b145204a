"""Pipelines on fresh runners, through the real engine: the release state lives in the backend.

Each "clone" is a fresh checkout of the project (Pulumi.yaml, __main__.py and the committed stack
file, whose release state says v1.0.0 on blue) on its own Pulumi home, sharing one state backend
(the file backend, or Pulumi's S3 backend on moto), as CI runners do. Nothing is committed back.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from engine_support import PROJECT, SERVICE, canary_stack, engine_sandbox

from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.pulumi_backend import PulumiBackend
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.sim.engine import EngineBackend, EngineSandbox, prepare_project


def clone(sandbox: EngineSandbox, stack_file: Path, directory: Path) -> EngineBackend:
    """A fresh checkout on its own runner: the committed files, its own Pulumi home."""
    prepare_project(PROJECT, directory, stack_file)
    backend = PulumiBackend(
        sandbox.backend.stack_name,
        directory,
        pulumi_root=sandbox.bin_dir.parent,
        env_vars=sandbox.env,
        pulumi_home=str(directory / "pulumi-home"),
    )
    return EngineBackend(backend, sandbox.box)


def deploy(sandbox: EngineSandbox, backend: EngineBackend, version: str) -> None:
    record = asyncio.run(Driver(sandbox.seams(backend)).deploy(SERVICE, version))
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert live_version(backend) == version


def live_version(backend: EngineBackend) -> str | None:
    release = backend.read_config().release[SERVICE]
    return release.slot(release.live).version


@pytest.mark.parametrize("state", ["file", "s3"])
def test_fresh_clones_sharing_a_backend_deploy_release_after_release(tmp_path: Path, state: str) -> None:
    stack_file = canary_stack(tmp_path)
    committed = stack_file.read_text()
    with engine_sandbox(stack_file, tmp_path / "runner-0", scenario="healthy", state=state) as sandbox:
        sandbox.provision()
        versions = ["v2.0.0", "v1.0.0", "v2.0.0"] if state == "file" else ["v2.0.0", "v1.0.0"]
        for run, version in enumerate(versions, start=1):
            runner = clone(sandbox, stack_file, tmp_path / f"runner-{run}")
            deploy(sandbox, runner, version)
            # the checkout was not written: a fresh runner never commits it back
            assert (runner.pulumi.work_dir / "stacks" / stack_file.name).read_text() == committed
        # what the load balancer serves is the last release
        newest = clone(sandbox, stack_file, tmp_path / "runner-last")  # one more fresh checkout
        out = newest.topology()[SERVICE]
        release = newest.read_config().release[SERVICE]
        assert release.slot(release.live).version == versions[-1]
        weights = sandbox.box.adapters.traffic.forward_weights(out.listener_arn)
        assert weights.get(out.slot(release.live).target_group_arn) == 100


def test_a_pulumi_up_from_a_stale_checkout_keeps_the_live_release(tmp_path: Path) -> None:
    stack_file = canary_stack(tmp_path)
    with engine_sandbox(stack_file, tmp_path / "runner-0", scenario="healthy") as sandbox:
        sandbox.provision()
        deployer = clone(sandbox, stack_file, tmp_path / "runner-1")
        deploy(sandbox, deployer, "v2.0.0")
        live = deployer.read_config().release[SERVICE]
        assert live.slot(live.live).version == "v2.0.0"

        # a person with a stale checkout (release: v1.0.0 on blue) runs plain `pulumi up`
        stale = tmp_path / "laptop"
        prepare_project(PROJECT, stale, stack_file)
        env = {**os.environ, **sandbox.env, "PULUMI_HOME": str(stale / "pulumi-home")}
        env.pop("RFS_DEPLOY_RELEASE_OWNER", None)
        done = subprocess.run(
            [
                str(sandbox.bin_dir / "pulumi"),
                "up",
                "--yes",
                "--skip-preview",
                "--stack",
                stack_file.stem[7:],
            ],
            cwd=stale,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "differs from the live release state" in done.stdout + done.stderr
        assert "keeping the live one" in done.stdout + done.stderr

        fresh = clone(sandbox, stack_file, tmp_path / "runner-2")
        assert fresh.read_config().release[SERVICE] == live
        newest = fresh.history(limit=1)[0]
        assert newest.result == "succeeded" and newest.release is not None
        assert newest.release[SERVICE] == live  # history says what the update applied
        out = fresh.topology()[SERVICE]
        weights = sandbox.box.adapters.traffic.forward_weights(out.listener_arn)
        assert weights.get(out.slot(live.live).target_group_arn) == 100
        # and the next pipeline deploys from there
        deploy(sandbox, fresh, "v1.0.0")
