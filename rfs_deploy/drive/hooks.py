"""Deployment hooks: pre-deployment, validation, post-deployment and post-rollback (SPEC D6).

A hook is any callable taking one argument, the context (a :class:`HookContext`, a mapping with
the same keys, or whatever the caller passes), sync or async — the seed's
``async def hook(result)`` appended to ``pre_deployment_hooks`` is one. :func:`run_hooks` runs a
phase's hooks in order and stops at the first failure. A hook fails when it

* raises (the exception's type and message are reported),
* returns ``False``,
* returns a Result-like object whose ``is_success()`` is false (``Failure``, a
  :class:`~rfs_deploy.drive.validation.ValidationReport` that failed, a
  :class:`~rfs_deploy.drive.command_hook.CommandResult` with a non-zero exit), or an object whose
  ``ok`` attribute is ``False``.

Anything else (``None``, ``True``, a value) is success. Which failures stop a deployment is the
driver's call: a failed pre-deployment or validation hook stops it, a failed post-deployment hook
does not undo a completed deployment and a failed post-rollback hook does not undo a rollback —
they are only reported.

Two ready-made hooks: :class:`HttpValidationHook` runs the HTTP checks of
:mod:`rfs_deploy.drive.validation` against the context's base URL, and
:class:`~rfs_deploy.drive.command_hook.CommandHook` runs a shell command with ``RFS_DEPLOY_*``
variables (for CI users).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from rfs_deploy.config.secrets import redact
from rfs_deploy.drive.validation import ValidationReport, ValidationSettings, validate
from rfs_deploy.logs import get_logger

if TYPE_CHECKING:
    from rfs_deploy.drive.records import DeploymentRecord

log = get_logger(__name__)

__all__ = [
    "Hook",
    "HookContext",
    "HookPhase",
    "HookReport",
    "HookResult",
    "HttpValidationHook",
    "context_field",
    "one_line",
    "run_hooks",
]

#: A hook: one argument (the context), sync or async, any return value.
Hook = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]


class HookPhase(enum.StrEnum):
    """When a hook runs."""

    PRE_DEPLOYMENT = "pre-deployment"
    VALIDATION = "validation"
    POST_DEPLOYMENT = "post-deployment"
    #: After a rollback restored the deployment's checkpoint (see docs/hooks.md for which).
    POST_ROLLBACK = "post-rollback"


@dataclass(frozen=True)
class HookContext:
    """What a hook gets to know about the deployment it runs for."""

    deployment_id: str
    service: str
    version: str
    environment: str = ""
    phase: HookPhase = HookPhase.PRE_DEPLOYMENT
    strategy: str = ""
    previous_version: str | None = None
    #: Where the new version answers (the test listener) — what validation hooks check.
    base_url: str | None = None
    #: The deployment's outcome so far (e.g. the seed's deployment result), for post hooks.
    result: Any = None
    extra: Mapping[str, str] = field(default_factory=dict)
    #: The deployment's status when the hook runs (``PENDING``, ``VALIDATING``, ``COMPLETED``, ...);
    #: empty: ``result``'s status, when it has one (a deployment record).
    status: str = ""
    #: Why it rolled back (post-rollback hooks); empty otherwise.
    reason: str = ""

    def __post_init__(self) -> None:
        status = getattr(self.result, "status", None) if not self.status else None
        if status is not None:
            object.__setattr__(self, "status", str(status.value if isinstance(status, enum.Enum) else status))

    @classmethod
    def from_record(
        cls,
        record: DeploymentRecord,
        phase: HookPhase,
        *,
        version: str | None = None,
        base_url: str | None = None,
        result: Any = None,
        reason: str = "",
        extra: Mapping[str, str] | None = None,
    ) -> HookContext:
        """The context of a hook run for the deployment ``record`` describes (its stack is the
        environment); ``version`` overrides the record's."""
        return cls(
            deployment_id=record.deployment_id,
            service=record.service,
            version=record.version if version is None else version,
            environment=record.stack,
            phase=phase,
            strategy=record.strategy,
            previous_version=record.previous_version,
            base_url=base_url,
            result=result,
            extra=dict(extra or {}),
            reason=reason,
        )


@dataclass(frozen=True)
class HookResult:
    """One hook's outcome; ``detail`` is one line."""

    name: str
    ok: bool
    detail: str
    elapsed: float
    #: What the hook returned (a ValidationReport, a CommandResult, ...), None when it raised.
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "elapsed": round(self.elapsed, 3)}


@dataclass(frozen=True)
class HookReport:
    """A phase's hooks: those that ran, in order, and those skipped after a failure."""

    phase: HookPhase
    results: tuple[HookResult, ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def failed(self) -> HookResult | None:
        return next((result for result in self.results if not result.ok), None)

    @property
    def summary(self) -> str:
        failed = self.failed
        if failed is None:
            return f"{self.phase.value} hooks: {len(self.results)} passed"
        skipped = f"; {len(self.skipped)} not run" if self.skipped else ""
        return f"{self.phase.value} hook {failed.name} failed: {failed.detail}{skipped}"

    def is_success(self) -> bool:
        return self.ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "ok": self.ok,
            "summary": self.summary,
            "results": [result.as_dict() for result in self.results],
            "skipped": list(self.skipped),
        }


def hook_name(hook: Any) -> str:
    """A readable name: the hook's ``name`` attribute, its function name, or its type."""
    name = getattr(hook, "name", None)
    if isinstance(name, str) and name:
        return name
    func = getattr(hook, "func", hook)  # functools.partial
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(qualname, str):
        return type(hook).__name__
    return qualname.rsplit(".<locals>.", 1)[-1]  # "Notifier.send", not "main.<locals>.Notifier.send"


def one_line(text: str, limit: int = 200) -> str:
    """``text`` redacted (before it is cut, so no part of a secret is left), on one line."""
    line = " ".join(redact(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _verdict(value: Any) -> tuple[bool, str]:
    """Whether a hook's return value means success, and a one-line detail."""
    if value is False:
        return False, "returned False"
    is_success = getattr(value, "is_success", None)
    if callable(is_success):
        if is_success():
            return True, _describe(value, "succeeded")
        return False, _describe(value, "returned a failure")
    if getattr(value, "ok", None) is False:
        return False, _describe(value, "returned a failure")
    return True, "ok"


def _describe(value: Any, fallback: str) -> str:
    """The most telling one line a result offers: its summary, its error, or ``fallback``."""
    for attribute in ("summary", "detail", "error"):
        text = getattr(value, attribute, None)
        if text is not None and not callable(text) and str(text):
            return one_line(str(text))
    return fallback


async def _run_one(hook: Any, context: Any) -> HookResult:
    name = hook_name(hook)
    started = time.perf_counter()
    try:
        value = hook(context)
        if inspect.isawaitable(value):
            value = await value
        ok, detail = _verdict(value)
    except Exception as exc:  # a hook's bug is that hook's failure, not the driver's crash
        log.debug("hook %s raised", name, exc_info=True)
        value = None
        reason = f"raised {type(exc).__name__}: {exc}" if str(exc) else f"raised {type(exc).__name__}"
        ok, detail = False, one_line(reason)
    # An exception or a result may quote a credential (a secret variable, a URL's password);
    # reports never do. The debug record above is redacted by its logger the same way.
    detail = redact(detail)
    return HookResult(name, ok, detail, time.perf_counter() - started, value)


async def run_hooks(hooks: Sequence[Any], context: Any, phase: HookPhase | str) -> HookReport:
    """Run ``hooks`` in order with ``context``; stop at the first failure. Never raises for a hook.

    When ``context`` is a :class:`HookContext` its ``phase`` is set to ``phase`` first, a mapping
    without a ``"phase"`` key is passed as a copy with one; any other context (e.g. the seed's
    deployment result) is passed as is.
    """
    phase = HookPhase(phase)
    if isinstance(context, HookContext) and context.phase is not phase:
        context = dataclasses.replace(context, phase=phase)
    elif isinstance(context, Mapping) and "phase" not in context:
        context = {**context, "phase": phase}
    results: list[HookResult] = []
    for index, hook in enumerate(hooks):
        result = await _run_one(hook, context)
        results.append(result)
        outcome = "ok" if result.ok else f"FAILED ({result.detail})"
        log.info("%s hook %s: %s", phase.value, result.name, outcome)
        if not result.ok:
            skipped = tuple(hook_name(rest) for rest in hooks[index + 1 :])
            return HookReport(phase, tuple(results), skipped)
    return HookReport(phase, tuple(results))


def context_field(context: Any, name: str) -> Any:
    """``context[name]`` for a mapping context, ``context.name`` otherwise; None when absent."""
    if isinstance(context, Mapping):
        return context.get(name)
    return getattr(context, name, None)


class HttpValidationHook:
    """A validation hook running the HTTP checks against ``context.base_url`` for ``context.version``.

    Returns the :class:`ValidationReport`, which :func:`run_hooks` reads as the verdict.
    """

    def __init__(
        self,
        settings: ValidationSettings | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str = "http-validation",
    ) -> None:
        self.settings = settings or ValidationSettings()
        self.client = client
        self.transport = transport
        self.name = name

    async def __call__(self, context: Any) -> ValidationReport:
        base_url = context_field(context, "base_url")
        version = context_field(context, "version")
        if not base_url or not version:
            raise ValueError("the hook context has no base_url or version to validate")
        return await validate(base_url, version, self.settings, self.client, transport=self.transport)
