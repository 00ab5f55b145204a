"""Hooks: order, stop at the first failure, command hooks, redaction, HTTP validation hooks."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from rfs_deploy.config.secrets import known_secrets
from rfs_deploy.drive.hooks import (
    CommandHook,
    CommandResult,
    HookContext,
    HookPhase,
    HookReport,
    HttpValidationHook,
    context_env,
    run_hooks,
    secret_values,
)
from rfs_deploy.drive.validation import ValidationReport, ValidationSettings

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


@dataclass
class Outcome:
    """A Result-like value, the shape of the seed's Success / Failure."""

    success: bool
    error: str | None = None

    def is_success(self) -> bool:
        return self.success


# --------------------------------------------------------------------------- run_hooks


def test_sync_and_async_hooks_run_in_order_with_the_context() -> None:
    calls: list[tuple[str, Any]] = []

    def first(context: Any) -> None:
        calls.append(("first", context.phase))

    async def second(context: Any) -> bool:
        await asyncio.sleep(0)
        calls.append(("second", context.version))
        return True

    def third(context: Any, label: str) -> Outcome:
        calls.append((label, context.service))
        return Outcome(True)

    report = run([first, second, functools.partial(third, label="third")], "post-deployment")
    assert calls == [("first", HookPhase.POST_DEPLOYMENT), ("second", "v2.0.0"), ("third", "api-service")]
    assert report.ok and report.failed is None and report.skipped == ()
    assert [r.name for r in report.results] == ["first", "second", "third"]
    assert report.summary == "post-deployment hooks: 3 passed"


@pytest.mark.parametrize(
    ("returned", "detail"),
    [
        (False, "returned False"),
        (Outcome(False, "quota exceeded"), "quota exceeded"),
        (Outcome(False), "returned a failure"),
        (CommandResult("make check", 2, "lint\nE501 line too long\n", 0.1), "exited 2: E501 line too long"),
    ],
)
def test_run_stops_at_the_first_failure(returned: Any, detail: str) -> None:
    ran: list[str] = []

    def ok_hook(context: Any) -> None:
        ran.append("ok")

    async def bad_hook(context: Any) -> Any:
        ran.append("bad")
        return returned

    def never(context: Any) -> None:
        ran.append("never")

    bad_hook.name = "bad-hook"  # type: ignore[attr-defined]
    report = run([ok_hook, bad_hook, never])
    assert ran == ["ok", "bad"]
    assert not report.ok and report.blocks_deployment
    assert report.failed is not None and report.failed.name == "bad-hook"
    assert report.failed.detail == detail
    assert report.skipped == ("never",)
    assert report.summary == f"pre-deployment hook bad-hook failed: {detail}; 1 not run"
    assert report.failed.value is returned


def test_an_exception_is_captured_as_the_failure_reason() -> None:
    async def migrate(context: Any) -> None:
        raise RuntimeError("schema migration failed:\n  table orders is locked")

    report = run([migrate], HookPhase.VALIDATION)
    assert report.failed is not None
    assert report.failed.detail == "raised RuntimeError: schema migration failed: table orders is locked"
    assert report.failed.value is None
    assert report.blocks_deployment


def test_a_secret_quoted_by_an_exception_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_SECRET", "xoxb-12345-secret")

    def notify(context: Any) -> None:
        raise ConnectionError("POST https://hooks.example/xoxb-12345-secret refused")

    report = run([notify], HookPhase.POST_DEPLOYMENT)
    assert report.failed is not None
    assert report.failed.detail == "raised ConnectionError: POST https://hooks.example/*** refused"


def test_a_post_deployment_failure_is_reported_without_blocking() -> None:
    report = run([lambda context: False], HookPhase.POST_DEPLOYMENT)
    assert not report.ok
    assert not report.blocks_deployment
    assert report.as_dict()["summary"].startswith("post-deployment hook <lambda> failed: returned False")


def test_any_context_object_is_passed_through_unchanged() -> None:
    seen: list[Any] = []
    seed_result = Outcome(True)
    report = run([seen.append], "pre-deployment", seed_result)
    assert report.ok and seen[0] is seed_result


def test_a_mapping_context_gets_the_phase_and_feeds_command_hooks() -> None:
    context = {"deployment_id": "dep-7", "service_name": "api-service", "version": "2.0.0"}
    hook = CommandHook('echo "$RFS_DEPLOY_DEPLOYMENT_ID $RFS_DEPLOY_SERVICE $RFS_DEPLOY_PHASE"')
    report = run([hook], HookPhase.POST_DEPLOYMENT, context)
    assert report.results[0].value.output.strip() == "dep-7 api-service post-deployment"
    assert "phase" not in context


def test_an_unknown_phase_is_rejected() -> None:
    with pytest.raises(ValueError):
        run([], "during-lunch")


# --------------------------------------------------------------------------- command hooks


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


# --------------------------------------------------------------------------- HTTP validation hook


def _slot(version: str) -> httpx.MockTransport:
    """What the sandbox passes: a transport answering as the simulated slot would."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host != "green.sim":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": version})
        return httpx.Response(200, text="ok")

    return httpx.MockTransport(handler)


def test_http_validation_hook_passes_for_the_expected_version() -> None:
    report = run([HttpValidationHook(transport=_slot("2.0.0"))], HookPhase.VALIDATION)
    assert report.ok, report.summary
    assert isinstance(report.results[0].value, ValidationReport)
    assert report.results[0].detail == "all 2 validation checks passed"


def test_http_validation_hook_fails_on_a_version_mismatch() -> None:
    report = run([HttpValidationHook(transport=_slot("1.0.0"))], HookPhase.VALIDATION)
    assert report.summary == (
        "validation hook http-validation failed: version: version mismatch: expected v2.0.0, got 1.0.0"
    )


def test_http_validation_hook_reads_a_mapping_context() -> None:
    context = {"base_url": "http://green.sim", "version": "2.0.0"}
    report = run([HttpValidationHook(transport=_slot("2.0.0"))], HookPhase.VALIDATION, context)
    assert report.ok, report.summary


def test_http_validation_hook_needs_a_base_url() -> None:
    context = HookContext(deployment_id="d", service="s", version="1")
    settings = ValidationSettings(version_path=None)
    report = run([HttpValidationHook(settings, transport=_slot("1"))], HookPhase.VALIDATION, context)
    assert report.failed is not None
    assert (
        report.failed.detail == "raised ValueError: the hook context has no base_url or version to validate"
    )
