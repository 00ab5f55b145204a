"""``rfs-deploy dashboard`` over plain HTTP, no browser: the token check, the JSON state the page
polls (what ``status --json`` shows, plus the weights), the buttons' endpoint, and its errors."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import STACK, Place, make_place, one_error_line
from dashboard_helpers import TOKEN_HEADER, WHERE, Running, deploy_paused, start_dashboard


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Place:
    return make_place(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture(scope="module")
def paused_id(place: Place) -> str:
    return deploy_paused(place, "v2.0.0")


@pytest.fixture(scope="module")
def dashboard(place: Place, paused_id: str) -> Iterator[Running]:
    running = start_dashboard(place)
    yield running
    if running.process.poll() is None:
        running.stop()


def test_the_state_is_the_status_view_with_the_weights(
    place: Place, paused_id: str, dashboard: Running
) -> None:
    status = place.run("--json", "status", *WHERE)
    assert status.code == 0, status.stderr
    cli = status.json()
    state = dashboard.state()
    assert (state["stack"], state["error"]) == (STACK, None)
    shown = state["deployments"][0]
    assert shown["deployment_id"] == cli["deployment_id"] == paused_id
    for key in ("status", "journal", "step", "total_steps", "version", "from_version", "strategy"):
        assert shown[key] == cli[key], key
    assert shown["status"] == "PAUSED" and shown["paused"]["step"] == cli["paused"]["step"]
    assert shown["paused"]["by"] == cli["paused"]["by"]
    # the split the journal's newest update left: the canary's 20 % on the idle slot
    assert shown["weights"] == {"blue": 80, "green": 20, "live": "blue", "new_slot": "green"}
    assert shown["steps"][shown["step"] - 1]["kind"] == "gate"
    assert state["actions"] == []


def test_every_request_without_the_token_is_refused(dashboard: Running) -> None:
    token = dashboard.token
    assert dashboard.get("/")[0] == 403
    assert dashboard.get("/?token=" + "x" * len(token))[0] == 403
    assert dashboard.get("/?token=" + token[:-1])[0] == 403
    assert dashboard.get("/api/state")[0] == 403
    assert dashboard.get("/api/state", {TOKEN_HEADER: token + "x"})[0] == 403
    assert dashboard.get("/no-such-page")[0] == 403
    # a button needs the token in the header; in the query string (what a cross-site form can send), no
    body = b'{"action": "abort", "service": "api-service"}'
    assert dashboard.post("/api/action?token=" + token, body, {"Content-Type": "application/json"})[0] == 403
    assert dashboard.post("/api/action", body, {"Content-Type": "application/json"})[0] == 403
    assert dashboard.state()["actions"] == []  # nothing ran


def test_the_page_needs_the_token_once_and_keeps_its_script_to_itself(dashboard: Running) -> None:
    import urllib.request

    with urllib.request.urlopen(dashboard.url, timeout=60) as response:
        page = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
    assert "<title>rfs-deploy: production</title>" in page and 'id="btn-promote"' in page
    assert dashboard.token not in page  # the script reads it from its own address
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'<script nonce="{nonce}">' in page and "default-src 'none'" in policy
    assert dashboard.get("/elsewhere", {TOKEN_HEADER: dashboard.token})[0] == 404


def test_a_button_request_must_be_json_naming_an_action_and_a_service(dashboard: Running) -> None:
    header = {TOKEN_HEADER: dashboard.token}
    json_header = {**header, "Content-Type": "application/json"}
    action = b'{"action": "promote", "service": "api-service"}'
    assert dashboard.post("/api/action", action, {**header, "Content-Type": "text/plain"})[0] == 415
    assert dashboard.post("/api/action", b"[1]", json_header)[0] == 400
    assert dashboard.post("/api/action", b"not json", json_header)[0] == 400
    code, body = dashboard.act("deploy")
    assert code == 400 and "promote, pause, abort" in body["error"]
    assert dashboard.act("abort", "--force")[0] == 400  # never an option of the command
    assert dashboard.post("/api/other", action, json_header)[0] == 404
    assert dashboard.state()["actions"] == []


def test_a_button_runs_the_command_and_shows_its_outcome_and_exit_code(dashboard: Running) -> None:
    code, started = dashboard.act("promote", "no-such-service")
    assert code == 202, started
    assert started["command"] == f"rfs-deploy promote --stack {STACK} --service no-such-service"
    assert started["running"] is True and started["exit_code"] is None
    # one command at a time
    assert dashboard.act("abort")[0] == 409
    done = dashboard.wait_action(started["id"])
    # what the command itself says and returns: refused, one error line
    assert done["exit_code"] == 2, done
    assert done["outcome"].startswith("rfs-deploy: error: "), done
    assert "no-such-service" in done["outcome"] or "no open deployment" in done["outcome"]
    assert dashboard.state()["deployments"][0]["status"] == "PAUSED"  # nothing changed


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_it_with_one_line(place: Place, paused_id: str, sig: int, code: int) -> None:
    running = start_dashboard(place)
    assert running.state()["deployments"][0]["deployment_id"] == paused_id
    exit_code, err = running.stop(sig)
    assert exit_code == code, err
    assert "Traceback" not in err and running.token not in err
    assert err.strip().splitlines()[-1] == "dashboard: stopped"


def test_a_host_other_than_loopback_is_refused(place: Place) -> None:
    line = one_error_line(place.run("dashboard", "--stack", STACK, "--no-open", "--host", "0.0.0.0"), 2)
    assert "--host 0.0.0.0" in line and "loopback" in line


def test_a_port_in_use_is_one_error_line(place: Place) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(place.run("dashboard", "--stack", STACK, "--no-open", "--port", str(port)), 2)
    assert f"--port {port}" in line and "in use" in line


def test_a_stack_without_a_stack_file_is_refused(tmp_path: Path) -> None:
    place = make_place(tmp_path)
    line = one_error_line(place.run("dashboard", "--stack", "staging", "--no-open"), 2)
    assert "stack staging" in line and "Pulumi.staging.yaml" in line
    assert "--port" in one_error_line(place.run("dashboard", "--stack", STACK, "--port", "70000"), 2)
