"""Hooks: order, stop at the first failure, redaction, HTTP validation hooks."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from rfs_deploy.drive.command_hook import CommandHook, CommandResult
from rfs_deploy.drive.hooks import HookContext, HookPhase, HookReport, HttpValidationHook, run_hooks
from rfs_deploy.drive.records import DeploymentRecord
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
    assert not report.ok
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


def test_a_secret_quoted_by_an_exception_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_SECRET", "xoxb-12345-secret")

    def notify(context: Any) -> None:
        raise ConnectionError("POST https://hooks.example/xoxb-12345-secret refused")

    report = run([notify], HookPhase.POST_DEPLOYMENT)
    assert report.failed is not None
    assert report.failed.detail == "raised ConnectionError: POST https://hooks.example/*** refused"


def test_a_post_deployment_failure_is_reported() -> None:
    report = run([lambda context: False], HookPhase.POST_DEPLOYMENT)
    assert not report.ok
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


def test_the_context_of_a_deployment_record() -> None:
    record = DeploymentRecord("dep-9", "production", "api-service", "v2.0.0", "v1.0.0", "canary")
    pre = HookContext.from_record(record, HookPhase.PRE_DEPLOYMENT, result=record)
    assert pre == HookContext(
        deployment_id="dep-9",
        service="api-service",
        version="v2.0.0",
        environment="production",
        phase=HookPhase.PRE_DEPLOYMENT,
        strategy="canary",
        previous_version="v1.0.0",
        result=record,
    )
    check = HookContext.from_record(
        record, HookPhase.VALIDATION, version="v2.0.1", base_url="http://test.sim"
    )
    assert (check.version, check.base_url, check.phase, check.result) == (
        "v2.0.1",
        "http://test.sim",
        HookPhase.VALIDATION,
        None,
    )


def test_an_unknown_phase_is_rejected() -> None:
    with pytest.raises(ValueError):
        run([], "during-lunch")


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
