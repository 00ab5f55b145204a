"""Command hooks in the stack file: ``services.<name>.hooks`` (docs/hooks.md).

Four phases, each a list of commands run in order::

    hooks:
      preDeployment:
        - {name: change-ticket, command: [python3, ci/check_ticket.py], timeout: 30s}
      validation:
        - command: ./smoke.sh --quick
          env: {API_TOKEN: {secure: v1:...}}
      postDeployment: [...]
      postRollback: [...]

A ``command`` is an argument vector (a list of strings, run without a shell), or a string split
into one the way a POSIX shell splits words (:func:`shlex.split`: quotes and backslashes group,
nothing is expanded or substituted) and also run without a shell — ``[sh, -c, "..."]`` is how a
hook asks for one. ``env`` values are strings or Pulumi secrets (``{secure: ...}``); every value
is a :class:`~pydantic.SecretStr`, so a dump of the config (its digest, a saved session) never
shows one, and a hook's output is redacted of them before it is kept or logged.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic.alias_generators import to_snake

from rfs_deploy.config.base import MAX_DURATION, Duration, Model
from rfs_deploy.config.secrets import MASKED, SAVED_PLACEHOLDER, locked_hint
from rfs_deploy.errors import ConfigError

__all__ = ["HOOK_PHASES", "CommandHookSettings", "ServiceHooks", "require_plaintext_env"]

#: An environment variable name a hook may be given.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: The YAML key of each phase, in the order a deployment reaches them.
HOOK_PHASES = ("preDeployment", "validation", "postDeployment", "postRollback")


class CommandHookSettings(Model):
    """One command hook: what runs, for how long, with which extra variables, where."""

    #: Shown in logs, reasons and records; default: the command itself.
    name: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[!-~][ -~]*$")
    #: The argument vector (a string is split as a shell splits words; no shell runs it).
    command: list[str] = Field(min_length=1, max_length=256)
    #: Seconds the command may run; then it and every process it started are killed.
    timeout: Duration = Field(default=300, ge=1, le=MAX_DURATION)
    #: Extra environment variables (over the driver's own and the ``RFS_DEPLOY_*`` ones).
    env: dict[str, SecretStr] = Field(default_factory=dict, repr=False)
    #: The directory it runs in (relative: to the driver's working directory); default: that one.
    working_dir: str | None = Field(default=None, min_length=1, max_length=4096)

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = shlex.split(value)
            except ValueError as exc:  # an unclosed quote
                raise ValueError(f"cannot split the command into words: {exc}") from None
            if not value:
                raise ValueError("the command is empty")
        return value

    @field_validator("command")
    @classmethod
    def _program(cls, argv: list[str]) -> list[str]:
        if not argv[0].strip():
            raise ValueError("the program (the command's first word) is empty")
        if any("\x00" in word for word in argv):
            raise ValueError("a command word holds a NUL character")
        return argv

    @field_validator("env")
    @classmethod
    def _names(cls, env: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in env.items():
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name (letters, digits, _)")
            if name.startswith("RFS_DEPLOY_"):
                raise ValueError(
                    f"{name}: RFS_DEPLOY_* variables describe the deployment; choose another name"
                )
            if "\x00" in value.get_secret_value():
                raise ValueError(f"{name}: the value holds a NUL character")
        return env

    @property
    def shown(self) -> str:
        """The command as one line (a shell would read it back as the same words)."""
        return shlex.join(self.command)


class ServiceHooks(Model):
    """A service's command hooks, per phase (each list runs in order, up to its first failure)."""

    pre_deployment: list[CommandHookSettings] = Field(default_factory=list, max_length=50)
    validation: list[CommandHookSettings] = Field(default_factory=list, max_length=50)
    post_deployment: list[CommandHookSettings] = Field(default_factory=list, max_length=50)
    post_rollback: list[CommandHookSettings] = Field(default_factory=list, max_length=50)


def require_plaintext_env(hooks: ServiceHooks, service: str) -> None:
    """Refuse, in one line naming the key, a hook variable holding a Pulumi secret that was not
    decrypted here: better before a deployment starts than when its validation or rollback runs."""
    for phase in HOOK_PHASES:
        entries: list[CommandHookSettings] = getattr(hooks, to_snake(phase))
        for index, entry in enumerate(entries):
            for name, value in entry.env.items():
                if value.get_secret_value() in (MASKED, SAVED_PLACEHOLDER):
                    key = f"rfs-deploy:services.{service}.hooks.{phase}.{index}.env.{name}"
                    raise ConfigError(key, locked_hint())
