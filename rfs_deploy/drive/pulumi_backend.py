"""The production StackBackend: a Pulumi stack driven through the Automation API.

A :class:`pulumi.automation.LocalWorkspace` on the project directory (the repository root with
``Pulumi.yaml``; stack config files live in ``stacks/`` because ``Pulumi.yaml`` sets
``stackConfigDir``) runs the ``pulumi`` CLI for every operation. What this adapter adds:

* config: ``rfs-deploy:*`` values are read back into :class:`StackConfig`; only
  ``rfs-deploy:release`` is ever written (one ``pulumi config set``), so secrets are never
  re-encrypted and other keys are never touched;
* history: ``pulumi stack history`` pages of 10 by default, whatever the SDK docstring says, so
  :meth:`PulumiBackend.history` pages explicitly; every entry carries the release state it ran with;
* secrets: history and update summaries are read without ``--show-secrets``, secret outputs and
  secret values in an exported state are masked, and no config value is ever logged;
* errors: Automation API exceptions become :mod:`rfs_deploy.errors` with one-line messages.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pulumi import automation as auto

from rfs_deploy.config import (
    NAMESPACE,
    RELEASE_KEY,
    ReleaseState,
    StackConfig,
    load_stack_config,
    parse_release,
)
from rfs_deploy.drive.protocols import HistoryEntry, UpdateResult
from rfs_deploy.errors import (
    BackendError,
    ConfigError,
    InvalidInput,
    RfsDeployError,
    StackBusy,
    UnknownStack,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Entries per ``pulumi stack history`` call when reading the whole history.
HISTORY_PAGE = 100
#: The mask for secret values (the Automation API's own sentinel).
SECRET = "[secret]"
#: Pulumi's marker key of a secret value in a serialized state (``stack export``).
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
INSTALL_HINT = (
    "install it with `curl -fsSL https://get.pulumi.com | sh` (https://www.pulumi.com/docs/install/)"
)


class PulumiCliMissing(BackendError):
    """The ``pulumi`` CLI is not installed or not usable; nothing was changed."""

    exit_code = 2


class PulumiBackend:
    """A stack of the rfs-deploy project, through the Automation API (see the module docstring).

    ``work_dir`` is the project directory (with ``Pulumi.yaml``). ``create=True`` creates the stack
    when it does not exist (``pulumi stack init``); otherwise a missing stack is UnknownStack.
    ``pulumi_root`` is a directory holding ``bin/pulumi`` when the CLI is not on PATH.
    ``env_vars`` are passed to every CLI call (e.g. ``PULUMI_BACKEND_URL``,
    ``PULUMI_CONFIG_PASSPHRASE_FILE``); they are never logged.
    """

    def __init__(
        self,
        stack_name: str,
        work_dir: str | os.PathLike[str] = ".",
        *,
        create: bool = False,
        pulumi_root: str | os.PathLike[str] | None = None,
        env_vars: Mapping[str, str] | None = None,
        pulumi_home: str | None = None,
    ) -> None:
        self.stack_name = stack_name
        self.work_dir = Path(work_dir).resolve()
        if not any((self.work_dir / f"Pulumi{ext}").is_file() for ext in (".yaml", ".yml", ".json")):
            raise InvalidInput(f"{self.work_dir} is not a Pulumi project (no Pulumi.yaml)")
        command = _pulumi_command(pulumi_root)
        self.workspace = auto.LocalWorkspace(
            work_dir=str(self.work_dir),
            pulumi_home=pulumi_home,
            env_vars=dict(env_vars or {}),
            pulumi_command=command,
        )
        init = auto.Stack.create_or_select if create else auto.Stack.select
        self.stack: auto.Stack = self._call("select the stack", lambda: init(stack_name, self.workspace))

    # ------------------------------------------------------------------ config

    def read_config(self) -> StackConfig:
        """The ``rfs-deploy:*`` config of the stack as it stands now, validated."""
        config = self._call("read config", self.stack.get_all_config)
        return load_stack_config(namespace_values(config))

    def write_release(self, release: Mapping[str, ReleaseState]) -> None:
        """Set ``rfs-deploy:release`` (every service's state) and nothing else."""
        value = auto.ConfigValue(value=release_json(release), secret=False)
        self._call("write the release state", lambda: self.stack.set_config(RELEASE_KEY, value))

    # ------------------------------------------------------------------ updates

    def up(self, message: str, on_event: Callable[[str], None] | None = None) -> UpdateResult:
        """Run ``pulumi up`` with ``message``; ``on_event`` gets one line per resource change."""
        handler = _event_forwarder(on_event) if on_event is not None else None
        result = self._call(
            "stack update",
            lambda: self.stack.up(
                message=message,
                on_event=handler,
                color="never",
                suppress_progress=True,
                show_secrets=False,
            ),
        )
        summary = result.summary
        # self-managed backends number nothing: the update is the newest entry of the history
        version = summary.version or self.history(limit=1)[0].version
        return UpdateResult(
            version=version,
            message=summary.message,
            changes={_op_name(op): int(n) for op, n in (summary.resource_changes or {}).items()},
        )

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        """Stack history newest first; all of it unless ``limit`` (one CLI call per 100 entries).

        Pulumi's self-managed backends (file, S3) report ``version`` 0 for every entry; their
        history is then read whole and numbered 1..n from the oldest by position (history files
        are only ever added), which is the number the Pulumi Cloud backend would give.
        """
        if limit is not None and limit <= 0:
            return []
        first = self._history_page(limit or HISTORY_PAGE, 1)
        if any(s.version == 0 for s in first):
            # numbering needs the whole history: read it in full pages from the start
            whole = first if limit is None else self._history_page(HISTORY_PAGE, 1)
            return number_by_position(self._every_page(whole))[:limit]
        pages = [first] if limit is not None else self._all_history_pages(first)
        seen: dict[int, HistoryEntry] = {}
        for page in pages:
            for summary in page:
                entry = summary_to_entry(summary)
                seen.setdefault(entry.version, entry)
        return sorted(seen.values(), key=lambda e: e.version, reverse=True)

    def _every_page(self, first: list[auto.UpdateSummary]) -> list[auto.UpdateSummary]:
        """All entries, newest first, paging by page length (versions cannot tell pages apart)."""
        summaries, page, batch = list(first), 1, first
        while len(batch) >= HISTORY_PAGE:
            page += 1
            batch = self._history_page(HISTORY_PAGE, page)
            summaries += batch
        return summaries

    def _all_history_pages(self, first: list[auto.UpdateSummary]) -> list[list[auto.UpdateSummary]]:
        pages: list[list[auto.UpdateSummary]] = []
        versions: set[int | None] = set()
        page_number, page = 1, first
        while True:
            fresh = {s.version for s in page} - versions
            # An empty page ends the history; a page of nothing new means the backend ignores paging.
            if not page or not fresh:
                return pages
            pages.append(page)
            versions |= fresh
            page_number += 1
            page = self._history_page(HISTORY_PAGE, page_number)

    def _history_page(self, size: int, page: int) -> list[auto.UpdateSummary]:
        return self._call("read stack history", lambda: self.stack.history(size, page, show_secrets=False))

    # ------------------------------------------------------------------ outputs and state

    def outputs(self) -> dict[str, Any]:
        """The stack outputs as plain values; secret outputs read ``[secret]``."""
        return plain_outputs(self._call("read stack outputs", self.stack.outputs))

    def export(self) -> dict[str, Any]:
        """``pulumi stack export`` with every secret value masked (for forensics, not re-import)."""
        deployment = self._call("export the stack", self.stack.export_stack)
        return {"version": deployment.version, "deployment": redact_secrets(deployment.deployment)}

    # ------------------------------------------------------------------ errors

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except auto.CommandError as exc:
            raise translate_error(exc, self.stack_name, action) from exc
        except FileNotFoundError as exc:
            raise PulumiCliMissing(
                f"the Pulumi CLI disappeared while trying to {action}; {INSTALL_HINT}"
            ) from exc


# --------------------------------------------------------------------------- construction


def _pulumi_command(root: str | os.PathLike[str] | None) -> auto.PulumiCommand:
    """The CLI handle; its constructor runs ``pulumi version``, the first place a missing CLI shows."""
    where = f"{root}/bin/pulumi" if root is not None else "`pulumi` on PATH"
    try:
        return auto.PulumiCommand(root=None if root is None else str(root))
    except FileNotFoundError as exc:
        raise PulumiCliMissing(f"the Pulumi CLI was not found ({where}); {INSTALL_HINT}") from exc
    except PermissionError as exc:
        raise PulumiCliMissing(f"the Pulumi CLI at {where} is not executable") from exc
    except subprocess.CalledProcessError as exc:
        raise PulumiCliMissing(
            f"`pulumi version` failed with exit code {exc.returncode}; reinstall the CLI"
        ) from exc
    except auto.InvalidVersionError as exc:
        raise PulumiCliMissing(f"unusable Pulumi CLI: {exc}") from exc


# --------------------------------------------------------------------------- pure mappings


def namespace_values(config: Mapping[str, auto.ConfigValue]) -> dict[str, str]:
    """The ``rfs-deploy:*`` values (JSON strings for objects), prefix stripped; other keys dropped."""
    prefix = f"{NAMESPACE}:"
    return {key[len(prefix) :]: value.value for key, value in config.items() if key.startswith(prefix)}


def release_json(release: Mapping[str, ReleaseState]) -> str:
    """The value written to ``rfs-deploy:release``: compact JSON of every service's state."""
    return json.dumps({name: state.to_config() for name, state in release.items()}, sort_keys=True)


def release_from_config(config: Mapping[str, auto.ConfigValue]) -> dict[str, ReleaseState] | None:
    """The release state an update ran with, from its config; None when absent, hidden or invalid."""
    value = config.get(RELEASE_KEY)
    if value is None or value.secret:
        return None
    try:
        raw = json.loads(value.value)
        if not isinstance(raw, dict):
            return None
        return {str(name): parse_release(str(name), state) for name, state in raw.items()}
    except (json.JSONDecodeError, ConfigError):
        # An update with a release state this version cannot read is no checkpoint for it.
        return None


_RESULTS = {"succeeded": "succeeded", "failed": "failed", "in-progress": "in-progress"}


def number_by_position(summaries: list[auto.UpdateSummary]) -> list[HistoryEntry]:
    """Entries of a history read whole, newest first, numbered n..1 where the backend gave 0."""
    total = len(summaries)
    entries = [summary_to_entry(s) for s in summaries]
    return [e if e.version else dataclasses.replace(e, version=total - i) for i, e in enumerate(entries)]


def summary_to_entry(summary: auto.UpdateSummary) -> HistoryEntry:
    """One history entry. ``not-started`` counts as in-progress: the update may still hold the lock."""
    result = _RESULTS.get(summary.result, "in-progress" if summary.result == "not-started" else "failed")
    return HistoryEntry(
        version=summary.version or 0,
        message=summary.message or "",
        result=result,  # type: ignore[arg-type]  # values of _RESULTS are the Literal's
        start_time=_epoch(summary.start_time),
        end_time=None if summary.end_time is None else _epoch(summary.end_time),
        release=release_from_config(summary.config),
    )


def _epoch(moment: datetime) -> float:
    # The Automation API parses the CLI's UTC timestamps ("...Z") into naive datetimes.
    return moment.replace(tzinfo=UTC).timestamp() if moment.tzinfo is None else moment.timestamp()


def plain_outputs(outputs: Mapping[str, auto.OutputValue]) -> dict[str, Any]:
    """Output values as plain data; secret ones replaced by ``[secret]``."""
    return {key: SECRET if out.secret else out.value for key, out in outputs.items()}


def redact_secrets(value: Any) -> Any:
    """A copy of a serialized state with the plaintext of every secret value replaced."""
    if isinstance(value, Mapping):
        if SECRET_SIG_KEY in value and ("plaintext" in value or "ciphertext" in value):
            return {SECRET_SIG_KEY: value[SECRET_SIG_KEY], "redacted": SECRET}
        return {key: redact_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    return value


# --------------------------------------------------------------------------- errors


_GENERIC = re.compile(r"^(error: )?(update|preview|refresh|destroy) (failed|canceled)\.?$", re.IGNORECASE)
_LOCK_HOLDER = re.compile(r"created by (?P<user>\S+)@(?P<host>\S+) \(pid (?P<pid>\d+)\) at (?P<at>\S+)")


def translate_error(exc: auto.CommandError, stack: str, action: str) -> RfsDeployError:
    """The rfs-deploy error for an Automation API error, with a one-line message."""
    stdout, stderr = command_streams(exc)
    if isinstance(exc, auto.ConcurrentUpdateError):
        return StackBusy(lock_message(stderr, stack))
    if isinstance(exc, auto.StackNotFoundError):
        return UnknownStack(
            f"no stack named {stack!r} in this Pulumi backend (create it with `pulumi stack init`)"
        )
    if isinstance(exc, auto.StackAlreadyExistsError):
        return InvalidInput(f"stack {stack!r} already exists")
    return BackendError(f"{action} failed: {meaningful_line(stdout, stderr)}")


def command_streams(exc: auto.CommandError) -> tuple[str, str]:
    """(stdout, stderr) of a CommandError, which keeps only ``str(CommandResult)``."""
    text = str(exc)
    head, _, stderr = text.rpartition("\n stderr: ")
    _, _, stdout = head.partition("\n stdout: ")
    return stdout, stderr


def meaningful_line(stdout: str, stderr: str) -> str:
    """The line that says why a command failed: the first specific ``error:`` line, else the last one."""
    errors = [line for line in _lines(stderr) + _lines(stdout) if line.startswith("error:")]
    specific = [line for line in errors if not _GENERIC.match(line)]
    line = (specific or errors or _lines(stderr) or ["no error output"])[0 if specific else -1]
    return _clip(line.removeprefix("error:").strip())


def lock_message(stderr: str, stack: str) -> str:
    """One line on who holds the stack, and whether ``pulumi cancel`` is the way out."""
    holder = _LOCK_HOLDER.search(stderr)
    if holder is None:
        return (
            f"stack {stack!r} is locked by another update; wait for it to finish. If the process that "
            f"started it is gone, `pulumi cancel --stack {stack}` releases the lock"
        )
    who = f"{holder['user']}@{holder['host']} (pid {holder['pid']}) since {holder['at']}"
    if holder["host"] == socket.gethostname() and not _alive(int(holder["pid"])):
        return (
            f"stack {stack!r} is locked by {who}, a process that no longer runs on this host; "
            f"release the lock with `pulumi cancel --stack {stack}`, then resume"
        )
    return (
        f"stack {stack!r} is locked by {who}; wait for it to finish "
        f"(only if that process is dead: `pulumi cancel --stack {stack}`)"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _clip(line: str, width: int = 300) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


# --------------------------------------------------------------------------- events


_COLOR = re.compile(r"<\{%[^%]*%\}>")


def describe_event(event: auto.EngineEvent) -> str | None:
    """One line for a resource change, a failed resource or a warning/error; None for the rest."""
    pre = event.resource_pre_event
    if pre is not None and not pre.planning and pre.metadata.op != auto.OpType.SAME:
        return f"{_op_name(pre.metadata.op)} {pre.metadata.type} {_urn_name(pre.metadata.urn)}"
    failed = event.res_op_failed_event
    if failed is not None:
        return f"failed {failed.metadata.type} {_urn_name(failed.metadata.urn)}"
    diag = event.diagnostic_event
    if diag is not None and diag.severity in ("warning", "error") and not diag.ephemeral:
        text = " ".join(_COLOR.sub("", diag.message).split())
        return f"{diag.severity}: {_clip(text)}" if text else None
    return None


def _op_name(op: Any) -> str:
    return str(op.value) if isinstance(op, auto.OpType) else str(op)


def _urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _event_forwarder(on_event: Callable[[str], None]) -> Callable[[auto.EngineEvent], None]:
    """Engine events -> lines; a failing display callback is switched off, never fails the update."""
    broken = False

    def forward(event: auto.EngineEvent) -> None:
        nonlocal broken
        line = None if broken else describe_event(event)
        if line is None:
            return
        try:
            on_event(line)
        except Exception:  # a display problem must not abort a stack update
            broken = True
            log.debug("on_event callback failed; no more events are forwarded", exc_info=True)

    return forward
