"""SandboxBackend: a StackBackend that runs the real program under Pulumi's mock runtime on moto.

Each :meth:`SandboxBackend.up` evaluates :func:`rfs_deploy.infra.program.run` with the stack's
current config through :func:`rfs_deploy.sim.mockrun.run_program`, with
:class:`~rfs_deploy.sim.applier.SandboxMocks` applying every resource to moto. The backend keeps
what Pulumi's service would: the config, a numbered history (message, result, times, the
release state each update ran with), the outputs, an exportable state, and a lock: a second
``up`` while one runs raises StackBusy (in-process lock, plus a lock file when the session is
kept in a directory, so a second process is refused too).

Durability, as Pulumi's service keeps it: an update is in history (``in-progress``) from the
moment it starts, every resource change it makes is saved as it happens (the cloud does not undo
a change because the process that asked for it died), and its result once it ends.

Fault injection for reliability tests: :meth:`fail_next_updates` makes the next N updates fail
(before or after touching resources), :meth:`hold_lock` plays another update holding the stack,
and :meth:`kill_during` SIGKILLs the process itself at a chosen point inside an update.

Requests from other processes: a sandbox session is held by one process at a time
(:mod:`rfs_deploy.sim.session_lock`), so ``rfs-deploy pause`` cannot run its update while a
``deploy`` holds the session, as it would against Pulumi (where the two interleave update by
update). It posts its update's message to the session's request file instead
(:func:`post_request`); the holding process records each posted message, at its next history
read or update, as the update that changes nothing it stands for (a succeeded entry with the live
release state), which is what stack history shows on a real backend.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rfs_deploy import releases, statefiles
from rfs_deploy.config.loading import load_stack_config, parse_release, require_network
from rfs_deploy.config.model import ReleaseState, StackConfig
from rfs_deploy.drive.protocols import HistoryEntry, UpdateResult
from rfs_deploy.errors import BackendError, RfsDeployError, StackBusy
from rfs_deploy.sim.applier import MotoApplier, SandboxMocks
from rfs_deploy.sim.mockrun import run_program

#: Called when the stack's state changed (the sandbox persists itself).
Saver = Callable[[], None]
#: In a session directory: update messages other processes posted (see the module docstring).
REQUESTS_FILE = "requests.jsonl"
#: A posted message longer than this is refused (a journal tag and one line of text).
MAX_REQUEST = 4096


def post_request(inbox: Path, message: str) -> None:
    """Post an update's message to the process holding the session (see the module docstring)."""
    line = json.dumps({"message": message}) + "\n"
    if len(line) > MAX_REQUEST:
        raise RfsDeployError("a posted update message is too long")
    fd = statefiles.open_lock_file(inbox)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, line.encode())
    finally:
        os.close(fd)  # releases the flock


def pending_requests(inbox: Path) -> int:
    """How many posted messages the holding process has not recorded yet."""
    if not statefiles.exists(inbox):
        return 0
    data = statefiles.read_bytes(inbox, limit=64 * MAX_REQUEST) or b""
    return sum(1 for line in data.splitlines() if line.strip())


#: Where :meth:`SandboxBackend.kill_during` can kill an update: after it is recorded as started,
#: after its first resource change, after its last resource change (before it is recorded), or
#: ``after`` it is recorded as succeeded — at the next moment the driver waits on the clock (the
#: refresh back of a rollback, say) or starts another update, whichever comes first.
KILL_STAGES = ("start", "mid", "end", "after")


@dataclass
class _Fault:
    remaining: int
    after_apply: bool
    message: str


class SandboxBackend:
    """The sandbox's :class:`~rfs_deploy.drive.protocols.StackBackend` (see the module docstring)."""

    def __init__(
        self,
        stack_name: str,
        namespace: Mapping[str, Any],
        applier: MotoApplier,
        *,
        extra_config: Mapping[str, Any] | None = None,
        lock_file: Path | None = None,
        save: Saver | None = None,
        now: Callable[[], float] = time.time,
        inbox: Path | None = None,
    ) -> None:
        self.stack_name = stack_name
        #: The session's request file, when this process holds the session (module docstring).
        self.inbox = inbox
        self.namespace: dict[str, Any] = dict(namespace)
        self.extra_config: dict[str, Any] = dict(extra_config or {})
        self.applier = applier
        self.entries: list[dict[str, Any]] = []
        self.stack_outputs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._lock_file = lock_file
        self._save = save or (lambda: None)
        self._fault: _Fault | None = None
        self._kill: tuple[str, int] | None = None
        self._kill_after = False
        self._updates_run = 0
        #: write_release was called since the last update (see releases.owned_message).
        self._wrote_release = False
        self._changed_in_update = 0
        self._now = now
        applier.on_change = self._resource_changed
        self.read_config()  # a bad stack file fails here, with one line naming the key

    # ----------------------------------------------------------------- config

    def read_config(self) -> StackConfig:
        """The stack's ``rfs-deploy`` config as it stands (validated; ConfigError names the key;
        the sandbox runs the shipped program, which needs the network)."""
        return require_network(load_stack_config(self.namespace))

    def write_release(self, release: Mapping[str, ReleaseState]) -> None:
        """Replace ``rfs-deploy:release`` and nothing else."""
        self.namespace["release"] = {name: state.to_config() for name, state in release.items()}
        self._wrote_release = True
        self._save()

    # ----------------------------------------------------------------- updates

    def up(self, message: str, on_event: Callable[[str], None] | None = None) -> UpdateResult:
        """Run the program with the current config and apply it to moto (see StackBackend.up)."""
        if not self._lock.acquire(blocking=False):
            raise StackBusy(f"stack {self.stack_name!r} is locked by another update in progress (sandbox)")
        try:
            with self._file_lock():
                return self._update(message, on_event or (lambda _text: None))
        finally:
            self._lock.release()

    def _update(self, message: str, emit: Callable[[str], None]) -> UpdateResult:
        self.time_passed()  # an ``after`` kill armed by the previous update lands before this one
        self._take_requests()
        version = (self.entries[-1]["version"] + 1) if self.entries else 1
        message, owner = releases.owned_message(message, self._wrote_release)
        self._wrote_release = False
        entry: dict[str, Any] = {
            "version": version,
            "message": message,
            "result": "in-progress",
            "startTime": self._now(),
            "endTime": None,
            "release": self.namespace.get("release"),
            "changes": {},
        }
        self.entries.append(entry)
        self._updates_run += 1
        self._changed_in_update = 0
        first = not any(e["result"] == "succeeded" for e in self.entries[:-1])
        emit(f"updating stack {self.stack_name} (version {version}): {message}")
        try:
            self._save()  # history shows the update from its start, as Pulumi's service does
            self._maybe_kill("start")
            self._inject("before")
            config = self.read_config()
            if config.network is not None:
                self.applier.network.ensure(self.applier.aws, config.network)
            self.applier.warm = first
            self.applier.begin()
            run = run_program(
                self.namespace,
                stack=self.stack_name,
                mocks=SandboxMocks(self.applier, self.stack_outputs),
                config=self.extra_config,
                env=releases.update_environment(owner, self.live_release()),
            )
            changes = self.applier.finish()
            self._maybe_kill("end")
            self._inject("after")
        except BaseException as exc:
            entry.update(result="failed", endTime=self._now())
            self._save()
            if releases.CONFLICT_MARK in str(exc):
                raise releases.ReleaseConflict(
                    f"update {version} of stack {self.stack_name!r} changed nothing: {exc}"
                ) from exc
            if isinstance(exc, RfsDeployError) and not isinstance(exc, BackendError):
                raise BackendError(f"update {version} of stack {self.stack_name!r} failed: {exc}") from exc
            if isinstance(exc, BackendError):
                raise
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendError(f"update {version} of stack {self.stack_name!r} failed: {first_line}") from exc
        finally:
            self.applier.warm = False
        urns = {f"{r.type}::{r.name}": r.urn for r in run.resources}
        for key, res in self.applier.resources.items():
            res.urn = urns.get(key, res.urn)
        self.stack_outputs = dict(run.outputs)
        applied = self.live_release()
        if applied is not None:
            # the config now says what the program applied (it may have kept live states)
            self.namespace["release"] = {name: state.to_config() for name, state in applied.items()}
        entry.update(result="succeeded", endTime=self._now(), changes=changes)
        self._save()
        self._kill_after = self._kill == ("after", self._updates_run)
        emit(f"update {version} succeeded: " + ", ".join(f"{k} {v}" for k, v in sorted(changes.items())))
        return UpdateResult(version=version, message=message, changes=changes)

    # ----------------------------------------------------------------- reading

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        """Stack history, newest first."""
        self._take_requests()
        entries = releases.effective_history([self._history_entry(e) for e in self.entries])
        return entries[: limit if limit is not None else None]

    def _take_requests(self) -> None:
        """Record the messages other processes posted as the no-change updates they stand for."""
        if self.inbox is None or not statefiles.exists(self.inbox):
            return
        fd = statefiles.open_lock_file(self.inbox)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        messages = []
        for line in b"".join(chunks).decode(errors="replace").splitlines():
            try:
                posted = json.loads(line)
            except ValueError:
                continue  # a torn line of a poster killed mid-write: nothing was asked
            if isinstance(posted, dict) and isinstance(posted.get("message"), str):
                messages.append(" ".join(posted["message"].split())[:MAX_REQUEST])
        if not messages:
            return
        live = self.live_release()
        release = (
            {name: state.to_config() for name, state in live.items()}
            if live is not None
            else self.namespace.get("release")
        )
        for message in messages:
            version = (self.entries[-1]["version"] + 1) if self.entries else 1
            now = self._now()
            self.entries.append(
                {
                    "version": version,
                    "message": message,
                    "result": "succeeded",
                    "startTime": now,
                    "endTime": now,
                    "release": release,
                    "changes": {},
                }
            )
        self._save()

    def live_release(self) -> dict[str, ReleaseState] | None:
        """The release state the last successful update applied (its ``release`` output)."""
        return releases.parse_release_output(self.stack_outputs.get(releases.RELEASE_OUTPUT))

    def _history_entry(self, entry: Mapping[str, Any]) -> HistoryEntry:
        return history_entry(entry)

    def outputs(self) -> dict[str, Any]:
        """The outputs of the last successful update."""
        return dict(self.stack_outputs)

    def export(self) -> dict[str, Any]:
        """A ``pulumi stack export``-shaped deployment of the resources now applied."""
        return {
            "version": 3,
            "deployment": {
                "manifest": {"time": self._now(), "magic": "rfs-deploy-sandbox", "version": "sandbox"},
                "resources": self.applier.export(),
                "outputs": self.outputs(),
            },
        }

    # ----------------------------------------------------------------- fault injection

    def fail_next_updates(
        self, count: int = 1, *, after_apply: bool = False, message: str = "injected failure"
    ) -> None:
        """Make the next ``count`` updates fail: before any resource changes, or (``after_apply``)
        after the resources were applied, as a provider error late in an update would."""
        self._fault = _Fault(count, after_apply, message) if count > 0 else None

    def _inject(self, stage: str) -> None:
        fault = self._fault
        if fault is None or fault.after_apply != (stage == "after"):
            return
        fault.remaining -= 1
        if fault.remaining <= 0:
            self._fault = None
        raise BackendError(f"update of stack {self.stack_name!r} failed: {fault.message}")

    def kill_during(self, update: int, stage: str = "mid") -> None:
        """SIGKILL this process inside the ``update``-th update it runs (1-based) at ``stage``
        (see :data:`KILL_STAGES`): a real kill, for crash tests run in a subprocess."""
        if stage not in KILL_STAGES or update < 1:
            raise ValueError(f"kill stage must be one of {KILL_STAGES} and update >= 1")
        self._kill = (stage, update)

    def _resource_changed(self) -> None:
        """The applier changed a resource: save it at once (the cloud keeps it) and maybe die."""
        self._changed_in_update += 1
        self._save()
        if self._changed_in_update == 1:
            self._maybe_kill("mid")

    def time_passed(self) -> None:
        """The sandbox clock moved (or another update starts): an ``after`` kill lands now, once
        the session is saved as a killed process's cloud would have kept it."""
        if self._kill_after:
            self._save()
            os.kill(os.getpid(), signal.SIGKILL)

    def _maybe_kill(self, stage: str) -> None:
        if self._kill == (stage, self._updates_run):
            os.kill(os.getpid(), signal.SIGKILL)

    @contextmanager
    def hold_lock(self) -> Iterator[None]:
        """Hold the stack lock, as another update would: ``up`` raises StackBusy meanwhile."""
        if not self._lock.acquire(blocking=False):
            raise StackBusy(f"stack {self.stack_name!r} is already locked")
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        path = self._lock_file
        if path is None:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is not None and _alive(holder):
                raise StackBusy(
                    f"stack {self.stack_name!r} is locked by another process (pid {holder})"
                ) from None
            path.unlink(missing_ok=True)  # a stale lock of a killed process
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            yield
        finally:
            path.unlink(missing_ok=True)

    # ----------------------------------------------------------------- persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack_name,
            "namespace": redact_secrets(self.namespace),
            "extraConfig": self.extra_config,
            "history": self.entries,
            "outputs": self.stack_outputs,
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        self.namespace = dict(data["namespace"])
        self.extra_config = dict(data.get("extraConfig") or {})
        self.entries = [dict(e) for e in data.get("history", [])]
        for entry in self.entries:
            if entry["result"] == "in-progress":  # the process died during this update
                entry.update(result="failed", endTime=entry.get("startTime"))
        self.stack_outputs = dict(data.get("outputs") or {})


def history_entry(entry: Mapping[str, Any]) -> HistoryEntry:
    """One saved history entry as a :class:`HistoryEntry` (its release state parsed)."""
    release: dict[str, ReleaseState] | None = None
    raw = entry.get("release")
    if isinstance(raw, Mapping):
        try:
            release = {name: parse_release(name, value) for name, value in raw.items()}
        except RfsDeployError:
            release = None
    return HistoryEntry(
        version=int(entry["version"]),
        message=str(entry["message"]),
        result=entry["result"],
        start_time=float(entry["startTime"]),
        end_time=None if entry.get("endTime") is None else float(entry["endTime"]),
        release=release,
    )


def saved_history(entries: list[Any]) -> list[HistoryEntry]:
    """A saved session's history, newest first, as :meth:`SandboxBackend.history` reads it,
    without starting the sandbox (a watcher polling it from another process)."""
    return releases.effective_history([history_entry(e) for e in entries])


#: What a saved session holds instead of a secret config value (it stays in the stack file); the
#: same text as :data:`rfs_deploy.config.secrets.SAVED_PLACEHOLDER`.
SECRET_PLACEHOLDER = "[secret: not saved in the sandbox session; read from the stack file]"


def _secret_slots(namespace: Mapping[str, Any]) -> Iterator[tuple[tuple[str, str], dict[str, Any], str]]:
    """((service, header), mapping, key) of every validation header in ``namespace``: secrets
    whether or not the stack file made them Pulumi secrets (the config model's SecretStr fields)."""
    services = namespace.get("services")
    if not isinstance(services, dict):
        return
    for name, service in services.items():
        validation = service.get("validation") if isinstance(service, dict) else None
        headers = validation.get("headers") if isinstance(validation, dict) else None
        if isinstance(headers, dict):
            for key in headers:
                yield (str(name), str(key)), headers, key


def redact_secrets(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``namespace`` fit to be written to disk: the validation headers, every value
    decrypted from a Pulumi secret (at any depth, whole top-level values too) and every masked
    one replaced by :data:`SECRET_PLACEHOLDER`."""
    from rfs_deploy.config.secrets import MASKED, conceal

    copied: dict[str, Any] = conceal(dict(namespace), SECRET_PLACEHOLDER)
    for _, mapping, key in _secret_slots(copied):
        mapping[key] = SECRET_PLACEHOLDER
    return _replace_masked(copied, MASKED)


def _replace_masked(value: Any, masked: str) -> Any:
    if isinstance(value, str):
        return SECRET_PLACEHOLDER if value == masked else value
    if isinstance(value, dict):
        return {k: _replace_masked(v, masked) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_masked(v, masked) for v in value]
    return value


def restore_secrets(namespace: dict[str, Any], source: Mapping[str, Any]) -> None:
    """Put back the secret values a saved session left out, from ``source`` (the stack file's
    namespace, as read now: decrypted, or masked without the passphrase); placeholders without a
    counterpart there stay."""

    def walk(saved: Any, original: Any) -> Any:
        if isinstance(saved, str):
            return original if saved == SECRET_PLACEHOLDER and original is not _MISSING else saved
        if isinstance(saved, dict):
            fields = original if isinstance(original, Mapping) else {}
            return {k: walk(v, fields.get(k, _MISSING)) for k, v in saved.items()}
        if isinstance(saved, list):
            items = original if isinstance(original, list) else []
            return [walk(v, items[i] if i < len(items) else _MISSING) for i, v in enumerate(saved)]
        return saved

    for key, value in list(namespace.items()):
        namespace[key] = walk(value, source.get(key, _MISSING))


_MISSING: Any = object()


def _lock_holder(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    from rfs_deploy.drive.journal import process_exists

    return process_exists(pid)
