"""The progress display: what the driver is doing, and the numbers behind every verdict.

On a terminal the lines are coloured with rich; elsewhere (CI logs, pipes) they are plain text,
one line per event, with the (virtual) time since the deployment started.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from rfs_deploy.drive import events


def _fmt_rate(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2%}"


def _fmt_num(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{float(value):.3g}{unit}"


class ProgressPrinter:
    """An event listener for :class:`rfs_deploy.drive.context.Seams` that prints progress."""

    def __init__(self, stream: TextIO | None = None, color: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.color = self.stream.isatty() if color is None else color
        self.started: float | None = None
        self._console: Any = None
        if self.color:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def __call__(self, event: events.Event) -> None:
        if self.started is None:
            self.started = event.at
        line, style = self._line(event)
        if line is None:
            return
        stamp = f"[{event.at - self.started:7.0f}s]"
        if self._console is not None:
            self._console.print(f"[dim]{stamp}[/dim] {line}", style=style)
        else:
            print(f"{stamp} {line}", file=self.stream, flush=True)

    def _line(self, event: events.Event) -> tuple[str | None, str | None]:
        if isinstance(event, events.StepStarted):
            return f"step {event.index + 1}/{event.total}: {event.description}", "bold"
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
