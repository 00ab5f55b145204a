"""Command hooks from the stack file and the post-rollback phase, on the shipped fakes (docs/hooks.md).

The commands are small Python scripts run with this interpreter; the Python hooks next to them
record what they saw, so the order of the two kinds and the state of the world at each are
checked directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from drive_world import NEW, OLD, SERVICE, World, build_world, run
from pydantic import ValidationError

from rfs_deploy.config.hooks import CommandHookSettings, ServiceHooks
from rfs_deploy.config.secrets import MASKED, remember
from rfs_deploy.drive.command_hook import CommandResult, from_settings, run_phase
from rfs_deploy.drive.hooks import HookContext, HookPhase
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.errors import ConfigError
from rfs_deploy.testing import Behaviour

#: Stands for a value decrypted from the stack file (the sandbox test uses a real one).
DECRYPTED = "decrypted-value-c0ffee42"

SCRIPT = """\
import json, os, sys, time
log, label, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = {k: v for k, v in os.environ.items() if k.startswith("RFS_DEPLOY_")}
with open(log, "a") as f:
    f.write(json.dumps({"label": label, "env": seen}) + "\\n")
for n in range(30):
    print("line", n)
print("greeting is", os.environ.get("GREETING", "-"))
print("the end of", label)
sys.exit(code)
"""


class Commands:
    """Hook entries running :data:`SCRIPT`, and what they wrote."""

    def __init__(self, directory: Path) -> None:
        self.script = directory / "hook.py"
        self.script.write_text(SCRIPT)
        self.log = directory / "calls.jsonl"

    def hook(self, label: str, code: int = 0, **settings: Any) -> dict[str, Any]:
        argv = [sys.executable, str(self.script), str(self.log), label, str(code)]
        return {"name": label, "command": argv, **settings}

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def commands(tmp_path: Path) -> Commands:
    return Commands(tmp_path)


def world_with(
    hooks: dict[str, Any], behaviours: dict[str, Behaviour] | None = None, **changes: Any
) -> World:
    return build_world(behaviours, {"hooks": hooks, **changes})


# --------------------------------------------------------------------------- the model


def test_a_string_command_is_split_like_shell_words_and_never_shell_run() -> None:
    settings = CommandHookSettings.model_validate({"command": "./smoke.sh --name 'a b' $HOME"})
    assert settings.command == ["./smoke.sh", "--name", "a b", "$HOME"]
    assert settings.shown == "./smoke.sh --name 'a b' '$HOME'"
    assert settings.timeout == 300
    assert CommandHookSettings.model_validate({"command": ["x"], "timeout": "1m30s"}).timeout == 90


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"command": "say 'unclosed"}, "cannot split the command into words"),
        ({"command": "   "}, "the command is empty"),
        ({"command": ["", "x"]}, "the program (the command's first word) is empty"),
        ({"command": ["x"], "env": {"BAD-NAME": "1"}}, "is not an environment variable name"),
        (
            {"command": ["x"], "env": {"RFS_DEPLOY_PHASE": "1"}},
            "RFS_DEPLOY_* variables describe the deployment",
        ),
        ({"command": ["x"], "timeout": 0}, "greater than or equal to 1"),
        ({"command": ["x"], "cmd": ["y"]}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_entry_is_refused_saying_why(entry: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(words)):
        ServiceHooks.model_validate({"postRollback": [entry]})


def test_env_values_never_show_in_a_dump_of_the_config() -> None:
    hooks = ServiceHooks.model_validate({"validation": [{"command": ["x"], "env": {"GREETING": DECRYPTED}}]})
    assert DECRYPTED not in hooks.model_dump_json() and DECRYPTED not in repr(hooks)


# --------------------------------------------------------------------------- the phases on the fakes


def test_config_hooks_run_before_the_python_hooks_of_each_phase(commands: Commands) -> None:
    world = world_with(
        {
            "preDeployment": [commands.hook("pre")],
            "validation": [commands.hook("check")],
            "postDeployment": [commands.hook("post")],
        }
    )
    order: list[str] = []

    def python(label: str) -> Any:
        return lambda ctx: order.append(f"{label} after {len(commands.calls())} commands")

    world.hooks.pre_deployment.append(python("pre"))
    world.hooks.validation.append(python("check"))
    world.hooks.post_deployment.append(python("post"))
    record = world.deploy("blue-green")

    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert order == ["pre after 1 commands", "check after 2 commands", "post after 3 commands"]
    env = commands.calls()[1]["env"]
    assert (env["RFS_DEPLOY_PHASE"], env["RFS_DEPLOY_STATUS"]) == ("validation", "VALIDATING")
    assert (env["RFS_DEPLOY_VERSION"], env["RFS_DEPLOY_PREVIOUS_VERSION"]) == (NEW, OLD)


def test_python_post_rollback_hooks_run_after_the_checkpoint_is_restored(commands: Commands) -> None:
    world = world_with({"postRollback": [commands.hook("page")]}, {NEW: Behaviour(p99=3.0)})
    seen: list[Any] = []

    def after(ctx: HookContext) -> None:
        seen.append(
            (ctx.phase, ctx.status, ctx.reason, world.latest().status, world.release() == world.start)
        )

    world.hooks.post_rollback.append(after)
    record = world.deploy("canary")

    assert record.status is DeploymentStatus.ROLLED_BACK
    ((phase, status, reason, journal_status, restored),) = seen
    assert (phase, status, journal_status, restored) == (
        HookPhase.POST_ROLLBACK,
        "ROLLED_BACK",
        "rolled-back",
        True,
    )
    assert reason.startswith("rolled back: step ") and "failed" in reason
    (call,) = commands.calls()  # the command hook ran first
    assert call["env"]["RFS_DEPLOY_REASON"] == reason
    assert call["env"]["RFS_DEPLOY_ROLLED_BACK_TO"] == str(record.rolled_back_to)
    assert call["env"]["RFS_DEPLOY_ON_REQUEST"] == "false"


def test_a_failing_post_rollback_hook_is_recorded_and_the_rollback_stands(
    commands: Commands, caplog: pytest.LogCaptureFixture
) -> None:
    world = world_with(
        {"postRollback": [commands.hook("page", 4), commands.hook("never")]}, {NEW: Behaviour(p99=3.0)}
    )
    ran: list[str] = []
    world.hooks.post_rollback.append(lambda ctx: ran.append("python"))
    with caplog.at_level(logging.INFO, logger="rfs_deploy"):
        record = world.deploy("canary")

    assert record.status is DeploymentStatus.ROLLED_BACK
    assert world.release() == world.start and world.latest().status == "rolled-back"
    assert [c["label"] for c in commands.calls()] == ["page"] and ran == []
    (error,) = [e for e in record.errors if "post-rollback" in e]
    assert (
        error == "post-rollback hook page failed: exited 4: the end of page; 2 not run (the rollback stands)"
    )
    assert "post-rollback hook page failed" in json.dumps(record.to_json())
    # the failed command's last 20 lines are logged, the earlier ones are not
    logged = [r.getMessage() for r in caplog.records if "post-rollback hook page output" in r.getMessage()]
    assert (
        len(logged) == 1
        and "line 29" in logged[0]
        and "line 12\n" in logged[0]
        and "line 11\n" not in logged[0]
    )


def test_post_rollback_runs_for_the_rollback_command_on_request(commands: Commands) -> None:
    world = world_with({"postRollback": [commands.hook("page")]})
    assert world.deploy("blue-green").status is DeploymentStatus.COMPLETED
    record = run(world.driver().rollback(SERVICE, to_version=1))
    assert record.status is DeploymentStatus.ROLLED_BACK
    (call,) = commands.calls()
    env = call["env"]
    assert (env["RFS_DEPLOY_ON_REQUEST"], env["RFS_DEPLOY_STRATEGY"]) == ("true", "rollback")
    assert env["RFS_DEPLOY_REASON"] == "rolled back: rollback to stack version 1 on request"


def test_post_rollback_does_not_run_when_nothing_was_restored(commands: Commands) -> None:
    # refused by a pre-deployment hook: nothing changed, nothing restored
    world = world_with(
        {"preDeployment": [commands.hook("ticket", 1)], "postRollback": [commands.hook("page")]}
    )
    record = world.deploy("canary")
    assert record.status is DeploymentStatus.ROLLED_BACK
    assert [c["label"] for c in commands.calls()] == ["ticket"]
    assert world.stack.updates == 0
    # automatic rollback off: the failed deployment is left for abort, nothing is restored yet
    commands.log.unlink()
    world = world_with(
        {"postRollback": [commands.hook("page")]}, {NEW: Behaviour(p99=3.0)}, deploy={"autoRollback": False}
    )
    assert world.deploy("canary").status is DeploymentStatus.FAILED
    assert commands.calls() == []


def test_a_secret_is_redacted_from_the_reason_the_record_and_the_log(
    commands: Commands, caplog: pytest.LogCaptureFixture
) -> None:
    remember([DECRYPTED])  # what decrypting it from the stack file does
    world = world_with({"validation": [commands.hook("smoke", 1, env={"GREETING": DECRYPTED})]})
    with caplog.at_level(logging.DEBUG, logger="rfs_deploy"):
        record = world.deploy("canary")
    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("validation hook smoke failed: exited 1: the end of smoke" in e for e in record.errors)
    assert DECRYPTED not in json.dumps(record.to_json())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "greeting is ***" in text and DECRYPTED not in text


def test_a_secret_not_decrypted_here_refuses_the_deployment_naming_the_key(commands: Commands) -> None:
    world = world_with({"postRollback": [commands.hook("page", env={"TOKEN": MASKED})]})
    with pytest.raises(ConfigError) as caught:
        world.deploy("canary")
    assert caught.value.key == f"rfs-deploy:services.{SERVICE}.hooks.postRollback.0.env.TOKEN"
    assert world.stack.updates == 0 and commands.calls() == []
    # a hook that would run without it anyway (abort, rollback) fails naming it instead
    hook = from_settings(
        CommandHookSettings.model_validate(commands.hook("page", env={"TOKEN": MASKED})), "post-rollback", 0
    )
    result = run(run_phase([hook], None, {"deployment_id": "d"}, HookPhase.POST_ROLLBACK))
    assert not result.ok and "hooks.postRollback[0].env.TOKEN" in result.summary
    assert commands.calls() == []


def test_a_hook_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        f"open({str(pidfile)!r}, 'w').write(str(child.pid)); print('started', flush=True); time.sleep(300)"
    )
    settings = ServiceHooks.model_validate(
        {"preDeployment": [{"name": "slow", "command": [sys.executable, "-c", code], "timeout": 1}]}
    )
    report = asyncio.run(run_phase([], settings, {"deployment_id": "d"}, HookPhase.PRE_DEPLOYMENT))
    assert not report.ok
    assert report.summary == "pre-deployment hook slow failed: timed out after 1s and was killed: started"
    result = report.results[0].value
    assert isinstance(result, CommandResult) and result.timed_out
    child = int(pidfile.read_text())
    # SIGKILL went to the whole group at once; the kernel may take a moment to finish the child
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), _state(child)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def _alive(pid: int) -> bool:
    """Running: not gone, and no zombie (a killed child its killed parent never reaped)."""
    return _state(pid) not in ("gone", "Z")


def test_the_seed_api_takes_post_rollback_hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``DeploymentConfig.post_rollback_hooks`` on the sandbox: a validation hook that says no
    rolls the canary back, then the post-rollback hook sees the restored stack."""
    from rfs_deploy import seed_support
    from rfs_deploy.deployment import DeploymentConfig, DeploymentStrategy, ProductionDeployer

    monkeypatch.setenv("RFS_DEPLOY_BACKEND", "sim")
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("RFS_DEPLOY_PROJECT", str(Path(__file__).resolve().parents[2]))
    monkeypatch.delenv("RFS_DEPLOY_SCENARIO", raising=False)
    seen: list[tuple[HookPhase, str, str]] = []

    def after(ctx: HookContext) -> None:
        release = seed_support.seams_for("production").backend.read_config().release[ctx.service]
        seen.append((ctx.phase, ctx.reason, str(release.slot(release.live).version)))

    config = DeploymentConfig(
        strategy=DeploymentStrategy.CANARY, validation_hooks=[lambda ctx: False], post_rollback_hooks=[after]
    )
    try:
        deployer = ProductionDeployer(config)
        asyncio.run(deployer.deploy(NEW))
        (record, *_) = deployer.get_deployment_history()
        assert record.status is DeploymentStatus.ROLLED_BACK
        ((phase, reason, live),) = seen
        assert (phase, live) == (HookPhase.POST_ROLLBACK, OLD)
        assert "validation hook <lambda> failed: returned False" in reason
    finally:
        seed_support.reset()
