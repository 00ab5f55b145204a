"""The driver through the real engine: PulumiBackend, Automation API, stack history as the journal.

Real: the Pulumi CLI and engine, Pulumi's Python SDK, the program, the driver and the production
AWS adapters (over a moto server). Doubles: the AWS provider (rfs_deploy.sim.provider), moto, and
the sandbox physics as the source of traffic and metrics (scenarios ``healthy`` / ``error-spike``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from engine_support import SERVICE, canary_stack, cli_history, engine_sandbox, journal_tags
from pulumi import automation as auto

from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.errors import StackBusy


def test_a_healthy_canary_completes_and_stack_history_is_its_journal(tmp_path: Path) -> None:
    with engine_sandbox(canary_stack(tmp_path), tmp_path / "work", scenario="healthy") as sandbox:
        sandbox.provision()
        record = asyncio.run(Driver(sandbox.seams()).deploy(SERVICE, "v2.0.0"))

        assert record.status is DeploymentStatus.COMPLETED, record.errors
        release = sandbox.backend.read_config().release[SERVICE]
        live = release.slot(release.live)
        assert live.version == "v2.0.0"
        assert release.weights[release.live] == 100

        entries = cli_history(sandbox)
        assert all(e["result"] == "succeeded" for e in entries)
        tags = journal_tags(entries)
        assert tags, "every driver update is tagged in `pulumi stack history`"
        assert {t.deployment_id for t in tags} == {record.deployment_id}
        assert [t.phase for t in tags][-1] in ("step", "done")
        # the launch template of the live slot boots v2.0.0 in moto
        assert any(i.version == "v2.0.0" for i in sandbox.box.world.fleet.instances.values()), (
            "moto runs the new version"
        )


def test_a_failing_canary_step_rolls_back_to_the_prior_checkpoint(tmp_path: Path) -> None:
    with engine_sandbox(canary_stack(tmp_path), tmp_path / "work", scenario="error-spike") as sandbox:
        sandbox.provision()
        before = sandbox.backend.read_config().release[SERVICE]
        checkpoint = sandbox.backend.history(limit=1)[0].version

        record = asyncio.run(Driver(sandbox.seams()).deploy(SERVICE, "v2.0.0"))

        assert record.status is DeploymentStatus.ROLLED_BACK, record.errors
        assert record.rolled_back_to == checkpoint
        after = sandbox.backend.read_config().release[SERVICE]
        assert after.live == before.live and after.weights == before.weights
        assert after.slot(after.live).version == "v1.0.0"

        tags = journal_tags(cli_history(sandbox))
        phases = [t.phase for t in tags]
        assert "step" in phases and phases[-1] == "rollback"
        assert tags[-1].checkpoint == checkpoint


def test_a_second_driver_on_the_same_stack_gets_the_lock_error(tmp_path: Path) -> None:
    with engine_sandbox(canary_stack(tmp_path), tmp_path / "work", scenario="healthy") as sandbox:
        sandbox.provision()
        # a change that is not a release (new tags on every resource): the release checkpoint holds
        tags = auto.ConfigValue(value=json.dumps({"team": "platform", "cost-centre": "42"}))
        sandbox.backend.pulumi.stack.set_config("rfs-deploy:tags", tags)
        failures: list[BaseException] = []

        def first_update() -> None:
            try:
                sandbox.backend.up("an update in flight")
            except BaseException as exc:
                failures.append(exc)

        with sandbox.service.hold():  # the provider's first call waits: the update holds the lock
            seen = sandbox.service.received
            worker = threading.Thread(target=first_update)
            worker.start()
            deadline = time.monotonic() + 120
            while sandbox.service.received == seen and time.monotonic() < deadline:
                time.sleep(0.2)
            assert sandbox.service.received > seen, "the first update reached the provider"

            second = Driver(sandbox.seams(sandbox.new_backend()))
            with pytest.raises(StackBusy, match="locked"):
                asyncio.run(second.deploy(SERVICE, "v2.0.0"))
        worker.join(timeout=300)
        assert not failures, failures
        assert [e["result"] for e in cli_history(sandbox)] == ["succeeded", "succeeded"]


def test_the_canary_runs_with_the_state_in_pulumis_s3_backend_on_moto(tmp_path: Path) -> None:
    with engine_sandbox(canary_stack(tmp_path), tmp_path / "work", scenario="healthy", state="s3") as sandbox:
        assert sandbox.env["PULUMI_BACKEND_URL"].startswith("s3://")
        sandbox.provision()
        record = asyncio.run(Driver(sandbox.seams()).deploy(SERVICE, "v2.0.0"))
        assert record.status is DeploymentStatus.COMPLETED, record.errors

        s3 = sandbox.box.aws.raw("s3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="rfs-deploy-pulumi-state")["Contents"]]
        assert any(k.startswith(".pulumi/stacks/") and k.endswith(".json") for k in keys), keys
        assert any(k.startswith(".pulumi/history/") for k in keys), keys
        assert not (tmp_path / "work" / "state" / ".pulumi").exists(), "nothing went to the file backend"
        tags = journal_tags(cli_history(sandbox))
        assert {t.deployment_id for t in tags} == {record.deployment_id}
