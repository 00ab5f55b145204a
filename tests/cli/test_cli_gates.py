"""Gates through the command line, a new process per command, in the sandbox (docs/gates.md):
``deploy`` stops at a gate with exit 5 and ends its process; ``promote`` from a new process
carries the canary on to COMPLETED; ``abort`` at the gate restores the checkpoint; ``retry`` runs
a rolled-back release again."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import SERVICE, STACK, Place, make_place, one_error_line

#: A canary held at 20 % until promoted (the step list of a stack file, for this deployment only).
GATED = "strategy.steps=[{setWeight: 20}, {pause: {}}, {setWeight: 50}, {analyze: 2m}]"
WHERE = ("--stack", STACK, "--service", SERVICE)
DEPLOY = ("deploy", *WHERE, "--strategy", "canary", "--set", GATED)


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return make_place(tmp_path)


def paused(place: Place) -> dict[str, object]:
    done = place.run("--quiet", *DEPLOY, "--version", "v2.0.0")
    assert done.code == 5, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].endswith(f"PAUSED ({SERVICE} → v2.0.0)")
    assert f"continue: rfs-deploy promote --stack {STACK} --service {SERVICE}" in lines[1]
    status = place.run("--json", "status", *WHERE)
    assert status.code == 0, status.stderr
    view: dict[str, object] = status.json()
    return view


def test_deploy_exits_paused_and_promote_from_a_new_process_completes(place: Place) -> None:
    view = paused(place)
    assert (view["status"], view["journal"], view["deployment_exit_code"]) == ("PAUSED", "paused", 5)
    pause = view["paused"]
    assert isinstance(pause, dict) and pause["step"] == view["step"]
    assert "@" in str(pause["by"]) and str(pause["since"]).endswith("Z")
    text = place.run("status", *WHERE).stdout
    assert "PAUSED" in text and f"paused at step {pause['step']} by {pause['by']} since" in text

    # the deployment stays open: another release is refused naming promote and abort
    refused = one_error_line(place.run(*DEPLOY, "--version", "v3.0.0"), 2)
    assert "is paused at step" in refused and "promote --stack" in refused and "abort --stack" in refused
    assert "promote --stack" in one_error_line(place.run("resume", *WHERE), 2)

    done = place.run("--json", "--quiet", "promote", *WHERE)
    assert done.code == 0, done.stderr
    record = done.json()
    assert (record["status"], record["deployment_id"]) == ("COMPLETED", view["deployment_id"])
    assert record["paused"] is None
    after = place.run("--json", "status", *WHERE).json()
    assert (after["status"], after["journal"], after["paused"]) == ("COMPLETED", "completed", None)


def test_abort_at_the_gate_restores_the_checkpoint(place: Place) -> None:
    view = paused(place)
    done = place.run("--json", "--quiet", "abort", *WHERE)
    assert done.code == 0, done.stderr
    record = done.json()
    assert (record["status"], record["on_request"]) == ("ROLLED_BACK", True)
    assert record["rolled_back_to"] == view["checkpoint"]
    after = place.run("--json", "status", *WHERE).json()
    assert (after["journal"], after["requested"], after["paused"]) == ("aborted", True, None)
    # back where it was: the same release can start again (and pauses at its gate again)
    assert place.run("--quiet", *DEPLOY, "--version", "v2.0.0").code == 5


def test_promote_of_a_deployment_that_is_not_paused_is_refused(place: Place) -> None:
    line = one_error_line(place.run("promote", *WHERE), 2)
    assert "no open deployment" in line


def test_retry_after_a_rollback_runs_the_release_again(place: Place) -> None:
    first = place.run(
        "--json", "--quiet", "deploy", *WHERE, "--version", "v2.0.0", "--scenario", "error-spike"
    )
    assert first.code == 3, first.stderr
    rolled_back = first.json()

    again = place.run("--json", "--quiet", "retry", *WHERE)

    # the scenario is the session's: the release fails its analysis again, as a new deployment
    assert again.code == 3, again.stderr
    record = again.json()
    assert record["retry_of"] == rolled_back["deployment_id"]
    assert record["deployment_id"] != rolled_back["deployment_id"]
    assert (record["version"], record["strategy"]) == ("v2.0.0", rolled_back["strategy"])
    assert record["settings"] == rolled_back["settings"]
