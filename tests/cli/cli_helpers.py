"""Running ``rfs-deploy`` as a user would: a new process, the sandbox chosen by the environment.

Every command runs with its own ``RFS_DEPLOY_STATE`` and working directory (temp dirs), so no
session, record or report lands in the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: ``python -c CLI args...`` is ``rfs-deploy args...`` with this interpreter.
CLI = "import sys; from rfs_deploy.cli import main; sys.exit(main())"
STACK = "production"
SERVICE = "api-service"


@dataclass(frozen=True)
class Done:
    """A finished command."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass(frozen=True)
class Place:
    """Where commands run: the state directory and the working directory."""

    state: Path
    cwd: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "RFS_DEPLOY_STATE": str(self.state),
            "RFS_DEPLOY_PROJECT": str(REPO),
            "RFS_DEPLOY_BACKEND": "sim",
            "PYTHONIOENCODING": "utf-8",
        }
        env.pop("RFS_DEPLOY_SCENARIO", None)
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-c", CLI, *args]

    def run(self, *args: str, timeout: float = 300, **env: str) -> Done:
        """``rfs-deploy *args`` in a new process; waits for it."""
        done = subprocess.run(
            self.argv(*args),
            cwd=self.cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
        )
        return Done(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """``rfs-deploy *args`` in a new process, its progress lines readable on ``stderr``."""
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.cwd,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )


def make_place(base: Path) -> Place:
    state, cwd = base / "state", base / "work"
    cwd.mkdir(parents=True)
    return Place(state, cwd)


def one_error_line(done: Done, code: int) -> str:
    """The single ``rfs-deploy: error: ...`` line a failed command prints; no traceback."""
    assert done.code == code, (done.code, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("rfs-deploy: error: ")
    return lines[0]


class Running:
    """A started command whose stderr lines are collected as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 240) -> str:
        """The first stderr line matching ``pattern`` (waits for it)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines if regex.search(line)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}; stderr:\n" + "\n".join(self.lines))
                self._changed.wait(min(left, 0.2))

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once the process ends."""
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code, out, "\n".join(self.lines)
