"""The progress display: what the driver is doing, and the numbers behind every verdict.

On a terminal the lines are coloured with rich; elsewhere (CI logs, pipes) they are plain text,
one line per event, with the (virtual) time since the deployment started.

Heartbeat: the runner reports long waits inside a step (``… waiting: switch delay, 90s of 300s``),
and a watchdog prints ``… still working`` after ``watchdog`` seconds of wall time without a line
(an analysis window longer than a minute, a slow stack update, a wait for the stack lock), so a
CI job that kills silent jobs never sees rfs-deploy silent for a minute. A closed stream stops
the display, never the deployment.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from rfs_deploy.config.secrets import redact
from rfs_deploy.drive import events


def _fmt_rate(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2%}"


def _fmt_num(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{float(value):.3g}{unit}"


#: Wall-clock seconds without a progress line after which the watchdog prints one.
WATCHDOG_SECONDS = 45.0


class ProgressPrinter:
    """An event listener for :class:`rfs_deploy.drive.context.Seams` that prints progress.

    ``watchdog`` (wall-clock seconds; None: off) starts a daemon thread with the first event that
    prints a ``still working`` line whenever that long passed without one; :meth:`close` stops it.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        color: bool | None = None,
        watchdog: float | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        try:
            tty = self.stream.isatty()
        except (OSError, ValueError):
            tty = False
        self.color = tty if color is None else color
        self.started: float | None = None
        self._console: Any = None
        if self.color:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        self.watchdog = watchdog
        self._lock = threading.Lock()
        self._last_wall = time.monotonic()
        self._last_at = 0.0
        self._doing = ""
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, event: events.Event) -> None:
        if self.started is None:
            self.started = event.at
            self._start_watchdog()
        if isinstance(event, events.StepStarted):
            self._doing = f"step {event.index + 1}/{event.total}: {event.description}"
        elif isinstance(event, events.RollbackStarted):
            self._doing = f"rolling back to stack version {event.target_version}"
        line, style = self._line(event)
        if line is None:
            return
        self._print(event.at, line, style)
        if isinstance(event, events.DeploymentFinished):
            self._stop.set()

    def close(self) -> None:
        """Stop the watchdog (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _print(self, at: float, line: str, style: str | None) -> None:
        with self._lock:
            if self._closed:
                return
            self._last_wall, self._last_at = time.monotonic(), at
            stamp = f"[{at - (self.started or at):7.0f}s]"
            line = redact(line)
            try:
                if self._console is not None:
                    self._console.print(f"[dim]{stamp}[/dim] {line}", style=style)
                else:
                    print(f"{stamp} {line}", file=self.stream, flush=True)
            except (OSError, ValueError):
                # the reader of the progress stream went away: stop printing, keep deploying
                self._closed = True
                self._stop.set()

    def _start_watchdog(self) -> None:
        if self.watchdog is None or self.watchdog <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="rfs-deploy-heartbeat", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        assert self.watchdog is not None
        every = self.watchdog
        while not self._stop.wait(min(every, 5.0) / 5):
            silent = time.monotonic() - self._last_wall
            if silent < every:
                continue
            doing = f" ({self._doing})" if self._doing else ""
            line = f"  … still working{doing}, {silent:.0f}s since the last line"
            # Stamped at the last line's time, not that plus the wall-clock silence: the stamps
            # are the driver's clock (virtual in the sandbox, where a minute of it may pass in a
            # wall second), so adding wall seconds would put this line after the next event's.
            self._print(self._last_at, line, None)

    def _line(self, event: events.Event) -> tuple[str | None, str | None]:
        if isinstance(event, events.StepStarted):
            return f"step {event.index + 1}/{event.total}: {event.description}", "bold"
        if isinstance(event, events.Heartbeat):
            total = f" of {event.total:.0f}s" if event.total is not None else ""
            return f"  … waiting: {event.label}, {event.waited:.0f}s{total}", "dim"
        if isinstance(event, events.StepFinished):
            mark = "ok" if event.outcome == "passed" else event.outcome.upper()
            return f"  {mark}: {event.reason}", ("green" if event.outcome == "passed" else "red")
        if isinstance(event, events.Tick):
            return self._tick(event), {"PASS": "green", "FAIL": "red"}.get(event.outcome, "yellow")
        if isinstance(event, events.RollbackStarted):
            return f"ROLLING BACK to stack version {event.target_version}: {event.reason}", "bold red"
        if isinstance(event, events.DeploymentFinished):
            return f"deployment {event.status}: {event.reason}", "bold"
        if isinstance(event, events.Note):
            return event.message, None
        return None, None

    def _tick(self, event: events.Tick) -> str:
        n = event.numbers
        weights = "/".join(f"{slot} {w}%" for slot, w in sorted(event.weights.items()))
        parts = [
            f"  {event.outcome:<12} [{weights}]",
            f"new: {n.get('requests', '-')} req, err {_fmt_rate(n.get('error_rate'))}",
            f"p99 {_fmt_num(n.get('p99'), 's')}",
        ]
        if n.get("baseline_error_rate") is not None:
            base = f"baseline err {_fmt_rate(n.get('baseline_error_rate'))}"
            if n.get("baseline_p99") is not None:
                base += f", p99 {_fmt_num(n.get('baseline_p99'), 's')}"
            parts.append(base)
        return " | ".join(parts) + f" — {event.reason}"
