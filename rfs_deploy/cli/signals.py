"""SIGINT and SIGTERM for the commands that change a stack (see docs/cancellation.md).

While ``deploy``, ``resume``, ``abort``, ``rollback``, ``simulate`` or ``up`` runs, both signals are
handled by the event loop: the first asks the driver to stop at its next safe point (a stack
update in flight always finishes) and do what ``--on-cancel`` says; a second one, or the end of
``--cancel-grace``, stops a rollback under way right after its update in flight. Every signal
gets one line on stderr at once, and the command ends with one line saying what was done.

Exit codes of a cancelled command: 128 + the signal (130 for SIGINT, 143 for SIGTERM) when the
stack is in a safe state — rolled back, left at a step boundary by ``--on-cancel leave``,
untouched, or finished before the cancel took effect; 4 when a rollback did not finish (the last
line names the command that finishes it).

Read-only commands keep Python's default behaviour (SIGINT ends them with 130, SIGTERM at once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator

from rfs_deploy.drive.cancel import CURRENT, DEFAULT_GRACE, ON_CANCEL, Cancellation, signal_name

#: The commands that change a stack and so handle the signals themselves.
HANDLED = frozenset({"deploy", "resume", "promote", "retry", "abort", "rollback", "simulate", "up"})
SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_NOT_RESTORED = 4


def _grace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--on-cancel`` and ``--cancel-grace`` (deploy, resume, simulate)."""
    parser.add_argument(
        "--on-cancel",
        choices=ON_CANCEL,
        default="abort",
        help="on SIGINT/SIGTERM: roll back to the checkpoint (abort, the default) or leave the "
        "deployment open for resume/abort (leave)",
    )
    parser.add_argument(
        "--cancel-grace",
        type=_grace,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"after a signal, how long a rollback may run before it stops after its update in "
        f"flight (default {DEFAULT_GRACE:g})",
    )


_current: Cancellation | None = None


def current() -> Cancellation | None:
    """The running command's cancellation (None for read-only commands)."""
    return _current


@contextlib.contextmanager
def installed(args: argparse.Namespace) -> Iterator[Cancellation | None]:
    """Handle SIGINT and SIGTERM for the duration of a stack-changing command (call inside the
    running event loop)."""
    global _current
    if args.command not in HANDLED:
        yield None
        return
    grace = getattr(args, "cancel_grace", None)
    cancellation = Cancellation(
        on_cancel=getattr(args, "on_cancel", None) or "abort",
        grace=DEFAULT_GRACE if grace is None else float(grace),
    )
    loop = asyncio.get_running_loop()
    installed_now: list[signal.Signals] = []
    try:
        for signum in SIGNALS:
            loop.add_signal_handler(signum, _received, cancellation, int(signum))
            installed_now.append(signum)
    except (NotImplementedError, RuntimeError, ValueError):
        pass  # no signal support here (not the main thread, or not POSIX): the defaults stay
    _current = cancellation
    token = CURRENT.set(cancellation)
    try:
        yield cancellation
    finally:
        _current = None
        CURRENT.reset(token)
        for signum in installed_now:
            loop.remove_signal_handler(signum)
        cancellation.close()


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"rfs-deploy: {line}", file=sys.stderr, flush=True)


def _received(cancellation: Cancellation, signum: int) -> None:
    name = signal_name(signum)
    count = len(cancellation.received) + 1
    cancellation.request(signum)
    if count == 1 and cancellation.stage == "running":
        then = (
            f"rolling back to the checkpoint (--on-cancel abort, within {cancellation.grace:g}s)"
            if cancellation.on_cancel == "abort"
            else "leaving the deployment as it is (--on-cancel leave)"
        )
        _say(
            f"{name} received: stopping at the next safe point (a stack update in flight finishes "
            f"first), then {then}; a second signal stops right after the update in flight"
        )
    elif count == 1:
        _say(
            f"{name} received: finishing the rollback under way (within {cancellation.grace:g}s); "
            "a second signal stops it right after the update in flight"
        )
    elif count == 2:
        _say(f"second signal ({name}): stopping right after the stack update in flight")
    else:
        _say(f"{name}: already stopping; waiting for the stack update in flight to end")


def adjust(code: int) -> int:
    """The exit code of a command that would return ``code``, given any cancel request."""
    cancellation = _current
    if cancellation is None or not cancellation.requested:
        return code
    if cancellation.outcome == "left":
        return cancellation.exit_code
    if cancellation.outcome in ("stopped", "failed") or code == EXIT_NOT_RESTORED:
        return EXIT_NOT_RESTORED
    return cancellation.exit_code


def finish(code: int) -> int:
    """After the command: the last line about the cancel (when there was one) and the exit code."""
    cancellation = _current
    if cancellation is None or not cancellation.requested:
        return code
    _say(cancellation.summary())
    return adjust(code)
