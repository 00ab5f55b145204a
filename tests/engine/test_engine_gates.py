"""Gates through the real engine and the `rfs-deploy` CLI, as a team's pipelines use them.

A canary whose stack file has a step list with a gate (``{pause: {}}`` at 20 %). Every command is
a new process: ``rfs-deploy --backend pulumi ...`` in its own checkout of the project (Pulumi.yaml,
the program and the committed stack file; no local deployment records, its own Pulumi home), all
sharing one Pulumi file backend. AWS is the engine sandbox they all share (engine_cli.py says how
it stands in for the AWS connection). ``status`` needs no AWS: it is the plain console script.

The tests share one provisioned stack (a module fixture: provisioning through the engine is the
slow part) and each releases its own version, so they do not depend on their order; each leaves
the service with no open deployment.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_support import (
    PROJECT,
    SERVICE,
    canary_stack,
    engine_sandbox,
    fresh_checkout,
    journal_tags,
)

from rfs_deploy.config.model import ReleaseState
from rfs_deploy.drive import journal
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.drive.steps import Gate, SetWeight, Step
from rfs_deploy.errors import StackBusy
from rfs_deploy.sim.aws import use_fake_aws
from rfs_deploy.sim.engine import SANDBOX_PASSPHRASE, EngineSandbox, engine_bin, prepare_project

RUNNER = Path(__file__).with_name("engine_cli.py")
STACK = "gates"
VERSIONS = ("v2.1.0", "v2.2.0", "v2.3.0")
STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"setWeight": 100}]
PAUSED_LINE = re.compile(
    r"^paused at step (\d+)/(\d+) \(canary at 20 %\) by (\S+); "
    rf"continue: rfs-deploy promote --stack {STACK} --service {SERVICE} "
    rf"\(roll back: rfs-deploy abort --stack {STACK} --service {SERVICE}\)$",
    re.MULTILINE,
)


def gated_stack(directory: Path) -> Path:
    path = canary_stack(directory, STACK)
    doc = yaml.safe_load(path.read_text())
    service = doc["config"]["rfs-deploy:services"][SERVICE]
    service["strategy"] = {"type": "canary", "steps": STEPS}
    # a version of its own for each test (the build of v2.0.0 under new version numbers)
    amis = service["artifact"]["amis"]
    amis.update({version: amis["v2.0.0"] for version in VERSIONS})
    path.write_text(yaml.safe_dump(doc))
    return path


@dataclass
class Stack:
    """The provisioned stack every test releases on: its committed file, the shared sandbox."""

    file: Path
    cloud: Path
    #: The plan of a canary release (the same for every version).
    steps: tuple[Step, ...]

    @property
    def gate(self) -> int:
        return next(i for i, s in enumerate(self.steps) if isinstance(s, Gate))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack's first update, in the shared sandbox. The stack file gets the encryption salt
    `pulumi stack init` adds, as the team commits it. (A module fixture runs before the
    function-scoped fake_aws: the same environment is set here.)"""
    directory = tmp_path_factory.mktemp("gates")
    stack_file, cloud = gated_stack(directory), directory / "cloud"
    with pytest.MonkeyPatch.context() as env:
        use_fake_aws(env)
        with engine_sandbox(stack_file, cloud, scenario="healthy") as sandbox:
            sandbox.provision()
            stack_file.write_text((cloud / "stacks" / stack_file.name).read_text())
            steps = Driver(sandbox.seams()).plan(SERVICE, "v2.0.0")[3]
    assert [s.weight for s in steps if isinstance(s, SetWeight)] == [20, 50, 100]
    yield Stack(stack_file, cloud, steps)


def checkout(stack_file: Path, directory: Path) -> Path:
    """A fresh checkout on its own runner: the committed files, nothing else."""
    prepare_project(PROJECT, directory, stack_file)
    return directory


def user_env(cloud: Path, directory: Path) -> dict[str, str]:
    """A pipeline job's environment in ``directory``: the Pulumi CLI on PATH, the shared file
    backend, the stack's passphrase, its own Pulumi home and rfs-deploy state."""
    bin_dir = engine_bin(PROJECT)
    assert bin_dir is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RFS_DEPLOY_", "PULUMI_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PULUMI_BACKEND_URL=f"file://{cloud / 'state'}",
        PULUMI_CONFIG_PASSPHRASE=SANDBOX_PASSPHRASE,
        PULUMI_HOME=str(directory / "pulumi-home"),
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
        RFS_DEPLOY_PROJECT=str(directory),
        RFS_DEPLOY_STATE=str(directory / ".rfs-deploy"),
        RFS_DEPLOY_ENGINE_BIN=str(bin_dir),  # a checkout has no bin/: the engine the sandbox runs
    )
    return env


def start(cloud: Path, directory: Path, *args: str) -> subprocess.Popen[str]:
    """``rfs-deploy --backend pulumi ARGS`` in the checkout ``directory``, started."""
    argv = [sys.executable, str(RUNNER), str(cloud), "--backend", "pulumi", *args]
    return subprocess.Popen(
        argv, cwd=directory, env=user_env(cloud, directory), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=900)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def rfs_deploy(cloud: Path, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return finish(start(cloud, directory, *args))


def service_args() -> list[str]:
    return ["--stack", STACK, "--service", SERVICE]


def status(cloud: Path, directory: Path) -> dict[str, Any]:
    """``rfs-deploy --backend pulumi --json status`` (the console script: it needs no AWS)."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("rfs-deploy")), "--backend", "pulumi", "--json", "status",
         *service_args()],
        cwd=directory, env=user_env(cloud, directory), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def stack_history(cloud: Path, directory: Path) -> list[dict[str, Any]]:
    """``pulumi stack history --json`` of the stack, newest first."""
    bin_dir = engine_bin(PROJECT)
    assert bin_dir is not None
    done = subprocess.run(
        [str(bin_dir / "pulumi"), "stack", "history", "--json", "--stack", STACK],
        cwd=directory, env=user_env(cloud, directory), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    entries: list[dict[str, Any]] = json.loads(done.stdout)
    return entries


def deploy_to_the_gate(stack: Stack, directory: Path, version: str) -> str:
    """`deploy` of ``version`` from ``directory``: it stops at the gate with exit 5 and the
    documented lines; the deployment id."""
    done = rfs_deploy(stack.cloud, directory, "deploy", *service_args(), "--version", version)
    assert done.returncode == 5, done.stdout[-3000:] + done.stderr[-3000:]
    head = re.search(rf"^deployment (\w+): PAUSED \({SERVICE} → {re.escape(version)}\)$", done.stdout, re.M)
    line = PAUSED_LINE.search(done.stdout)
    assert head is not None and line is not None, done.stdout[-3000:]
    assert (int(line[1]), int(line[2])) == (stack.gate + 1, len(stack.steps))
    return head[1]


def serving(sandbox: EngineSandbox) -> tuple[ReleaseState, dict[str, int]]:
    """The release state in the stack config, and the production listener's weights by slot."""
    release = sandbox.backend.read_config().release[SERVICE]
    out = sandbox.backend.topology()[SERVICE]
    weights = sandbox.box.adapters.traffic.forward_weights(out.listener_arn)
    return release, {slot: weights.get(out.slot(slot).target_group_arn, 0) for slot in ("blue", "green")}


def released_once(stack: Stack, entries: list[dict[str, Any]], deployment: str) -> None:
    """Stack history of ``deployment``: every update succeeded, each step updated the stack at
    most once and in plan order, one pause, and the weights of the whole plan (the steps after
    the gate included) were applied."""
    assert all(e["result"] == "succeeded" for e in entries)
    tags = [t for t in journal_tags(entries) if t.deployment_id == deployment]
    stepped = [t.step for t in tags if t.phase == "step"]
    assert stepped == sorted(set(stepped)), f"each step updated the stack once, in order: {stepped}"
    assert [t.kind for t in tags].count("paused") == 1
    assert [s for s in stepped if s > stack.gate], "the steps after the gate are in stack history"
    weights = [w.weight for i in stepped if isinstance(w := stack.steps[i], SetWeight)]
    assert weights == [20, 50, 100]


def test_a_gate_holds_the_canary_until_abort_from_another_checkout_restores_it(
    stack: Stack, tmp_path: Path
) -> None:
    laptop = checkout(stack.file, tmp_path / "laptop")
    deployment = deploy_to_the_gate(stack, checkout(stack.file, tmp_path / "runner-1"), "v2.1.0")

    view = status(stack.cloud, laptop)
    assert (view["deployment_id"], view["status"], view["deployment_exit_code"]) == (deployment, "PAUSED", 5)
    assert view["paused"]["by"] and view["paused"]["since"]
    with engine_sandbox(stack.file, stack.cloud) as sandbox:
        release, weights = serving(sandbox)
        assert release.slot(release.idle).version == "v2.1.0"
        assert weights == {release.live: 80, release.idle: 20}, "held at the gate's weight"
        newest = journal.decode(sandbox.backend.history(limit=1)[0].message)
        assert newest is not None and (newest.kind, newest.deployment_id) == ("paused", deployment)
        live = release.slot(release.live).version

    aborted = rfs_deploy(stack.cloud, checkout(stack.file, tmp_path / "runner-2"), "abort", *service_args())

    assert aborted.returncode == 0, aborted.stdout[-3000:] + aborted.stderr[-3000:]
    with engine_sandbox(stack.file, stack.cloud) as sandbox:
        release, weights = serving(sandbox)
        assert release.slot(release.live).version == live
        assert weights == {release.live: 100, release.idle: 0}, "the checkpoint's weights, on the listener"
    tags = [t for t in journal_tags(stack_history(stack.cloud, laptop)) if t.deployment_id == deployment]
    assert tags[-1].phase == "abort" and tags[-1].checkpoint == tags[0].checkpoint
    assert status(stack.cloud, laptop)["status"] == "ROLLED_BACK"


def test_promotes_from_fresh_checkouts_at_once_continue_the_canary_once(stack: Stack, tmp_path: Path) -> None:
    deployment = deploy_to_the_gate(stack, checkout(stack.file, tmp_path / "runner-1"), "v2.2.0")

    # two pipeline jobs promote at the same moment, each on its own fresh checkout
    jobs = [start(stack.cloud, checkout(stack.file, tmp_path / f"promote-{n}"), "promote", *service_args())
            for n in (1, 2)]  # fmt: skip
    done = [finish(job) for job in jobs]

    codes = sorted(d.returncode for d in done)
    assert codes == [0, 2], [d.stdout[-2000:] + d.stderr[-2000:] for d in done]
    won = next(d for d in done if d.returncode == 0)
    lost = next(d for d in done if d.returncode == 2)
    assert re.search(rf"^deployment {deployment}: COMPLETED", won.stdout, re.MULTILINE), won.stdout[-3000:]
    refusal = [line for line in lost.stderr.splitlines() if not line.startswith("rfs-deploy: waiting")]
    assert len(refusal) == 1 and "Traceback" not in lost.stderr, lost.stderr[-2000:]
    # the sandbox is one world at a time: the second job waited for the first, then found the
    # deployment completed (a real AWS account has no such lock: the next test races them)
    assert f"no open deployment of {SERVICE} on stack {STACK}" in refusal[0], refusal
    assert lost.stdout.strip() == "", "the refused promote changed nothing and reported no deployment"

    laptop = checkout(stack.file, tmp_path / "laptop")
    released_once(stack, stack_history(stack.cloud, laptop), deployment)
    view = status(stack.cloud, laptop)
    assert (view["deployment_id"], view["status"], view["paused"]) == (deployment, "COMPLETED", None)
    with engine_sandbox(stack.file, stack.cloud) as sandbox:
        release, weights = serving(sandbox)
        assert release.slot(release.live).version == "v2.2.0"
        assert weights == {release.live: 100, release.idle: 0}


def test_two_promotes_racing_for_the_stack_step_the_canary_once(stack: Stack, tmp_path: Path) -> None:
    """Two drivers on two checkouts promote while the first one's update holds Pulumi's stack
    lock (the provider double holds its first call): the second is refused, StackBusy, and the
    first goes on to COMPLETED."""
    with engine_sandbox(stack.file, stack.cloud) as sandbox:
        paused = asyncio.run(Driver(sandbox.seams(sandbox.new_backend())).deploy(SERVICE, "v2.3.0"))
        assert paused.paused is not None and paused.paused["step"] == stack.gate
        first = fresh_checkout(sandbox, stack.file, tmp_path / "runner-a")
        second = fresh_checkout(sandbox, stack.file, tmp_path / "runner-b")
        results: list[DeploymentRecord | BaseException] = []

        def promote() -> None:
            try:
                results.append(asyncio.run(Driver(sandbox.seams(first)).promote(SERVICE)))
            except BaseException as exc:
                results.append(exc)

        with sandbox.service.hold():
            seen = sandbox.service.received
            worker = threading.Thread(target=promote)
            worker.start()
            deadline = time.monotonic() + 300
            while sandbox.service.received == seen and time.monotonic() < deadline:
                time.sleep(0.2)
            assert sandbox.service.received > seen, "the first promote's update reached the provider"
            with pytest.raises(StackBusy) as busy:
                asyncio.run(Driver(sandbox.seams(second)).promote(SERVICE))
        worker.join(timeout=600)

        assert f"deployment {paused.deployment_id}" in str(busy.value)
        assert len(results) == 1 and isinstance(results[0], DeploymentRecord), results
        assert results[0].status is DeploymentStatus.COMPLETED, results[0].errors
        entries = [{"message": e.message, "result": e.result} for e in sandbox.backend.history()]
        released_once(stack, entries, paused.deployment_id)
        release, weights = serving(sandbox)
        assert release.slot(release.live).version == "v2.3.0"
        assert weights == {release.live: 100, release.idle: 0}
