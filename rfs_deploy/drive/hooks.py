"""Deployment hooks: pre-deployment, validation and post-deployment (SPEC D6).

A hook is any callable taking one argument, the context (a :class:`HookContext`, a mapping with
the same keys, or whatever the caller passes), sync or async — the seed's
``async def hook(result)`` appended to ``pre_deployment_hooks`` is one. :func:`run_hooks` runs a
phase's hooks in order and stops at the first failure. A hook fails when it

* raises (the exception's type and message are reported),
* returns ``False``,
* returns a Result-like object whose ``is_success()`` is false (``Failure``, a
  :class:`~rfs_deploy.drive.validation.ValidationReport` that failed, a :class:`CommandResult`
  with a non-zero exit), or an object whose ``ok`` attribute is ``False``.

Anything else (``None``, ``True``, a value) is success. Which failures stop a deployment is the
runner's call; :attr:`HookReport.blocks_deployment` says that a failed post-deployment hook does
not undo a completed deployment — it is only reported.

Two ready-made hooks: :class:`CommandHook` runs a shell command with ``RFS_DEPLOY_*`` variables
(for CI users) and :class:`HttpValidationHook` runs the HTTP checks of
:mod:`rfs_deploy.drive.validation` against the context's base URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import os
import re
import shlex
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from rfs_deploy.config.secrets import redact, remember, secret_values
from rfs_deploy.drive.validation import ValidationReport, ValidationSettings, validate
from rfs_deploy.logs import get_logger

log = get_logger(__name__)

__all__ = [
    "CommandHook",
    "CommandResult",
    "Hook",
    "HookContext",
    "HookPhase",
    "HookReport",
    "HookResult",
    "HttpValidationHook",
    "context_env",
    "context_field",
    "run_hooks",
    "secret_values",
]

#: A hook: one argument (the context), sync or async, any return value.
Hook = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]


class HookPhase(enum.StrEnum):
    """When a hook runs."""

    PRE_DEPLOYMENT = "pre-deployment"
    VALIDATION = "validation"
    POST_DEPLOYMENT = "post-deployment"


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
    def blocks_deployment(self) -> bool:
        """A failure before or during validation stops the deployment; after it, it is reported only."""
        return not self.ok and self.phase is not HookPhase.POST_DEPLOYMENT

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


def _one_line(text: str, limit: int = 200) -> str:
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
            return _one_line(str(text))
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
        ok, detail = False, _one_line(reason)
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


# --------------------------------------------------------------------------- command hooks

#: Output kept from a command (its tail), in bytes.
_OUTPUT_LIMIT = 64 * 1024

_CONTEXT_FIELDS = (
    "deployment_id",
    "service",
    "version",
    "environment",
    "phase",
    "strategy",
    "previous_version",
    "base_url",
)


def context_field(context: Any, name: str) -> Any:
    """``context[name]`` for a mapping context, ``context.name`` otherwise; None when absent."""
    if isinstance(context, Mapping):
        return context.get(name)
    return getattr(context, name, None)


def context_env(context: Any) -> dict[str, str]:
    """``RFS_DEPLOY_*`` variables describing ``context``: its ``extra`` entries, then the set fields."""
    env: dict[str, str] = {}
    extra = context_field(context, "extra")
    if isinstance(extra, Mapping):
        for key, value in extra.items():
            env[f"RFS_DEPLOY_{re.sub(r'[^A-Za-z0-9]', '_', str(key)).upper()}"] = str(value)
    for name in _CONTEXT_FIELDS:
        value = context_field(context, name)
        if value is None and name == "service":
            value = context_field(context, "service_name")
        if value is not None and value != "":
            env[f"RFS_DEPLOY_{name.upper()}"] = str(value.value if isinstance(value, enum.Enum) else value)
    return env


@dataclass(frozen=True)
class CommandResult:
    """A finished (or killed) command; ``command`` and ``output`` are already redacted."""

    command: str
    exit_code: int | None
    output: str
    elapsed: float
    timed_out: bool = False
    timeout: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def detail(self) -> str:
        """One line: how it ended, and the last line of output when it failed."""
        if self.timed_out:
            ended = f"timed out after {self.timeout:g}s and was killed"
        elif self.exit_code is not None and self.exit_code < 0:
            ended = f"killed by signal {-self.exit_code}"
        else:
            ended = f"exited {self.exit_code}"
        lines = self.output.strip().splitlines()
        return _one_line(f"{ended}: {lines[-1]}") if lines and not self.ok else ended

    def is_success(self) -> bool:
        return self.ok


class CommandHook:
    """Run a command as a hook: non-zero exit or exceeding ``timeout`` seconds is a failure.

    A string runs through the shell, a sequence runs directly. The command inherits the driver's
    environment plus ``RFS_DEPLOY_*`` variables from the context (:func:`context_env`) plus ``env``.
    Stdout and stderr are captured together (the tail is kept); values of variables whose names
    look secret, the passwords of URLs in any variable and every other known secret
    (:func:`rfs_deploy.config.secrets.redact`) are replaced by ``***`` in the reported command and
    output, and so is the password of any ``scheme://user:password@`` URL the output shows. On
    timeout the command's whole process group is killed.
    """

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        name: str | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.command = command
        self.timeout = timeout
        self.env = dict(env or {})
        self.cwd = cwd
        shown = command if isinstance(command, str) else shlex.join(command)
        remember(secret_values(self.env))  # so logs and reports redact them too
        self.name = name or f"command {redact(shown)!r}"

    def __repr__(self) -> str:
        return f"CommandHook({self.name!r}, timeout={self.timeout:g})"

    async def __call__(self, context: Any) -> CommandResult:
        env = {**os.environ, **context_env(context), **self.env}
        secrets = secret_values(env)
        shown = self.command if isinstance(self.command, str) else shlex.join(self.command)
        started = time.perf_counter()
        process = await self._start(env)
        output = bytearray()
        timed_out = False
        try:
            await asyncio.wait_for(_collect(process, output), self.timeout)
        except TimeoutError:
            timed_out = True
        finally:
            if process.returncode is None:
                _kill_group(process)
                await process.wait()
        text = redact(output.decode("utf-8", errors="replace"), secrets)
        result = CommandResult(
            redact(shown, secrets),
            process.returncode,
            text,
            time.perf_counter() - started,
            timed_out,
            self.timeout,
        )
        log.debug("%s: %s", self.name, result.detail)
        return result

    async def _start(self, env: dict[str, str]) -> asyncio.subprocess.Process:
        # A new session makes the command a process group leader, so a timeout kills its children too.
        options: dict[str, Any] = {
            "stdin": asyncio.subprocess.DEVNULL,
            "stdout": asyncio.subprocess.PIPE,
            "stderr": asyncio.subprocess.STDOUT,
            "env": env,
            "cwd": self.cwd,
            "start_new_session": True,
        }
        if isinstance(self.command, str):
            return await asyncio.create_subprocess_shell(self.command, **options)
        return await asyncio.create_subprocess_exec(*self.command, **options)


async def _collect(process: asyncio.subprocess.Process, output: bytearray) -> None:
    """Read the process's output into ``output`` (keeping the tail) until it exits."""
    assert process.stdout is not None
    while chunk := await process.stdout.read(8192):
        output += chunk
        if len(output) > _OUTPUT_LIMIT:
            del output[: len(output) - _OUTPUT_LIMIT]
    await process.wait()


def _kill_group(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
