"""SIGTERM and SIGINT sent to a real ``rfs-deploy --backend sim deploy`` process.

Each test starts the command in a new process on a copy of one sandbox session (``up`` done),
paced with ``RFS_DEPLOY_SIM_PACE`` so the deployment takes seconds of wall time, waits until its
progress shows a given step, sends the signal and checks the exit code, the last line and the end
state: the stack config, the production and test listeners, the listener rules and the instances
of each slot, read back from the saved session by tests/reliability/endstate.py.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import REPO, SERVICE, STACK, Place, Running, make_place

sys.path.insert(0, str(REPO / "tests" / "reliability"))
import endstate

from rfs_deploy.config.loading import parse_release
from rfs_deploy.config.model import ReleaseState

#: Wall-clock seconds per virtual second: a one-minute bake takes 0.18 s.
PACE = "0.003"
TERM, INT = signal.SIGTERM, signal.SIGINT
RESUME = f"rfs-deploy resume --stack {STACK} --service {SERVICE}"
ABORT = f"rfs-deploy abort --stack {STACK} --service {SERVICE}"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sandbox session with the stack's first updates done (``up``)."""
    place = make_place(tmp_path_factory.mktemp("base"))
    done = place.run("up", "--stack", STACK)
    assert done.code == 0, done.stderr
    return place.state


@pytest.fixture
def session(base: Path, tmp_path: Path) -> Place:
    """A fresh copy of the base session."""
    place = make_place(tmp_path)
    shutil.copytree(base, place.state)
    (place.state / "sandbox" / STACK / "update.lock").unlink(missing_ok=True)
    return place


def start(place: Place, strategy: str, *extra: str, **env: str) -> Running:
    args = ["deploy", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0", "--strategy", strategy]
    return Running(place.start(*args, *extra, RFS_DEPLOY_SIM_PACE=PACE, **env))


def step_line(k: int) -> str:
    return rf"\] step {k}/\d+: "


def inspect(place: Place) -> dict[str, Any]:
    """What the saved session holds (config, listeners, rules, instances, journal)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "reliability" / "endstate.py"), str(place.state)],
        capture_output=True,
        text=True,
        timeout=240,
        env=place.env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in seen, seen
    return seen


def start_release(base_seen: dict[str, Any]) -> ReleaseState:
    return parse_release(SERVICE, base_seen["config"])


@pytest.fixture(scope="module")
def base_seen(base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    place = make_place(tmp_path_factory.mktemp("base-copy"))
    shutil.copytree(base, place.state)
    return inspect(place)


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


# --------------------------------------------------------------------------- abort (the default)

POINTS = [
    ("canary", 6, TERM),  # as the weight goes to 20 %: that update finishes first
    ("canary", 7, INT),  # in the 20 % bake
    ("blue-green", 4, TERM),  # in the pause before the switch
    ("blue-green", 6, INT),  # analysing after the switch
    ("rolling", 2, TERM),  # watching the instance refresh
    ("rolling", 3, INT),  # analysing the rolled fleet
    ("ab-test", 2, INT),  # waiting for the new slot's health
    ("ab-test", 5, TERM),  # in the A/B decision window
]


@pytest.mark.parametrize(("strategy", "step", "signum"), POINTS, ids=lambda v: str(v))
def test_a_signal_rolls_the_deployment_back(
    session: Place, base_seen: dict[str, Any], strategy: str, step: int, signum: int
) -> None:
    running = start(session, strategy)
    running.wait_for(step_line(step))
    running.signal(signum)
    code, out, err = running.finish()

    name = signal.Signals(signum).name
    assert code == 128 + signum, err
    no_traceback(out, err)
    assert f"rfs-deploy: {name} received: stopping at the next safe point" in err
    assert re.search(
        rf"^rfs-deploy: cancelled by {name}: deployment \w+ rolled back to stack version 2$",
        last_line(err),
        re.M,
    ), last_line(err)
    assert "ROLLED_BACK" in out
    seen = inspect(session)
    assert endstate.matches(start_release(base_seen), seen) is None, seen
    assert seen["journal"]["status"] == "aborted"

    if strategy != "canary":
        return  # one status read per kind of point is enough (each command is a new process)
    status = session.run("status", "--stack", STACK, "--json")
    assert status.code == 0, status.stderr
    payload = status.json()
    assert payload["status"] == "ROLLED_BACK"
    assert any(f"cancelled by {name}" in e for e in payload["errors"])


def test_the_json_document_carries_the_cancel_exit_code(session: Place) -> None:
    running = start(session, "canary", "--json")
    running.wait_for(step_line(7))
    running.signal(TERM)
    code, out, err = running.finish()

    assert code == 143, err
    document = json.loads(out)  # exactly one document
    assert document["exit_code"] == 143
    assert document["status"] == "ROLLED_BACK"
    assert "rolled back to stack version 2" in last_line(err)


# --------------------------------------------------------------------------- leave


def test_leave_then_resume_completes(session: Place, base_seen: dict[str, Any]) -> None:
    running = start(session, "canary", "--on-cancel", "leave")
    running.wait_for(step_line(7))
    running.signal(TERM)
    code, out, err = running.finish()

    assert code == 143, err
    no_traceback(out, err)
    line = last_line(err)
    assert "left as it is" in line
    assert f"continue: {RESUME}; roll back: {ABORT}" in line
    seen = inspect(session)
    start_state = start_release(base_seen)
    assert seen["weights"] == {start_state.live: 80, start_state.idle: 20}
    assert seen["journal"]["status"] == "in-progress"

    resumed = session.run("resume", "--stack", STACK, "--service", SERVICE, RFS_DEPLOY_SIM_PACE="0")
    assert resumed.code == 0, resumed.stderr
    assert "COMPLETED" in resumed.stdout
    seen = inspect(session)
    assert seen["weights"] == {start_state.idle: 100}
    assert seen["journal"]["status"] == "completed"


def test_a_resumed_deployment_is_cancelled_the_same_way(session: Place, base_seen: dict[str, Any]) -> None:
    running = start(session, "canary", "--on-cancel", "leave")
    running.wait_for(step_line(7))
    running.signal(INT)
    assert running.finish()[0] == 130

    args = ("resume", "--stack", STACK, "--service", SERVICE)
    resumed = Running(session.start(*args, RFS_DEPLOY_SIM_PACE=PACE))
    resumed.wait_for(step_line(9))
    resumed.signal(TERM)
    code, out, err = resumed.finish()

    assert code == 143, err
    no_traceback(out, err)
    assert "rolled back to stack version 2" in last_line(err)
    seen = inspect(session)
    assert endstate.matches(start_release(base_seen), seen) is None, seen
    assert seen["journal"]["status"] == "aborted"


def test_leave_then_abort_restores_the_checkpoint(session: Place, base_seen: dict[str, Any]) -> None:
    running = start(session, "blue-green", "--on-cancel", "leave")
    running.wait_for(step_line(6))
    running.signal(INT)
    code, _, err = running.finish()
    assert code == 130, err

    aborted = session.run("abort", "--stack", STACK, "--service", SERVICE)
    assert aborted.code in (0, 3), aborted.stderr  # a requested abort that restored the checkpoint
    assert endstate.matches(start_release(base_seen), inspect(session)) is None


# --------------------------------------------------------------------------- second signal, grace


def test_a_second_signal_stops_the_rollback_after_its_update(
    session: Place, base_seen: dict[str, Any]
) -> None:
    # a rolling rollback follows the instance refresh back: a wait the second signal cuts short
    running = start(session, "rolling")
    running.wait_for(step_line(3))
    running.signal(TERM)
    running.wait_for(r"ROLLING BACK to stack version")
    running.signal(INT)
    code, out, err = running.finish()

    no_traceback(out, err)
    assert "second signal (SIGINT): stopping right after the stack update in flight" in err
    assert code == 4, err
    assert "a second signal (SIGINT)" in last_line(err)
    line = last_line(err)
    assert "to finish: rfs-deploy " in line
    command = line.split("to finish: ", 1)[1].split()
    assert command[0] == "rfs-deploy"
    # the stack and the load balancer are back; the instance refresh back to the old version
    # was under way when the second signal came (AWS goes on with it by itself)
    seen = inspect(session)
    assert traffic_matches(start_release(base_seen), seen) is None, seen
    assert seen["journal"]["status"] in ("aborted", "aborting")
    finished = session.run(*command[1:], RFS_DEPLOY_SIM_PACE="0")
    assert finished.code in (0, 3), finished.stderr
    assert traffic_matches(start_release(base_seen), inspect(session)) is None


def traffic_matches(release: ReleaseState, seen: dict[str, Any]) -> str | None:
    """:func:`endstate.matches` without the instances: config, listeners and rules only."""
    return endstate.matches(release, {**seen, "instances": _instances(release)})


def _instances(release: ReleaseState) -> dict[str, dict[str | None, int]]:
    return {
        slot: (
            {release.slot(slot).version: release.slot(slot).capacity} if release.slot(slot).capacity else {}
        )
        for slot in ("blue", "green")
    }


def test_the_grace_period_bounds_the_rollback(session: Place, base_seen: dict[str, Any]) -> None:
    running = start(session, "rolling", "--cancel-grace", "0.2")
    running.wait_for(step_line(3))
    began = time.monotonic()
    running.signal(TERM)
    code, out, err = running.finish()
    took = time.monotonic() - began

    no_traceback(out, err)
    assert code == 4, err
    assert "the cancel grace period of 0.2s ran out" in err
    assert took < 60
    command = last_line(err).split("to finish: ", 1)[1].split()
    assert command[0] == "rfs-deploy"
    finished = session.run(*command[1:], RFS_DEPLOY_SIM_PACE="0")
    assert finished.code in (0, 3), finished.stderr
    assert traffic_matches(start_release(base_seen), inspect(session)) is None


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("value", ["-1", "soon", "inf"])
def test_a_bad_grace_is_one_error_line(session: Place, value: str) -> None:
    done = session.run(
        "deploy", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0", "--cancel-grace", value
    )
    assert done.code == 2
    assert "--cancel-grace" in done.stderr and "Traceback" not in done.stderr


def test_a_bad_pace_is_one_error_line(session: Place) -> None:
    done = session.run(
        "deploy", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0", RFS_DEPLOY_SIM_PACE="fast"
    )
    assert done.code == 2, done.stderr
    assert "RFS_DEPLOY_SIM_PACE" in done.stderr and "Traceback" not in done.stderr
