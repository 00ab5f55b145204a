"""One process at a time changes a sandbox session; any number read it.

A sandbox session (``.rfs-deploy/sandbox/<stack>``) is the whole simulated world of a stack:
moto's resources, the traffic physics and a virtual clock, loaded into the process that uses it.
Two processes changing it at once would each run their own copy of the world, and the second to
save would lose the first's work. So a command that changes the stack (``deploy``, ``resume``,
``abort``, ``rollback``, ``up``) holds the session for its whole run, and a second one waits for
it (saying so after 10 s, then every 30 s), as a deployment waits for Pulumi's stack lock on a
real backend. Two deployments of different services of one sandbox stack therefore run one
after the other; on a real backend they interleave update by update. Read-only commands
(``status``, ``history``, ``plan``) take no lock: they read the last saved state and never
write it.

The lock is an ``flock`` on ``.<stack>.lock`` beside the session directory (which ``simulate``
may delete and create anew): the kernel releases it when its process dies, so a killed command
never leaves the session locked. Opening the same session again inside the holding process
(tests, the Python API) shares the hold.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rfs_deploy import statefiles
from rfs_deploy.errors import InvalidInput, RfsDeployError, StackBusy

#: Seconds before the first "waiting" line (a short wait goes unsaid), and between the next ones.
FIRST_NOTICE = 10.0
NOTICE_EVERY = 30.0

_held: dict[Path, list[int]] = {}  # path -> [fd, holds] in this process
_guard = threading.Lock()


def _say(text: str) -> None:
    print(f"rfs-deploy: {text}", file=sys.stderr, flush=True)


class SessionLock:
    """The hold of one process on one sandbox session (see the module docstring)."""

    def __init__(self, directory: Path, stack: str) -> None:
        self.directory = Path(directory).resolve()
        self.stack = stack
        self.path = self.directory.parent / f".{self.directory.name}.lock"
        self._holder_file = self.directory.parent / f".{self.directory.name}.holder"
        self._holding = False

    def holder(self) -> str:
        """Who holds the session: ``pid N (rfs-deploy deploy ...)``, or ``another process``."""
        try:
            info = json.loads(statefiles.read_bytes(self._holder_file, limit=4096) or b"")
            return f"pid {int(info['pid'])} ({info.get('command', '?')})"
        except (RfsDeployError, OSError, ValueError, KeyError, TypeError):
            return "another process"

    def acquire(self, timeout: float, notice: Callable[[str], None] = _say) -> None:
        """Hold the session, waiting up to ``timeout`` seconds; StackBusy after that."""
        statefiles.make_dirs(self.directory.parent)
        with _guard:
            held = _held.get(self.path)
            if held is not None:
                held[1] += 1
                self._holding = True
                return
        fd = statefiles.open_lock_file(self.path)  # a planted link: one line, nothing written
        start = time.monotonic()
        told = FIRST_NOTICE - NOTICE_EVERY
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= timeout:
                    os.close(fd)
                    raise StackBusy(
                        f"the sandbox session of stack {self.stack!r} is in use by {self.holder()}; "
                        f"gave up after waiting {waited:.0f}s"
                    ) from None
                if waited - told >= NOTICE_EVERY:
                    notice(
                        f"waiting for the sandbox session of stack {self.stack!r}, in use by "
                        f"{self.holder()} ({waited:.0f}s so far)"
                    )
                    told = waited
                time.sleep(0.2)
        command = " ".join(["rfs-deploy", *sys.argv[1:]])[:200]
        try:
            holder = json.dumps({"pid": os.getpid(), "command": command}).encode()
            statefiles.write_atomic(self._holder_file, holder)
        except BaseException:
            os.close(fd)
            raise
        with _guard:
            _held[self.path] = [fd, 1]
        self._holding = True

    def release(self) -> None:
        if not self._holding:
            return
        self._holding = False
        with _guard:
            held = _held.get(self.path)
            if held is None:
                return
            held[1] -= 1
            if held[1] > 0:
                return
            del _held[self.path]
        with contextlib.suppress(OSError):
            self._holder_file.unlink(missing_ok=True)  # unlink never follows a link
        os.close(held[0])  # closing the descriptor releases the flock


def session_directory(root: str | Path, stack: str) -> Path:
    """Where a stack's sandbox session lives under ``root`` (e.g. ``.rfs-deploy/sandbox/<stack>``).
    ``stack`` is a short stack name (:func:`rfs_deploy.connect.check_stack_name`, no ``/``):
    anything else is InvalidInput, so no name can reach outside ``root/sandbox``."""
    from rfs_deploy.connect import check_stack_name

    if "/" in check_stack_name(stack):
        raise InvalidInput(f"{stack!r}: a sandbox session belongs to a short stack name, not {stack!r}")
    return Path(root) / "sandbox" / stack
