"""Webhooks through the command line, in the sandbox, a new process per command: the stack file
of a project names the webhooks, their URLs Pulumi secrets (passphrase provider); a real HTTP
receiver on 127.0.0.1 gets every event of a canary once and in order; a confirm-promotion webhook
that never says yes ends ``deploy`` with the paused code and ``promote`` goes on; a receiver that
is down for good leaves the rollback as it is and a warning with each event, never the URL."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import REPO, SERVICE, STACK, Place, make_place
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from webhook_receiver import Receiver

PASSPHRASE = "webhook-test-passphrase"
TOKEN = "T0KEN-not-a-real-slack-path-42"
WHERE = ("--stack", STACK, "--service", SERVICE)
#: A short canary: 20 %, two minutes of analysis, then 100 % (and its analysis).
SHORT = "strategy.steps=[{setWeight: 20}, {analyze: 2m}]"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Secrets:
    """Pulumi's passphrase provider, as ``pulumi config set --secret`` writes its values."""

    def __init__(self, passphrase: str) -> None:
        self.salt = os.urandom(8)
        self.key = hashlib.pbkdf2_hmac("sha256", passphrase.encode(), self.salt, 1_000_000, 32)

    def encrypt(self, text: str) -> dict[str, str]:
        nonce = os.urandom(12)
        return {"secure": f"v1:{_b64(nonce)}:{_b64(AESGCM(self.key).encrypt(nonce, text.encode(), None))}"}

    def state(self) -> str:
        return f"v1:{_b64(self.salt)}:{self.encrypt('pulumi')['secure']}"


def project(base: Path, webhooks: list[dict[str, Any]]) -> Path:
    """A copy of the project whose production stack file gives api-service ``webhooks``; every
    ``url`` is written as a Pulumi secret."""
    root = base / "project"
    root.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", root)
    shutil.copytree(REPO / "stacks", root / "stacks")
    path = root / "stacks" / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(path.read_text())
    secrets = Secrets(PASSPHRASE)
    doc["encryptionsalt"] = secrets.state()
    hooks = [{**hook, "url": secrets.encrypt(hook["url"])} for hook in webhooks]
    doc["config"]["rfs-deploy:services"][SERVICE]["webhooks"] = hooks
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert TOKEN not in path.read_text()
    return root


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return make_place(tmp_path)


def run(place: Place, root: Path, *args: str) -> Any:
    return place.run(*args, RFS_DEPLOY_PROJECT=str(root), PULUMI_CONFIG_PASSPHRASE=PASSPHRASE)


def no_token_anywhere(place: Place, *outputs: str) -> None:
    for text in outputs:
        assert TOKEN not in text
    for path in place.state.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_every_event_of_a_sandbox_canary_reaches_the_receiver_once_and_in_order(
    place: Place, tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers()
    root = project(tmp_path, [{"name": "events", "url": receiver.url(f"/hooks/{TOKEN}")}])
    done = run(place, root, "--json", "deploy", *WHERE, "--version", "v2.0.0", "--set", SHORT)
    assert done.code == 0, done.stderr
    record = done.json()
    assert record["status"] == "COMPLETED"
    got = receiver.delivered()
    assert len(got) == len(receiver.requests)  # each event once
    assert [b["seq"] for b in got] == list(range(1, len(got) + 1))
    assert {b["deployment_id"] for b in got} == {record["deployment_id"]}
    kinds = [b["type"] for b in got]
    assert kinds[0] == "started" and kinds[-1] == "completed"
    started = [b["index"] for b in got if b["type"] == "step-started"]
    assert started == list(range(record["total_steps"]))
    assert kinds.count("step-finished") == record["total_steps"]
    verdicts = [b for b in got if b["type"] == "verdict"]
    assert verdicts and all(isinstance(b["numbers"].get("requests"), int) for b in verdicts)
    no_token_anywhere(place, done.stdout, done.stderr)


def test_a_confirm_promotion_that_never_says_yes_exits_paused_and_promote_completes(
    place: Place, tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    board = receivers(lambda n: 403, limit=20)
    feed = receivers()
    root = project(
        tmp_path,
        [
            {
                "name": "board",
                "url": board.url(f"/hooks/{TOKEN}"),
                "type": "confirm-promotion",
                "interval": "1m",
                "deadline": "3m",
            },
            {"name": "feed", "url": feed.url(f"/hooks/{TOKEN}"), "format": "json"},
        ],
    )
    done = run(place, root, "--json", "--quiet", "deploy", *WHERE, "--version", "v2.0.0", "--set", SHORT)
    assert done.code == 5, done.stderr
    pause = done.json()["paused"]
    assert "webhook board (confirm-promotion) did not confirm step" in pause["reason"]
    assert len(board.requests) == 4  # at 0, 1, 2 and 3 minutes
    status = run(place, root, "--json", "status", *WHERE).json()
    assert (status["status"], status["paused"]["step"]) == ("PAUSED", pause["step"] + 1)

    promoted = run(place, root, "--json", "--quiet", "promote", *WHERE)
    assert promoted.code == 0, promoted.stderr
    assert promoted.json()["status"] == "COMPLETED"
    assert len(board.requests) == 4  # the promote is the go-ahead
    kinds = [b["type"] for b in feed.delivered()]
    assert "rollback-started" not in kinds
    assert kinds.index("paused") < kinds.index("promoted") < kinds.index("completed") == len(kinds) - 1
    no_token_anywhere(place, done.stdout, done.stderr, promoted.stdout, promoted.stderr)


def test_a_receiver_down_for_good_leaves_the_rollback_as_it_is_and_logs_each_event(
    place: Place, tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hooks/{TOKEN}"
    root = project(tmp_path, [{"name": "events", "url": url, "retries": 1}])
    args = ("--json", "--quiet", "deploy", *WHERE, "--version", "v2.0.0", "--set", SHORT)
    done = run(place, root, *args, "--scenario", "error-spike")
    assert done.code == 3, done.stderr
    assert done.json()["status"] == "ROLLED_BACK"
    lost = [line for line in done.stderr.splitlines() if "webhook events: event" in line]
    assert lost and all("not delivered after 2 attempts" in line for line in lost)
    assert '"type": "rolled-back"' in lost[-1]
    no_token_anywhere(place, done.stdout, done.stderr)
