"""Cancellation: stopping a deployment safely when asked to (SIGINT, SIGTERM, ``task.cancel()``).

A :class:`Cancellation` is the request and what came of it. The command line creates one per
command and calls :meth:`Cancellation.request` from its signal handlers; the driver creates one
when the caller did not, and turns an asyncio cancellation of its caller into a request (see
:func:`cancellable`).

What a request does, by where the deployment is:

* a stack update in flight is never interrupted: the driver's own task is never cancelled, so the
  update (a thread, or a ``pulumi`` child process) runs to its end;
* an observation wait (a bake, an analysis window, a health or listener wait, validation retries)
  is interrupted: every wait goes through the seams' clock, which :func:`guard` wraps so that its
  ``sleep`` raises :class:`CancelRequested` at once;
* the runner then does what ``on_cancel`` says at that safe point: ``abort`` restores the
  pre-deployment checkpoint (journal phase ``abort``, reason "cancelled"), ``leave`` stops and
  leaves the deployment open for ``resume`` or ``abort``;
* a rollback or abort under way is not interrupted by a first request; a second request, or the
  grace period running out, stops it right after the update in flight, and the record names the
  command that finishes the job.

The grace period is wall-clock time from the first request, whatever clock the deployment runs
on: it bounds how long a cancelled process keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar

from rfs_deploy.errors import RfsDeployError

if TYPE_CHECKING:
    from rfs_deploy.drive.protocols import Clock, StackBackend
    from rfs_deploy.drive.records import DeploymentRecord

#: What a cancelled deployment does at its next safe point.
OnCancel = Literal["abort", "leave"]
ON_CANCEL: tuple[OnCancel, ...] = ("abort", "leave")
#: Default seconds from the first signal until a rollback under way is stopped after its update.
DEFAULT_GRACE = 120.0

#: Where the deployment is, for deciding what a request interrupts.
Stage = Literal["running", "restoring", "finished"]
#: What came of a request (None: nothing yet, the command finished what it was doing).
Outcome = Literal["untouched", "rolled-back", "left", "stopped", "failed"]


#: The cancellation of the command running in this context (the command line sets it), used by
#: the driver when its seams carry none.
CURRENT: contextvars.ContextVar[Cancellation | None] = contextvars.ContextVar(
    "rfs_deploy_cancellation", default=None
)


class CancelRequested(BaseException):
    """Raised from an interrupted wait. A BaseException, so that code catching ``Exception``
    around a wait (retries, best-effort reads) lets it through to the runner."""


class DeploymentCancelled(RfsDeployError):
    """Cancelled before the deployment changed anything; the exit code is the signal's."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``cancellation`` for 0 (a programmatic request)."""
    if not signum:
        return "cancellation"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass
class Cancellation:
    """A cancellation request for one command (see the module docstring)."""

    on_cancel: OnCancel = "abort"
    #: Seconds from the first request until a rollback under way is stopped after its update.
    grace: float = DEFAULT_GRACE
    #: The signals received, in order (0 for a programmatic request or an asyncio cancellation).
    received: list[int] = field(default_factory=list)
    #: ``time.monotonic()`` of the first request.
    requested_at: float | None = None
    #: The grace period ran out.
    expired: bool = False
    stage: Stage = "running"
    outcome: Outcome | None = None
    #: The deployment the request reached (set by the runner).
    record: DeploymentRecord | None = None
    #: The exact commands that continue or finish a deployment left open or stopped.
    commands: dict[str, str] = field(default_factory=dict)
    _waiters: set[asyncio.Future[None]] = field(default_factory=set, repr=False)
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.on_cancel not in ON_CANCEL:
            raise ValueError(f"on_cancel must be one of {', '.join(ON_CANCEL)}, not {self.on_cancel!r}")
        if not self.grace >= 0:
            raise ValueError(f"the cancel grace period must be >= 0 seconds, not {self.grace}")

    # ------------------------------------------------------------------ the request

    @property
    def requested(self) -> bool:
        return bool(self.received)

    @property
    def signum(self) -> int:
        """The first signal received (0 for a programmatic request; 0 when none)."""
        return self.received[0] if self.received else 0

    @property
    def name(self) -> str:
        return signal_name(self.signum)

    @property
    def forced(self) -> bool:
        """A second request came, or the grace period ran out: stop after the update in flight."""
        if not self.expired and self.requested_at is not None and self.remaining() == 0:
            self.expired = True  # the timer has not fired yet, or no loop was running to set it
        return len(self.received) >= 2 or self.expired

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for a programmatic request)."""
        return 128 + (self.signum or signal.SIGINT)

    def request(self, signum: int = 0) -> None:
        """Ask the deployment to stop (call from the event loop's thread)."""
        self.received.append(int(signum))
        if len(self.received) == 1:
            self.requested_at = time.monotonic()
            with contextlib.suppress(RuntimeError):  # no running loop: the deadline is checked lazily
                self._timer = asyncio.get_running_loop().call_later(self.grace, self._expire)
        self._wake()

    def remaining(self) -> float | None:
        """Seconds of grace left (None before any request)."""
        if self.requested_at is None:
            return None
        return max(0.0, self.requested_at + self.grace - time.monotonic())

    def _expire(self) -> None:
        self.expired = True
        self._wake()

    def _wake(self) -> None:
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """Stop the grace timer (the command is over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------------ safe points

    def interrupting(self) -> bool:
        """Whether a wait should stop now: any request while the plan runs; while a checkpoint is
        being restored, only a second request or the end of the grace period."""
        if not self.received:
            return False
        if self.stage == "running":
            return True
        return self.stage == "restoring" and self.forced

    def stop_reason(self) -> str:
        """Why the request became forcing: a second signal, or the end of the grace period."""
        if len(self.received) >= 2:
            return f"a second signal ({signal_name(self.received[1])})"
        return f"the cancel grace period of {self.grace:g}s ran out"

    def why(self) -> str:
        """Why a wait was interrupted, for the record."""
        return self.stop_reason() if self.stage == "restoring" else f"cancelled by {self.name}"

    def check(self) -> None:
        """Raise :class:`CancelRequested` when a wait should stop now."""
        if self.interrupting():
            raise CancelRequested(self.why())

    async def sleep(self, clock: Clock, seconds: float) -> None:
        """``clock.sleep(seconds)``, interrupted (CancelRequested) when :meth:`interrupting`."""
        self.check()
        loop = asyncio.get_running_loop()
        sleeper = asyncio.ensure_future(clock.sleep(seconds))
        try:
            while not sleeper.done():
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.add(waiter)
                try:
                    await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self._waiters.discard(waiter)
                if not sleeper.done() and self.interrupting():
                    raise CancelRequested(self.why())
            sleeper.result()
        finally:
            if not sleeper.done():
                sleeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sleeper
        self.check()

    # ------------------------------------------------------------------ reporting

    def summary(self) -> str:
        """One line: what the request did (for the command line's last line)."""
        rec = self.record
        what = f"deployment {rec.deployment_id}" if rec is not None else "the command"
        head = f"cancelled by {self.name}"
        if self.outcome == "untouched":
            return f"{head} before {what} changed anything; nothing was changed"
        if self.outcome == "rolled-back":
            to = f" to stack version {rec.rolled_back_to}" if rec and rec.rolled_back_to is not None else ""
            return f"{head}: {what} rolled back{to}"
        if self.outcome == "left":
            step = _where(rec)
            cont, abort = self.commands.get("resume", ""), self.commands.get("abort", "")
            return f"{head}: {what} left as it is{step}; continue: {cont}; roll back: {abort}"
        if self.outcome in ("stopped", "failed"):
            finish = rec.recovery if rec is not None and rec.recovery else self.commands.get("abort", "")
            why = f" ({self.stop_reason()})" if self.outcome == "stopped" and self.forced else ""
            state = "NOT confirmed back" if rec is not None and rec.rollback_attempts else "NOT back"
            return f"{head}: {what} is {state} at its checkpoint{why}; to finish: {finish}"
        status = f" ({rec.status.value})" if rec is not None else ""
        return f"{self.name} received; {what} had finished what it was doing{status}"


def _where(record: DeploymentRecord | None) -> str:
    if record is None or not record.total_steps:
        return ""
    done = sum(1 for s in record.steps if s.outcome == "passed")
    return f" after {done} of {record.total_steps} steps"


# --------------------------------------------------------------------------- the seams


class Guarded(Protocol):
    """The part of :class:`rfs_deploy.drive.context.Seams` a cancellation is attached to (the
    seams module refers to :class:`Cancellation`, so this one does not refer back to it)."""

    clock: Clock
    cancellation: Cancellation | None
    backend: StackBackend
    command_prefix: str


class CancellableClock:
    """A clock whose ``sleep`` stops when the cancellation says so (see :func:`guard`)."""

    def __init__(self, inner: Clock, cancellation: Cancellation) -> None:
        self.inner = inner
        self.cancellation = cancellation

    def now(self) -> float:
        return self.inner.now()

    async def sleep(self, seconds: float) -> None:
        await self.cancellation.sleep(self.inner, seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.contextmanager
def guard(seams: Guarded, cancellation: Cancellation) -> Iterator[Cancellation]:
    """``seams`` with ``cancellation`` attached and its clock's waits interruptible, for the
    duration of one driver operation (both are put back afterwards)."""
    saved_clock, saved = seams.clock, seams.cancellation
    seams.cancellation = cancellation
    if not (isinstance(saved_clock, CancellableClock) and saved_clock.cancellation is cancellation):
        seams.clock = CancellableClock(saved_clock, cancellation)
    try:
        yield cancellation
    finally:
        seams.clock, seams.cancellation = saved_clock, saved


P = ParamSpec("P")
R = TypeVar("R")


def cancellable(
    method: Callable[Concatenate[Any, P], Awaitable[R]],
) -> Callable[Concatenate[Any, P], Awaitable[R]]:
    """For the driver's entry points (``self.seams`` holds the seams): run the operation with a
    :class:`Cancellation` attached (the seams' own, or a new one), refuse to start once one was
    requested, and shield the operation from asyncio cancellation of the caller.

    ``task.cancel()`` of the caller becomes a request: the operation stops at its next safe point
    and does what ``on_cancel`` says (default: restores the checkpoint), then the caller gets its
    CancelledError as asyncio expects. Nothing is ever cancelled in the middle of a stack update.
    """

    @functools.wraps(method)
    async def wrapper(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        seams: Guarded = self.seams
        cancellation = seams.cancellation or CURRENT.get() or Cancellation()
        if cancellation.requested:
            raise DeploymentCancelled(
                f"cancelled by {cancellation.name} before the operation started; nothing was changed",
                cancellation.exit_code,
            )
        with guard(seams, cancellation):
            task = asyncio.ensure_future(method(self, *args, **kwargs))
            caller_cancelled = False
            while True:
                try:
                    result = await asyncio.shield(task)
                    break
                except asyncio.CancelledError:
                    if task.done():
                        raise
                    caller_cancelled = True
                    cancellation.request(0)
                except CancelRequested as exc:
                    # a wait outside the plan's steps was interrupted (resume re-applying a step)
                    raise DeploymentCancelled(
                        f"{exc}; the deployment is still open: run "
                        f"`{seams.command_prefix} resume --stack {seams.backend.stack_name}` or "
                        f"`{seams.command_prefix} abort --stack {seams.backend.stack_name}`",
                        4,
                    ) from None
            if caller_cancelled:
                raise asyncio.CancelledError
            return result

    return wrapper
