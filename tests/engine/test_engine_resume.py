"""`resume` in a new process after the driver process was killed (SIGKILL) mid-deployment."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from engine_support import SERVICE, canary_stack, cli_history, engine_sandbox, journal_tags

from rfs_deploy.drive import journal
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentStatus

KILLER = Path(__file__).with_name("engine_kill.py")


def test_resume_after_a_killed_driver_finishes_the_canary(tmp_path: Path) -> None:
    stack, work = canary_stack(tmp_path), tmp_path / "work"
    with engine_sandbox(stack, work, scenario="healthy") as sandbox:
        sandbox.provision()
        steps = Driver(sandbox.seams()).plan(SERVICE, "v2.0.0")[3]
    # killed mid-canary: the new slot has its share of traffic and its analysis is about to start
    kill_at = next(i for i, s in enumerate(steps) if s.kind == "analyze")
    assert steps[kill_at - 1].kind == "set-weight"

    crashed = subprocess.run(
        [sys.executable, str(KILLER), str(stack), str(work), str(kill_at)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]

    with engine_sandbox(stack, work) as sandbox:
        history = sandbox.backend.history()
        found = journal.find_open_deployment(history, SERVICE)
        assert found is not None, "the killed deployment is open in stack history"
        assert found.next_step == kill_at, "the set-weight update before the kill is in the journal"
        live_split = sandbox.backend.read_config().release[SERVICE].weights
        assert sorted(live_split.values()) == [50, 50]

        record = asyncio.run(Driver(sandbox.seams()).resume(SERVICE))

        assert record.status is DeploymentStatus.COMPLETED, record.errors
        assert record.deployment_id == found.deployment_id
        release = sandbox.backend.read_config().release[SERVICE]
        assert release.slot(release.live).version == "v2.0.0"
        tags = journal_tags(cli_history(sandbox))
        assert {t.deployment_id for t in tags} == {found.deployment_id}
        assert "resume" in [t.phase for t in tags] or tags[-1].phase in ("step", "done")
