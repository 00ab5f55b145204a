"""Command hooks from the stack file, through the command line in the sandbox (docs/hooks.md).

Each hook is a small Python script run with this interpreter: it appends its phase, label and
``RFS_DEPLOY_*`` environment to a JSON-lines file, prints a line or two, and exits with the code
it is given (or sleeps, for the timeout).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import REPO, SERVICE, STACK, Place, make_place, one_error_line

WHERE = ("--stack", STACK, "--service", SERVICE)
#: The passphrase and salt of tests/config/stacks/Pulumi.secrets.yaml (test data, not a secret).
PASSPHRASE = "test-passphrase-not-real"
SALT = "v1:cuIoN/1drYU=:v1:hTjSw50JkTJqwVjG:WOL96Wj6Xsp2hy3QKfX+ZLXaS20PPg=="
#: The plaintext of the hooks' secret variable: it must never show in a record, log or JSON.
TOKEN = "hook-token-7f3a91c2e5"

HOOK = """\
import json, os, sys, time
log, label, action = sys.argv[1], sys.argv[2], sys.argv[3]
seen = {k: v for k, v in os.environ.items() if k.startswith("RFS_DEPLOY_") or k in ("API_TOKEN", "PLAIN")}
with open(log, "a") as f:
    f.write(json.dumps({"label": label, "cwd": os.getcwd(), "env": seen}) + "\\n")
print("hook", label, "says the token is", os.environ.get("API_TOKEN", "-"))
if action == "sleep":
    time.sleep(120)
print("last words of", label)
sys.exit(int(action) if action.isdigit() else 0)
"""


def encrypt(plain: str) -> str:
    """A ``secure`` value of the salt's stack, as ``pulumi config set --secret`` writes it."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt = base64.b64decode(SALT.split(":")[1])
    key = hashlib.pbkdf2_hmac("sha256", PASSPHRASE.encode(), salt, 1_000_000, 32)
    nonce = os.urandom(12)
    data = AESGCM(key).encrypt(nonce, plain.encode(), None)
    return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(data).decode()}"


class Project:
    """A copy of the project whose production stack file has the hooks a test gives."""

    def __init__(self, base: Path) -> None:
        self.root = base / "project"
        self.root.mkdir()
        shutil.copy(REPO / "Pulumi.yaml", self.root)
        shutil.copytree(REPO / "stacks", self.root / "stacks")
        self.script = base / "hook.py"
        self.script.write_text(HOOK)
        self.log = base / "hooks.jsonl"

    def hook(self, label: str, action: str = "0", **settings: Any) -> dict[str, Any]:
        return {
            "name": label,
            "command": [sys.executable, str(self.script), str(self.log), label, action],
            **settings,
        }

    def write(self, hooks: Any, secret: bool = False) -> None:
        path = self.root / "stacks" / f"Pulumi.{STACK}.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["config"]["rfs-deploy:services"][SERVICE]["hooks"] = hooks
        if secret:
            doc["encryptionsalt"] = SALT
        path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def run(self, place: Place, *args: str, **env: str) -> Any:
        return place.run(*args, RFS_DEPLOY_PROJECT=str(self.root), PULUMI_CONFIG_PASSPHRASE=PASSPHRASE, **env)


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return make_place(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def deploy(project: Project, place: Place, *extra: str) -> Any:
    return project.run(place, "--json", "--quiet", "deploy", *WHERE, "--version", "v2.0.0", *extra)


def test_pre_validation_and_post_hooks_run_in_order_with_the_deployment_in_their_environment(
    project: Project, place: Place, tmp_path: Path
) -> None:
    workdir = tmp_path / "hook-dir"
    workdir.mkdir()
    project.write(
        {
            "preDeployment": [project.hook("pre-1"), project.hook("pre-2", env={"PLAIN": "seen"})],
            "validation": [project.hook("check", workingDir=str(workdir), timeout="2m")],
            "postDeployment": [project.hook("post")],
            "postRollback": [project.hook("after-rollback")],
        }
    )
    done = deploy(project, place)
    assert done.code == 0, done.stderr
    record = done.json()
    assert record["status"] == "COMPLETED"
    calls = project.calls()
    assert [c["label"] for c in calls] == ["pre-1", "pre-2", "check", "post"]
    phases = [c["env"]["RFS_DEPLOY_PHASE"] for c in calls]
    assert phases == ["pre-deployment", "pre-deployment", "validation", "post-deployment"]
    for call in calls:
        env = call["env"]
        assert env["RFS_DEPLOY_DEPLOYMENT_ID"] == record["deployment_id"]
        assert (env["RFS_DEPLOY_STACK"], env["RFS_DEPLOY_SERVICE"]) == (STACK, SERVICE)
        assert (env["RFS_DEPLOY_VERSION"], env["RFS_DEPLOY_PREVIOUS_VERSION"]) == ("v2.0.0", "v1.0.0")
        assert env["RFS_DEPLOY_STRATEGY"] == "canary"
    assert calls[1]["env"]["PLAIN"] == "seen" and "PLAIN" not in calls[0]["env"]
    assert calls[2]["cwd"] == str(workdir)
    assert calls[2]["env"]["RFS_DEPLOY_BASE_URL"].startswith("http")
    statuses = [c["env"]["RFS_DEPLOY_STATUS"] for c in calls]
    assert statuses == ["PENDING", "PENDING", "VALIDATING", "COMPLETED"]
    assert not any("RFS_DEPLOY_REASON" in c["env"] for c in calls)
    assert record["errors"] == []


def test_a_failing_pre_deployment_hook_changes_nothing(project: Project, place: Place) -> None:
    project.write({"preDeployment": [project.hook("ticket", "3")], "validation": [project.hook("check")]})
    done = deploy(project, place)
    record = done.json()
    assert record["status"] == "ROLLED_BACK", done.stderr
    reason = " ".join(record["errors"])
    assert "pre-deployment hook ticket failed: exited 3: last words of ticket" in reason
    assert "nothing was changed" in reason
    assert [c["label"] for c in project.calls()] == ["ticket"]  # the validate step never came
    assert record["rolled_back_to"] is None


def test_a_failing_validation_hook_rolls_back_with_its_output_in_the_reason_and_post_rollback_runs(
    project: Project, place: Place
) -> None:
    project.write(
        {
            "validation": [project.hook("smoke", "1"), project.hook("never")],
            "postDeployment": [project.hook("post")],
            "postRollback": [project.hook("after-rollback")],
        }
    )
    done = deploy(project, place)
    record = done.json()
    assert record["status"] == "ROLLED_BACK", done.stderr
    reason = " ".join(record["errors"])
    assert "validation hook smoke failed: exited 1: last words of smoke; 1 not run" in reason
    calls = project.calls()
    assert [c["label"] for c in calls] == ["smoke", "after-rollback"]
    env = calls[1]["env"]
    assert (env["RFS_DEPLOY_PHASE"], env["RFS_DEPLOY_STATUS"]) == ("post-rollback", "ROLLED_BACK")
    assert env["RFS_DEPLOY_DEPLOYMENT_ID"] == record["deployment_id"]
    assert "validation hook smoke failed" in env["RFS_DEPLOY_REASON"]
    assert env["RFS_DEPLOY_ROLLED_BACK_TO"] == str(record["rolled_back_to"])
    assert env["RFS_DEPLOY_ON_REQUEST"] == "false"


def test_post_rollback_runs_after_an_error_spike_rollback_and_its_failure_leaves_the_rollback(
    project: Project, place: Place
) -> None:
    project.write({"postRollback": [project.hook("page-oncall", "2")]})
    done = deploy(project, place, "--scenario", "error-spike")
    record = done.json()
    assert record["status"] == "ROLLED_BACK", done.stderr
    assert record["rolled_back_to"] is not None
    assert any(
        "post-rollback hook page-oncall failed: exited 2: last words of page-oncall (the rollback stands)"
        in e
        for e in record["errors"]
    )
    (call,) = project.calls()
    env = call["env"]
    assert env["RFS_DEPLOY_PHASE"] == "post-rollback"
    assert env["RFS_DEPLOY_REASON"].startswith("rolled back: ")
    assert "failed" in env["RFS_DEPLOY_REASON"]


def test_abort_at_a_gate_runs_post_rollback_with_on_request(project: Project, place: Place) -> None:
    project.write({"postRollback": [project.hook("after-abort")]})
    gated = "strategy.steps=[{setWeight: 20}, {pause: {}}, {setWeight: 50}]"
    paused = project.run(place, "--quiet", "deploy", *WHERE, "--version", "v2.0.0", "--set", gated)
    assert paused.code == 5, paused.stderr
    assert project.calls() == []
    done = project.run(place, "--json", "--quiet", "abort", *WHERE)
    assert done.code == 0, done.stderr
    (call,) = project.calls()
    assert call["env"]["RFS_DEPLOY_ON_REQUEST"] == "true"
    assert call["env"]["RFS_DEPLOY_REASON"] == "aborted: aborted on request"


def test_a_secret_variable_never_shows_in_the_record_the_json_or_the_log(
    project: Project, place: Place
) -> None:
    secret = {"API_TOKEN": {"secure": encrypt(TOKEN)}}
    project.write({"validation": [project.hook("smoke", "1", env=secret)]}, secret=True)
    done = deploy(project, place)
    assert done.json()["status"] == "ROLLED_BACK", done.stderr
    (call,) = project.calls()
    assert call["env"]["API_TOKEN"] == TOKEN  # the hook itself gets the plaintext
    reason = " ".join(done.json()["errors"])
    assert "validation hook smoke failed: exited 1: last words of smoke" in reason
    assert TOKEN not in done.stdout and TOKEN not in done.stderr
    # the failed hook's output tail is logged, redacted
    assert "validation hook smoke output" in done.stderr and "says the token is ***" in done.stderr
    for path in place.state.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path
    for path in project.root.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path


def test_a_hook_that_runs_too_long_is_killed(project: Project, place: Place) -> None:
    project.write({"preDeployment": [project.hook("slow", "sleep", timeout="1s")]})
    done = deploy(project, place)
    record = done.json()
    assert record["status"] == "ROLLED_BACK", done.stderr
    assert any(
        "pre-deployment hook slow failed: timed out after 1s and was killed" in e for e in record["errors"]
    )


@pytest.mark.parametrize(
    ("hooks", "key", "words"),
    [
        ({"preDeploy": []}, "hooks.preDeploy", "unknown key; did you mean 'preDeployment'"),
        ({"validation": [{"command": ""}]}, "hooks.validation.0.command", "command: the command is empty"),
        ({"validation": [{"command": []}]}, "hooks.validation.0.command", "at least 1"),
        (
            {"postRollback": [{"command": ["true"], "timeout": "soon"}]},
            "hooks.postRollback.0.timeout",
            "duration",
        ),
        ({"postDeployment": [{"command": ["true"], "env": {"RFS_DEPLOY_X": "1"}}]}, "env", "RFS_DEPLOY_"),
    ],
)
def test_bad_hook_config_is_one_line_naming_the_key(
    project: Project, place: Place, hooks: dict[str, Any], key: str, words: str
) -> None:
    project.write(hooks)
    line = one_error_line(deploy(project, place), 2)
    assert key in line and words in line, line


@pytest.mark.skipif("PULUMI_CONFIG_PASSPHRASE" in os.environ, reason="the test environment sets a passphrase")
def test_a_secret_variable_that_cannot_be_decrypted_refuses_the_deployment_naming_it(
    project: Project, place: Place
) -> None:
    project.write(
        {"validation": [project.hook("smoke", env={"API_TOKEN": {"secure": encrypt(TOKEN)}})]}, secret=True
    )
    done = place.run("deploy", *WHERE, "--version", "v2.0.0", RFS_DEPLOY_PROJECT=str(project.root))
    line = one_error_line(done, 2)
    assert (
        f"services.{SERVICE}.hooks.validation.0.env.API_TOKEN" in line and "PULUMI_CONFIG_PASSPHRASE" in line
    )
    assert project.calls() == []
