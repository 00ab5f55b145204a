"""``pause``, ``wait`` and ``status --watch`` as a pipeline uses them: real processes beside a
``deploy`` that runs in another one, in the sandbox (docs/gates.md).

The sandbox runs on a virtual clock; ``RFS_DEPLOY_SIM_PACE`` makes each virtual second of the
deploy's waits take wall-clock time too, so its analysis is still running when the other
processes look at it. A running sandbox deploy holds its session, so ``pause`` posts its
request to that process (rfs_deploy/sim/backend.py), which records it in stack history as the
no-change update it runs on a real backend; ``wait`` and ``status --watch`` read the saved
session and the records, as another machine reads stack history.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

import pytest
from cli_helpers import SERVICE, STACK, Place, Running, make_place, one_error_line

WHERE = ("--stack", STACK, "--service", SERVICE)
#: A canary whose 20 % analysis lasts long enough (with the pace) to be paused in the middle.
LONG = "strategy.steps=[{setWeight: 20}, {analyze: 20m}, {setWeight: 50}, {analyze: 2m}]"
#: One that is still running (9 s of its 20 % analysis left) when the watchers and waiters start,
#: even on a loaded machine where each new process takes seconds to start.
SHORT = "strategy.steps=[{setWeight: 20}, {analyze: 15m}, {setWeight: 50}, {analyze: 2m}]"
DEPLOY = ("deploy", *WHERE, "--version", "v2.0.0", "--strategy", "canary")
#: Wall-clock seconds per virtual second: the 20-minute analysis takes 12 s.
PACE = "0.01"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sandbox session with the stack's first update done (``up``)."""
    place = make_place(tmp_path_factory.mktemp("base"))
    done = place.run("up", "--stack", STACK)
    assert done.code == 0, done.stderr
    return place.state


@pytest.fixture
def session(base: Path, tmp_path: Path) -> Place:
    place = make_place(tmp_path)
    shutil.copytree(base, place.state)
    (place.state / "sandbox" / STACK / "update.lock").unlink(missing_ok=True)
    return place


def deploying(place: Place, steps: str) -> Running:
    """A paced ``deploy`` started in its own process, once its analysis at 20 % runs."""
    running = Running(place.start(*DEPLOY, "--set", steps, RFS_DEPLOY_SIM_PACE=PACE))
    running.wait_for(r"\] step 5/\d+: analyze")
    return running


def test_pause_from_another_process_holds_the_deploy_and_promote_completes_it(session: Place) -> None:
    deploy = deploying(session, LONG)

    paused = session.run("pause", *WHERE, "--interval", "1")

    assert paused.code == 0, paused.stderr
    assert re.search(r"PAUSED at step 4/\d+ by \S+@\S+; continue: rfs-deploy promote", paused.stdout)
    code, out, err = deploy.finish()
    assert code == 5, err
    assert "PAUSED" in out and "pause requested by" in out
    view = session.run("--json", "status", *WHERE).json()
    assert (view["status"], view["journal"], view["deployment_exit_code"]) == ("PAUSED", "paused", 5)
    assert "@" in view["paused"]["by"] and view["paused"]["step"] == 4
    interrupted = [s for s in view["steps"] if s["outcome"] == "interrupted"]
    assert [s["index"] for s in interrupted] == [4]
    # the weights stayed where they were: 20 % on the new version
    history = session.run("--json", "history", *WHERE).json()["stack_history"]
    assert history[0]["message"].startswith("rfs-deploy[") and "kind=paused" in history[0]["message"]

    # a second pause, and a pause of the held deployment, are refused; wait reports it at once
    assert "already; run `rfs-deploy promote" in one_error_line(session.run("pause", *WHERE), 2)
    assert session.run("wait", *WHERE, "--timeout", "5s").code == 5

    promoted = session.run("--json", "--quiet", "promote", *WHERE)
    assert promoted.code == 0, promoted.stderr
    assert promoted.json()["status"] == "COMPLETED"
    assert session.run("wait", *WHERE).code == 0
    line = one_error_line(session.run("pause", *WHERE), 2)
    assert "already completed; nothing to pause" in line


def test_watch_and_wait_follow_a_running_deploy_to_its_end(session: Place) -> None:
    deploy = deploying(session, SHORT)
    watch = Running(session.start("status", "--watch", *WHERE, "--interval", "1"))
    waiting = Running(session.start("--json", "wait", *WHERE, "--interval", "1"))

    timed_out = session.run("wait", *WHERE, "--timeout", "1", "--interval", "1")
    assert timed_out.code == 6, timed_out.stderr
    assert re.fullmatch(
        r"timed out after 1s: deployment \w+ of api-service \(v2\.0\.0\): IN_PROGRESS.*\n", timed_out.stdout
    )

    code, _, err = deploy.finish()
    assert code == 0, err
    watched, out, err = watch.finish()
    assert watched == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("watching deployment ")
    assert any(re.search(r"step 4/\d+ passed: set weight 20%", line) for line in lines)
    assert any(
        "weights green 20 % / blue 80 %" in line or "weights blue 80 % / green 20 %" in line for line in lines
    )
    verdicts = [line for line in lines if "verdict at step 5: PASS" in line]
    assert verdicts and all(re.search(r"error_rate [\d.e-]+, p99 [\d.]+", v) for v in verdicts)
    assert lines[-1].endswith("(exit 0)") and "COMPLETED" in lines[-1]
    assert "Traceback" not in err

    waited, out, err = waiting.finish()
    assert waited == 0, err
    document = json.loads(out)
    assert (document["status"], document["exit_code"], document["timed_out"]) == ("COMPLETED", 0, False)


def test_a_rolled_back_deploy_is_watched_as_ndjson_and_waited_for_with_exit_3(session: Place) -> None:
    done = session.run("--quiet", *DEPLOY, "--scenario", "error-spike")
    assert done.code == 3, done.stderr

    assert session.run("wait", *WHERE).code == 3
    watched = session.run("--json", "status", "--watch", *WHERE)
    assert watched.code == 3, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert events[0]["event"] == "watching" and events[-1]["event"] == "end"
    assert (events[-1]["status"], events[-1]["exit_code"]) == ("ROLLED_BACK", 3)
    failed = [e for e in events if e["event"] == "verdict" and e["outcome"] == "FAIL"]
    assert failed and failed[0]["numbers"], "the verdict that rolled it back carries its numbers"
    updates = [e for e in events if e["event"] == "update"]
    assert updates and all(isinstance(e["weights"], dict) for e in updates if e["result"] == "succeeded")
    assert any(e["phase"] == "rollback" for e in updates)


def test_pause_and_wait_refuse_when_nothing_runs(session: Place) -> None:
    assert "nothing to wait for" in one_error_line(session.run("wait", *WHERE), 2)
    assert "nothing to do" in one_error_line(session.run("pause", *WHERE), 2)
    # a deploy killed inside its second update: open, but nobody runs it
    killed = session.run("--quiet", *DEPLOY, RFS_DEPLOY_SIM_KILL="mid:2")
    assert killed.code == -signal.SIGKILL
    line = one_error_line(session.run("pause", *WHERE), 2)
    assert "is gone, so nothing runs it to pause" in line
    assert "rfs-deploy resume --stack" in line and "rfs-deploy abort --stack" in line
    for bad in ("0", "soon", "-5"):
        assert "--timeout" in one_error_line(session.run("wait", *WHERE, "--timeout", bad), 2)


def test_ctrl_c_ends_a_watch_with_130_and_the_deploy_goes_on(session: Place) -> None:
    deploy = deploying(session, SHORT)
    watch = Running(session.start("status", "--watch", *WHERE, "--interval", "1"))
    assert watch.proc.stdout is not None
    first = watch.proc.stdout.readline()
    assert first.startswith("watching deployment ")
    watch.proc.send_signal(signal.SIGINT)
    code, _, err = watch.finish()
    assert code == 130
    assert "Traceback" not in err and "the deployment itself goes on unaffected" in err
    code, _, err = deploy.finish()
    assert code == 0, err


def test_status_of_a_pause_that_counts_says_when_the_budget_runs_out(session: Place) -> None:
    gated = "strategy.steps=[{setWeight: 20}, {pause: {}}, {setWeight: 50}, {analyze: 2m}]"
    counts = "deploy.pauseCountsTowardsDeadline=true"
    done = session.run("--quiet", *DEPLOY, "--set", gated, "--set", counts)
    assert done.code == 5, done.stderr
    view = session.run("--json", "status", *WHERE).json()
    assert view["status"] == "PAUSED" and str(view["paused"]["deadline"]).endswith("Z")
    text = session.run("status", *WHERE).stdout
    assert re.search(r"its time budget (runs|ran) out at \S+Z \(the pause counts\)", text), text
    assert "promote" in text
