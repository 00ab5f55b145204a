"""Command hooks: the deployment in the environment, exit codes, timeouts, redaction."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rfs_deploy.config.secrets import known_secrets, secret_values
from rfs_deploy.drive.command_hook import CommandHook, CommandResult, context_env
from rfs_deploy.drive.hooks import HookContext, HookPhase, HookReport, run_hooks

CONTEXT = HookContext(
    deployment_id="dep-42",
    service="api-service",
    version="v2.0.0",
    environment="production",
    strategy="canary",
    previous_version="v1.0.0",
    base_url="http://green.sim",
    extra={"change-ticket": "CHG-7", "service": "not-this-one"},
)


def run(
    hooks: list[Any], phase: HookPhase | str = HookPhase.PRE_DEPLOYMENT, context: Any = CONTEXT
) -> HookReport:
    return asyncio.run(run_hooks(hooks, context, phase))


def test_command_hook_sees_the_deployment_in_its_environment() -> None:
    hook = CommandHook(
        'echo "$RFS_DEPLOY_SERVICE $RFS_DEPLOY_VERSION $RFS_DEPLOY_PHASE $RFS_DEPLOY_CHANGE_TICKET"'
    )
    report = run([hook], HookPhase.VALIDATION)
    assert report.ok, report.summary
    result = report.results[0].value
    assert isinstance(result, CommandResult)
    assert result.output.strip() == "api-service v2.0.0 validation CHG-7"
    assert (result.exit_code, result.detail) == (0, "exited 0")


def test_command_hook_non_zero_exit_fails_with_its_last_line() -> None:
    hook = CommandHook([sys.executable, "-c", "import sys; print('checking'); sys.exit('smoke test failed')"])
    report = run([hook])
    assert report.failed is not None
    assert report.failed.detail == "exited 1: smoke test failed"
    assert report.failed.name.startswith("command '")


def test_command_hook_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    hook = CommandHook(f"sleep 30 & echo $! > {pid_file}; echo started; wait", timeout=0.5)
    started = time.perf_counter()
    result = asyncio.run(hook(CONTEXT))
    assert time.perf_counter() - started < 3
    assert result.timed_out and not result.ok
    assert result.detail.startswith("timed out after 0.5s and was killed")
    assert "started" in result.output
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child of the killed shell may linger as a zombie until init reaps it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_command_hook_redacts_secret_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_API_TOKEN", "tok-9f8e7d6c5b")
    hook = CommandHook(
        "echo token=$DEPLOY_API_TOKEN pw=$DB_PASSWORD; echo tok-9f8e7d6c5b; exit 4",
        env={"DB_PASSWORD": "hunter2-long", "NOT_SENSITIVE": "hunter2-long-but-public"},
    )
    report = run([hook])
    result = report.results[0].value
    assert result.output.split("\n")[:2] == ["token=*** pw=***", "***"]
    assert "tok-9f8e7d6c5b" not in report.summary and "hunter2" not in str(report.as_dict())
    assert report.failed is not None and report.failed.detail == "exited 4: ***"


def test_command_hook_name_redacts_a_literal_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-abcdefgh")
    hook = CommandHook("curl -H 'Authorization: ghp-abcdefgh' https://ci.example/notify")
    assert "ghp-abcdefgh" not in hook.name and "***" in hook.name
    assert "ghp-abcdefgh" not in repr(hook)


def test_context_env_and_secret_names() -> None:
    env = context_env(CONTEXT)
    assert env["RFS_DEPLOY_DEPLOYMENT_ID"] == "dep-42"
    assert env["RFS_DEPLOY_PHASE"] == "pre-deployment"
    assert env["RFS_DEPLOY_PREVIOUS_VERSION"] == "v1.0.0"
    assert env["RFS_DEPLOY_BASE_URL"] == "http://green.sim"
    assert secret_values({"A_SECRET": "abcd", "API_KEY": "k3y-value", "PASSWD": "xy", "HOME": "/root"}) == [
        "abcd",
        "k3y-value",
    ]


def test_variables_that_locate_or_name_a_secret_are_not_secrets() -> None:
    # What CI runs under: a path and an identifier must stay readable in every error message.
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "PULUMI_CONFIG_PASSPHRASE_FILE": "/etc/pulumi/phrase",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "KMS_KEY_ARN": "arn:aws:kms:us-east-1:1:key/x",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
    }
    assert secret_values(env) == ["wJalrXUtnFEMI"]
    assert "/dev/null" not in known_secrets(env)


def test_command_hook_rejects_a_non_positive_timeout() -> None:
    with pytest.raises(ValueError):
        CommandHook("true", timeout=0)
