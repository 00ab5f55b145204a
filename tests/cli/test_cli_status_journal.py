"""``status`` and ``history`` from stack history alone, as on a machine without this one's local
records (a new CI runner): the sandbox session is the backend and stays; ``.rfs-deploy/deployments``
goes. Read-only commands never write the session. Requested restores exit 0.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from cli_helpers import SERVICE, STACK, Place, one_error_line
from test_cli_lifecycle import kill_partway

ISO = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z\Z")
DEPLOY = ("deploy", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0", "--strategy", "canary")


def session_files(place: Place) -> tuple[str, int]:
    """The session's generation and its state file's modification time (ns)."""
    session = place.state / "sandbox" / STACK
    return (session / "state.gen").read_text(), (session / "state.json").stat().st_mtime_ns


def forget_records(place: Place) -> None:
    records = place.state / "deployments"
    assert records.is_dir()
    shutil.rmtree(records)


def status(place: Place, *args: str) -> dict[str, Any]:
    done = place.run("--json", "status", "--stack", STACK, *args)
    assert done.code == 0, done.stderr
    payload: dict[str, Any] = done.json()
    return payload


def test_status_and_history_from_the_journal_alone(place: Place) -> None:
    done = place.run("--json", "--quiet", *DEPLOY)
    assert done.code == 0, done.stderr
    deployed = done.json()
    deployment = deployed["deployment_id"]
    with_records = status(place)
    assert with_records["source"] == "journal+record" and with_records["summary"]["requests"] > 0

    forget_records(place)
    before = session_files(place)
    payload = status(place)
    assert payload["source"] == "journal"
    assert (payload["deployment_id"], payload["service"], payload["strategy"]) == (
        deployment,
        SERVICE,
        "canary",
    )
    assert (payload["from_version"], payload["version"]) == ("v1.0.0", "v2.0.0")
    assert (payload["status"], payload["journal"], payload["phase"]) == ("COMPLETED", "completed", "step")
    assert (payload["step"], payload["total_steps"], payload["progress"]) == (25, 25, 100)
    assert payload["started_at"] == deployed["started_at"] and payload["ended_at"] == deployed["ended_at"]
    assert ISO.match(payload["started_at"]) and ISO.match(payload["ended_at"])
    assert payload["exit_code"] == 0 and payload["deployment_exit_code"] == 0
    assert payload["checkpoint"] == 1 and len(payload["stack_versions"]) == 13
    assert payload["steps"] == [] and payload["summary"] is None  # the detail was in the records

    assert status(place, deployment[:5]) == payload  # a unique prefix names it
    text = place.run("status", "--stack", STACK, deployment)
    assert text.code == 0, text.stderr
    assert text.stdout.startswith(
        f"{deployment}: COMPLETED 100% — {SERVICE} v1.0.0 → v2.0.0 (canary); step 25/25"
    )
    assert f"started {deployed['started_at']}, ended {deployed['ended_at']}" in text.stdout
    assert "unknown deployment 'ffffffff'" in one_error_line(
        place.run("status", "--stack", STACK, "ffffffff"), 2
    )

    history = place.run("--json", "history", "--stack", STACK)
    assert history.code == 0, history.stderr
    [listed] = history.json()["deployments"]
    assert {k: listed[k] for k in ("deployment_id", "status", "from_version", "version", "source")} == {
        "deployment_id": deployment,
        "status": "COMPLETED",
        "from_version": "v1.0.0",
        "version": "v2.0.0",
        "source": "journal",
    }
    entries = history.json()["stack_history"]
    assert all(ISO.match(e["start_time"]) and ISO.match(e["end_time"]) for e in entries)
    assert {e["deployment_id"] for e in entries[:5]} == {deployment}
    lines = place.run("history", "--stack", STACK).stdout.splitlines()
    assert lines[0] == "deployments:"
    assert lines[1].startswith(f"  {deployment} COMPLETED   {SERVICE} v1.0.0 → v2.0.0 (canary) step 25/25 ")
    assert session_files(place) == before, "status and history wrote the sandbox session"

    # a rollback asked for restores the checkpoint and succeeds: exit 0, not the judge's 3
    rolled = place.run("--json", "--quiet", "rollback", "--stack", STACK, "--service", SERVICE)
    assert rolled.code == 0, rolled.stderr
    assert (rolled.json()["status"], rolled.json()["on_request"], rolled.json()["exit_code"]) == (
        "ROLLED_BACK",
        True,
        0,
    )
    forget_records(place)
    after = status(place)
    assert (after["strategy"], after["status"], after["journal"]) == (
        "rollback",
        "ROLLED_BACK",
        "rolled-back",
    )
    assert (after["from_version"], after["version"], after["requested"]) == ("v2.0.0", "v1.0.0", True)
    assert after["deployment_exit_code"] == 0 and after["rolled_back_to"] == 1


def test_an_open_deployment_from_the_journal_alone_then_aborted(place: Place) -> None:
    kill_partway(place)
    forget_records(place)
    payload = status(place)
    assert (payload["status"], payload["journal"], payload["source"]) == (
        "IN_PROGRESS",
        "in-progress",
        "journal",
    )
    assert 7 <= payload["step"] < payload["total_steps"] == 25
    assert payload["ended_at"] is None and ISO.match(payload["started_at"])
    assert payload["deployment_exit_code"] is None and payload["exit_code"] == 0

    aborted = place.run("--json", "--quiet", "abort", "--stack", STACK)
    assert aborted.code == 0, aborted.stderr
    assert aborted.json()["deployment_id"] == payload["deployment_id"]
    forget_records(place)
    after = status(place)
    assert (after["status"], after["journal"], after["requested"]) == ("ROLLED_BACK", "aborted", True)
    assert after["deployment_exit_code"] == 0 and ISO.match(after["ended_at"])


def test_status_of_a_sandbox_stack_without_a_session_creates_none(place: Place) -> None:
    line = one_error_line(place.run("status", "--stack", STACK), 2)
    assert "no deployments on stack production" in line
    history = place.run("--json", "history", "--stack", STACK)
    assert history.code == 0 and history.json()["deployments"] == history.json()["stack_history"] == []
    assert not Path(place.state / "sandbox").exists()
