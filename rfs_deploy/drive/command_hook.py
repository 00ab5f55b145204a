"""A command as a hook: a subprocess with the deployment in its environment, its output redacted.

:class:`CommandHook` is what CI users hand to :func:`rfs_deploy.drive.hooks.run_hooks`: it runs
a shell command (or an argument vector) with ``RFS_DEPLOY_*`` variables describing the hook
context (:func:`context_env`), keeps the tail of its output, kills its whole process group on
timeout, and returns a :class:`CommandResult` whose command and output never show a secret.

:func:`run_phase` runs one phase of a service's hooks: the stack file's command hooks
(``services.<name>.hooks``, :mod:`rfs_deploy.config.hooks`) first, then the Python ones, and
logs the tail of each command's output.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import re
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rfs_deploy.config.secrets import (
    MASKED,
    SAVED_PLACEHOLDER,
    locked_hint,
    redact,
    remember,
    secret_values,
)
from rfs_deploy.drive.hooks import HookPhase, HookReport, context_field, one_line, run_hooks
from rfs_deploy.logs import get_logger

if TYPE_CHECKING:
    from rfs_deploy.config.hooks import CommandHookSettings, ServiceHooks

log = get_logger(__name__)

__all__ = ["CommandHook", "CommandResult", "command_hooks", "context_env", "from_settings", "run_phase"]

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
    "status",
    "reason",
)
#: Output lines of a command hook the driver's log shows (the whole tail stays in its result).
LOGGED_LINES = 20


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
        if not value and name == "status":
            value = getattr(context_field(context, "result"), "status", None)
        if value is not None and value != "":
            env[f"RFS_DEPLOY_{name.upper()}"] = str(value.value if isinstance(value, enum.Enum) else value)
    if "RFS_DEPLOY_ENVIRONMENT" in env:  # the environment of a deployment is its stack
        env.setdefault("RFS_DEPLOY_STACK", env["RFS_DEPLOY_ENVIRONMENT"])
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
        return one_line(f"{ended}: {lines[-1]}") if lines and not self.ok else ended

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


# --------------------------------------------------------------------------- hooks from the stack file

#: The config's list of each phase (:class:`~rfs_deploy.config.hooks.ServiceHooks` fields).
_CONFIG_LISTS = {
    HookPhase.PRE_DEPLOYMENT: "pre_deployment",
    HookPhase.VALIDATION: "validation",
    HookPhase.POST_DEPLOYMENT: "post_deployment",
    HookPhase.POST_ROLLBACK: "post_rollback",
}


def from_settings(settings: CommandHookSettings, phase: HookPhase | str, index: int) -> CommandHook:
    """The :class:`CommandHook` a stack file's hook entry describes; its default name says where
    it is (``postRollback[0]``) and what it runs. A Pulumi secret in ``env`` that could not be
    decrypted makes it fail when it runs, naming the variable, instead of running without it."""
    key = _CONFIG_LISTS[HookPhase(phase)]
    where = f"hooks.{_camel(key)}[{index}]"
    env = {name: value.get_secret_value() for name, value in settings.env.items()}
    # a {secure: ...} value was remembered for redaction when it was decrypted; CommandHook adds
    # the values of secret-looking names
    locked = sorted(name for name, value in env.items() if value in (MASKED, SAVED_PLACEHOLDER))
    name = settings.name or f"{where} {redact(settings.shown)!r}"
    if locked:
        return _Locked(settings.command, name, f"{where}.env.{locked[0]}")
    return CommandHook(
        settings.command, timeout=settings.timeout, env=env, cwd=settings.working_dir, name=name
    )


def command_hooks(config: ServiceHooks | None, phase: HookPhase | str) -> list[CommandHook]:
    """The stack file's command hooks of ``phase``, in order (none without a config)."""
    if config is None:
        return []
    entries: list[CommandHookSettings] = getattr(config, _CONFIG_LISTS[HookPhase(phase)])
    return [from_settings(entry, phase, index) for index, entry in enumerate(entries)]


async def run_phase(
    python: Sequence[Any], config: ServiceHooks | None, context: Any, phase: HookPhase | str
) -> HookReport:
    """Run ``phase``: the stack file's command hooks first (they are the service's own, and a
    refusal there should not wait on a program's hooks), then ``python``; up to the first
    failure, as :func:`~rfs_deploy.drive.hooks.run_hooks`. Each command's output tail (already
    redacted) goes to the log: a failed one's at WARNING, a passing one's at DEBUG."""
    phase = HookPhase(phase)
    report = await run_hooks([*command_hooks(config, phase), *python], context, phase)
    for result in report.results:
        value = result.value
        if isinstance(value, CommandResult) and value.output.strip():
            lines = value.output.rstrip().splitlines()[-LOGGED_LINES:]
            level = logging.DEBUG if result.ok else logging.WARNING
            log.log(
                level,
                "%s hook %s output (last %d lines):\n%s",
                phase.value,
                result.name,
                len(lines),
                "\n".join(lines),
            )
    return report


class _Locked(CommandHook):
    """A hook whose secret variable is not decrypted here: it fails, naming the key."""

    def __init__(self, command: Sequence[str], name: str, key: str) -> None:
        super().__init__(command, name=name)
        self.key = key

    async def __call__(self, context: Any) -> CommandResult:
        raise ValueError(f"{self.key}: {locked_hint()}; the command did not run")


def _camel(snake: str) -> str:
    first, *rest = snake.split("_")
    return first + "".join(word.capitalize() for word in rest)
