"""A sandbox canary paused at a gate, and ``rfs-deploy dashboard`` as a real child process."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from cli_helpers import SERVICE, STACK, Place

#: A canary held at 20 % until promoted (as in tests/cli/test_cli_gates.py).
GATED = "strategy.steps=[{setWeight: 20}, {pause: {}}, {setWeight: 50}, {analyze: 2m}]"
WHERE = ("--stack", STACK, "--service", SERVICE)
TOKEN_HEADER = "X-RFS-Token"


#: A canary that moves its weight while the page looks (10 %, then 30 %) and then analyzes long
#: enough at 30 % to be paused from the page; no gate. With :data:`PACE` the 10 % analysis takes
#: about 9 s of wall time and the 30 % one over a minute (a pause ends it at once).
MOVING = "strategy.steps=[{setWeight: 10}, {analyze: 15m}, {setWeight: 30}, {analyze: 2h}]"
#: Wall-clock seconds per virtual second of the deploy's waits (``RFS_DEPLOY_SIM_PACE``).
PACE = "0.01"


def deploy_running(place: Place, version: str) -> subprocess.Popen[str]:
    """A paced ``deploy`` of ``version`` (:data:`MOVING`) started in its own process; ``--quiet``
    keeps its stderr short, so nobody needs to read it while it runs."""
    deploy = ("deploy", *WHERE, "--strategy", "canary", "--set", MOVING, "--version", version)
    budget = ("--set", "deploy.deploymentTimeout=4h")
    return place.start("--json", "--quiet", *deploy, *budget, RFS_DEPLOY_SIM_PACE=PACE)


def deploy_paused(place: Place, version: str, *extra: str) -> str:
    """Deploy ``version`` to its gate (exit 5); the deployment's id."""
    deploy = ("deploy", *WHERE, "--strategy", "canary", "--set", GATED, "--version", version, *extra)
    done = place.run("--json", "--quiet", *deploy)
    assert done.code == 5, done.stderr
    record = done.json()
    assert record["status"] == "PAUSED", record
    return str(record["deployment_id"])


@dataclass
class Running:
    """A started dashboard: its process and the URL it printed."""

    process: subprocess.Popen[str]
    url: str

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]

    @property
    def token(self) -> str:
        return self.url.split("token=", 1)[1]

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return _request(urllib.request.Request(self.base + path, headers=headers or {}))

    def state(self) -> dict[str, Any]:
        code, body = self.get("/api/state", {TOKEN_HEADER: self.token})
        assert code == 200, body
        return dict(body)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        return _request(urllib.request.Request(self.base + path, data=body, headers=headers, method="POST"))

    def act(self, action: str, service: str = SERVICE) -> tuple[int, Any]:
        body = json.dumps({"action": action, "service": service}).encode()
        return self.post("/api/action", body, {TOKEN_HEADER: self.token, "Content-Type": "application/json"})

    def wait_action(self, action_id: int, timeout: float = 240) -> dict[str, Any]:
        """The action once its command ended (polls the state, bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for action in self.state()["actions"]:
                if action["id"] == action_id and not action["running"]:
                    return dict(action)
            time.sleep(0.5)
        raise AssertionError(f"action {action_id} still running after {timeout}s")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> tuple[int, str]:
        """Stop it with ``sig``: its exit code and everything it wrote on stderr."""
        self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


def _request(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def start_dashboard(place: Place, *extra: str, timeout: float = 120) -> Running:
    """``rfs-deploy dashboard --stack production --no-open`` in a new process, once it printed its URL."""
    process = place.start("dashboard", "--stack", STACK, "--no-open", *extra)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(
        target=lambda: lines.put(process.stdout.readline() if process.stdout else ""), daemon=True
    ).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        process.kill()
        raise AssertionError(f"the dashboard printed no URL in {timeout}s") from None
    if not line.startswith("dashboard: http://127.0.0.1:"):
        process.kill()
        _, err = process.communicate(timeout=30)
        raise AssertionError(f"unexpected first line {line!r}; stderr: {err}")
    return Running(process, line.split(" ", 1)[1].strip())
