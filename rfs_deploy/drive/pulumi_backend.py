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
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from pulumi import automation as auto

from rfs_deploy import releases
from rfs_deploy.config import (
    NAMESPACE,
    RELEASE_KEY,
    ReleaseState,
    StackConfig,
    bounded_yaml,
    load_stack_config,
    parse_release,
)
from rfs_deploy.config.loading import require_network, runs_shipped_program, stack_config_dir
from rfs_deploy.drive.protocols import HistoryEntry, UpdateResult
from rfs_deploy.errors import (
    BackendError,
    ConfigError,
    InvalidInput,
    RfsDeployError,
    StackBusy,
    UnknownStack,
)
from rfs_deploy.logs import get_logger

log = get_logger(__name__)
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
        #: The release state as this object knows it (see release_state), and the live one.
        self._release: dict[str, ReleaseState] | None = None
        self._live: dict[str, ReleaseState] | None = None
        self._live_read = False
        self._wrote_release = False

    # ------------------------------------------------------------------ config

    def read_config(self) -> StackConfig:
        """The ``rfs-deploy:*`` config of the stack, validated: the settings from the workspace
        (the checkout's stack file, secrets decrypted by the CLI), the release state from the
        backend (:meth:`release_state`), never from the checkout, which may be stale."""
        values = namespace_values(self._call("read config", self.stack.get_all_config))
        release = self.release_state()
        if release is not None:
            values["release"] = release_json(release)
        config = load_stack_config(values)
        # the shipped program needs the network; a program of your own brings its own
        return require_network(config) if runs_shipped_program(self.work_dir) else config

    def release_state(self) -> dict[str, ReleaseState] | None:
        """The stack's release state as the backend knows it: what the last successful update
        applied (its ``release`` output), with the service of a newer failed or running driver
        update at the state that update tried to reach. None for a stack with no update yet
        (the checkout's release state is then the first one). Read once, then kept up to date
        by this object's own writes and updates."""
        if self._release is None:
            live = self.live_release()
            newest = next(iter(self.history(limit=1)), None)
            if newest is None:
                return None
            release = dict(live) if live is not None else dict(newest.release or {})
            owner = releases.owner_of(newest.message)
            if newest.result != "succeeded" and newest.release is not None:
                if owner == releases.ALL:
                    release = dict(newest.release)
                elif owner is not None and owner in newest.release:
                    release[owner] = newest.release[owner]
            self._release = release or None
        return None if self._release is None else dict(self._release)

    def live_release(self) -> dict[str, ReleaseState] | None:
        """The release state the last successful update applied (the ``release`` output)."""
        if not self._live_read:
            outputs = self._call("read stack outputs", self.stack.outputs)
            value = outputs.get(releases.RELEASE_OUTPUT)
            self._live = releases.parse_release_output(value.value) if value is not None else None
            self._live_read = True
        return None if self._live is None else dict(self._live)

    def write_release(self, release: Mapping[str, ReleaseState]) -> None:
        """Set ``rfs-deploy:release`` (every service's state) for the next update, and nothing
        else. The update applies it for the service its message's journal tag names (for every
        service when the message has no tag; see :mod:`rfs_deploy.releases`).

        The checkout's stack file is not written: the update reads a private copy of it with the
        new release state (``pulumi up --config-file``), so two processes sharing one checkout
        cannot write over each other's release state, and the checkout stays as committed."""
        self._release = dict(release)
        self._wrote_release = True

    # ------------------------------------------------------------------ updates

    def up(self, message: str, on_event: Callable[[str], None] | None = None) -> UpdateResult:
        """Run ``pulumi up`` with ``message``; ``on_event`` gets one line per resource change."""
        handler = _event_forwarder(on_event) if on_event is not None else None
        message, owner = releases.owned_message(message, self._wrote_release)
        env = {releases.OWNER_ENV: "", releases.EXPECT_ENV: ""}
        env.update(releases.update_environment(owner, self.live_release()))
        workspace_env = cast(dict[str, str], self.workspace.env_vars)  # a dict the CLI calls read
        workspace_env.update(env)
        private = tempfile.mkdtemp(prefix="rfs-deploy-config-") if self._wrote_release else None
        try:
            config_file = self._config_copy(private) if private is not None else None
            result = self._call(
                "stack update",
                lambda: self.stack.up(
                    message=message,
                    on_event=handler,
                    color="never",
                    suppress_progress=True,
                    show_secrets=False,
                    config_file=config_file,
                ),
            )
        finally:
            for key in env:
                workspace_env.pop(key, None)
            if private is not None:
                shutil.rmtree(private, ignore_errors=True)
        self._wrote_release = False
        applied = result.outputs.get(releases.RELEASE_OUTPUT)
        self._live = releases.parse_release_output(applied.value) if applied is not None else None
        self._live_read = True
        if self._live is not None:
            self._release = dict(self._live)
        summary = result.summary
        # self-managed backends number nothing: the update is the newest entry of the history
        version = summary.version or self.history(limit=1)[0].version
        return UpdateResult(
            version=version,
            message=summary.message,
            changes={_op_name(op): int(n) for op, n in (summary.resource_changes or {}).items()},
        )

    def stack_file(self) -> Path:
        """The checkout's stack config file (``stackConfigDir`` of Pulumi.yaml honoured)."""
        directory = stack_config_dir(self.work_dir)
        return directory / f"Pulumi.{self.stack_name.rsplit('/', 1)[-1]}.yaml"

    def _config_copy(self, directory: str) -> str:
        """A copy of the stack file with this object's release state, in ``directory``. Secret
        values stay as the ciphertexts the stack file holds."""
        source = self.stack_file()
        try:
            doc = bounded_yaml.read(source) if source.is_file() else {}
        except bounded_yaml.YamlRefused as exc:
            raise ConfigError("", f"cannot read {source.name}: {exc}") from None
        except OSError as exc:
            raise ConfigError("", f"cannot read {source.name}: {exc.strerror or exc}") from None
        doc = doc if isinstance(doc, dict) else {}
        config = dict(doc.get("config") or {})
        config[RELEASE_KEY] = release_json(self._release or {})
        doc["config"] = config
        target = Path(directory) / source.name
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        return str(target)

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
            return releases.effective_history(number_by_position(self._every_page(whole)))[:limit]
        pages = [first] if limit is not None else self._all_history_pages(first)
        seen: dict[int, HistoryEntry] = {}
        for page in pages:
            for summary in page:
                entry = summary_to_entry(summary)
                seen.setdefault(entry.version, entry)
        return releases.effective_history(list(seen.values()))

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
    if releases.CONFLICT_MARK in stdout or releases.CONFLICT_MARK in stderr:
        line = next(
            (ln for ln in _lines(stderr) + _lines(stdout) if releases.CONFLICT_MARK in ln),
            releases.CONFLICT_MARK,
        )
        return releases.ReleaseConflict(_clip(line[line.index(releases.CONFLICT_MARK) :]))
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
    from rfs_deploy.journal_tags import process_exists

    return process_exists(pid)


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
