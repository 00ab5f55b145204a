"""Crash safety with real kills (a reduced crash matrix; the full one: benchmarks/reliability.py).

A blue-green ``rfs-deploy deploy`` subprocess is SIGKILLed inside its switch-traffic update (the
sandbox kills its own process after the listener change, before the update is recorded) and in
the middle of its five-minute bake; from each kill point ``resume`` and ``abort`` run in new
processes. Neither may leave a mixed state, and the journal must still find the checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import crashkit
import endstate
import pytest

POINTS = [
    crashkit.KillPoint("update", update=2, label="inside the switch-traffic update"),
    crashkit.KillPoint("bake", step=6, label="mid-bake of step 6"),
]
#: (strategy, scenario, kill point, resume ends, abort ends); an abort asked for that restores
#: the checkpoint exits 0, a rollback by the judge 3
CASES = [
    ("blue-green", "healthy", POINTS[0], (0, "promoted"), (0, "rolled-back")),
    ("blue-green", "healthy", POINTS[1], (0, "promoted"), (0, "rolled-back")),
    # killed inside its own rollback update, with a refresh back to v1 to follow: the resumed
    # rollback must wait for it (it once ended with 4 of 10 instances still on v2)
    (
        "rolling",
        "error-spike",
        crashkit.KillPoint("update", update=2),
        (3, "rolled-back"),
        (0, "rolled-back"),
    ),
    # killed after its rollback update is recorded, while the refresh back runs: the restore is
    # not finished (it once read ROLLED_BACK with 4 of 10 instances on v2 and nothing to resume)
    (
        "rolling",
        "error-spike",
        crashkit.KillPoint("update-after", update=2),
        (3, "rolled-back"),
        (0, "rolled-back"),
    ),
    # the same kill point in every other strategy's rollback (its restoring update's number)
    *(
        (
            strategy,
            "error-spike",
            crashkit.KillPoint("update-after", update=n),
            (3, "rolled-back"),
            (0, "rolled-back"),
        )
        for strategy, n in (("blue-green", 2), ("canary", 3), ("ab-test", 3))
    ),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return crashkit.fresh_base(tmp_path_factory.mktemp("crash"))


@pytest.mark.parametrize(
    ("strategy", "scenario", "point", "resumed", "aborted"),
    CASES,
    ids=[
        "blue-green-inside-update",
        "blue-green-mid-bake",
        "rolling-inside-its-rollback",
        "rolling-waiting-for-its-refresh-back",
        "blue-green-after-its-rollback-update",
        "canary-after-its-rollback-update",
        "ab-test-after-its-rollback-update",
    ],
)
def test_a_killed_deployment_is_resumed_or_aborted_to_a_whole_state(
    base: Path,
    tmp_path: Path,
    strategy: str,
    scenario: str,
    point: crashkit.KillPoint,
    resumed: tuple[int, str],
    aborted: tuple[int, str],
) -> None:
    expect = crashkit.expectations(strategy)
    outcome = crashkit.run_point(base, tmp_path, strategy, scenario, point, expect)

    assert outcome.killed
    assert outcome.journal["status"] in ("in-progress", "rolling-back") and not outcome.lost_checkpoint
    if point.kind == "update-after":  # the restore's update succeeded; it is not finished yet
        assert outcome.journal["status"] == "rolling-back"
    assert outcome.stuck == []
    assert outcome.journal["checkpoint"] == 2  # `up` made version 2: the pre-deployment state
    assert (outcome.resume_exit, outcome.resume_state) == resumed, outcome.notes
    assert (outcome.abort_exit, outcome.abort_state) == aborted, outcome.notes


def test_a_kill_inside_an_update_leaves_its_cloud_change_and_an_in_progress_entry(
    base: Path, tmp_path: Path
) -> None:
    """The sandbox is as durable as Pulumi and AWS: the half-applied update is in history (as
    in-progress, read as failed by a new process) and the listener change it made is kept."""
    state = crashkit.copy_state(base, tmp_path / "killed")
    status = crashkit.run_and_kill(state, "blue-green", "healthy", POINTS[0])

    assert status == -9
    saved = json.loads((state / "sandbox" / "production" / "state.json").read_text())
    newest = saved["backend"]["history"][-1]
    assert newest["result"] == "in-progress" and "kind=set-weight" in newest["message"]
    [seen] = crashkit.inspect_many([state])
    assert seen["weights"] == {"green": 100}  # the switch reached the load balancer before the kill
    assert seen["journal"]["next_step"] == 1  # the last recorded change is step 1: resume re-checks from 2
    shutil.rmtree(state)


def test_a_process_holding_an_old_copy_of_the_session_never_writes_it_back(
    base: Path, tmp_path: Path
) -> None:
    """A command that read the session (``status``) before a deployment's updates and exits after
    them must not write its stale copy back, and one that tries is refused (history would lose
    the deployment's entries, checkpoint included)."""
    from rfs_deploy.errors import StackBusy
    from rfs_deploy.sim.sandbox import Sandbox
    from rfs_deploy.sim.session_lock import session_directory

    state = crashkit.copy_state(base, tmp_path / "s")
    reader = Sandbox.open(session_dir=session_directory(state, "production"))
    try:
        deployed = crashkit.cli(state, "--quiet", *crashkit.deploy_args("blue-green", "healthy"))
        assert deployed.returncode == 0, deployed.stderr
        after_deploy = endstate.history_entries(state)
        with pytest.raises(StackBusy, match="changed by another rfs-deploy process"):
            reader.save()
    finally:
        reader.close()  # read only: writes nothing
    assert endstate.history_entries(state) == after_deploy
    assert endstate.journal_view(after_deploy)["status"] == "completed"
