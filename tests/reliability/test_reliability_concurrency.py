"""Concurrency: one deployment per stack at a time; different stacks side by side.

* Two deployments of one stack in one process (``asyncio.gather`` of two ``Driver.deploy`` on one
  sandbox): the second is refused with StackBusy and the first completes untouched.
* Across two processes: a deployment that is under way (its process paused with SIGSTOP, as a
  slow driver would be) makes a second ``rfs-deploy deploy`` exit 2 with one StackBusy line;
  the first then completes.
* Different stacks through the async API: N deployments at once take about the time of one.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import concurrencykit
import crashkit
import endstate
import pytest

from rfs_deploy.connect import open_seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.journal import decode
from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.errors import StackBusy


def test_a_second_deployment_of_a_stack_in_the_same_process_is_refused(state: Path) -> None:
    seams = open_seams("production", backend="sim", fresh=True)
    try:

        async def both() -> list[DeploymentRecord | BaseException]:
            first = Driver(seams).deploy("api-service", "v2.0.0", "blue-green")
            second = Driver(seams).deploy("api-service", "v2.0.0", "canary")
            return await asyncio.gather(first, second, return_exceptions=True)

        first, second = asyncio.run(both())
        history = seams.backend.history()
    finally:
        seams.close()

    assert isinstance(first, DeploymentRecord) and first.status.value == "COMPLETED"
    assert isinstance(second, StackBusy) and "another deployment of stack production" in str(second)
    tags = [decode(e.message) for e in history]
    assert {t.deployment_id for t in tags if t is not None} == {first.deployment_id}


def test_a_second_process_is_refused_while_a_deployment_is_under_way(tmp_path: Path) -> None:
    state = crashkit.fresh_base(tmp_path)
    first = subprocess.Popen(
        [*crashkit.CLI, "--backend", "sim", *crashkit.deploy_args("blue-green", "healthy")],
        env=crashkit.env(state),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert first.stderr is not None
    try:
        for line in first.stderr:
            if crashkit.STEP_LINE.match(line) and " step 2/" in line:
                first.send_signal(signal.SIGSTOP)  # under way: step 1 applied, the rest to come
                break
        second = crashkit.cli(state, *crashkit.deploy_args("canary", "healthy"))
    finally:
        first.send_signal(signal.SIGCONT)
    first.stderr.read()
    assert first.wait(timeout=300) == 0

    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    # its owner is alive (stopped, not gone): wait for it, not resume or abort it
    assert "is running (step 2/9, process" in lines[0] and f"process {first.pid} on" in lines[0], lines[0]
    assert "wait for it to finish" in lines[0] and "resume" not in lines[0]
    journal = endstate.journal_view(endstate.history_entries(state))
    assert journal["status"] == "completed"
    deployments = {t.deployment_id for e in endstate.history_entries(state) if (t := decode(e.message))}
    assert deployments == {journal["deployment"]}  # the refused one wrote nothing


@pytest.mark.parametrize("n", [4])
def test_deployments_of_different_stacks_run_concurrently(n: int) -> None:
    _, [single] = asyncio.run(concurrencykit.deploy_many(1))
    _, records = asyncio.run(concurrencykit.deploy_many(n))

    assert single.status.value == "COMPLETED"
    assert [r.status.value for r in records] == ["COMPLETED"] * n
    assert len({r.stack for r in records}) == n
    # the waits overlap: every deployment started before any of them ended (run one after another,
    # the second would start after the first ended). How the wall time scales with N is measured,
    # not asserted, in benchmarks/reliability.py (machines here are shared and noisy).
    assert max(r.started_at for r in records) < min(r.ended_at or 0.0 for r in records)
