"""Virtual time for the sandbox: ``sleep`` advances the clock at once and lets the world tick.

The driver only ever waits through :class:`~rfs_deploy.drive.protocols.Clock`, so a ten-step
canary with one-minute intervals takes ten virtual minutes and a fraction of a second of wall
time. Listeners (the sandbox's physics) are told about every slice of elapsed time, never more
than ``step`` seconds at once, so a long sleep still produces one metric datapoint per period.

Pacing (a sandbox knob for tests and demos): ``RFS_DEPLOY_SIM_PACE=SECONDS`` makes every virtual
second of a sleep also take that many wall-clock seconds (``0.005``: a one-minute bake takes
0.3 s), slice by slice, so a signal sent to a running ``rfs-deploy --backend sim`` process lands
in the middle of a wait, as it would against AWS. Unset or 0: no wall-clock time at all.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable

from rfs_deploy.errors import InvalidInput

#: A listener receives the start and end (seconds since the epoch) of each elapsed slice.
TickListener = Callable[[float, float], None]

#: CloudWatch's ALB metric period; the physics ticks at most this far at once.
DEFAULT_STEP = 60.0
#: Wall-clock seconds per virtual second of sleep (see the module docstring).
PACE_ENV = "RFS_DEPLOY_SIM_PACE"


def pace_from_env() -> float:
    """``RFS_DEPLOY_SIM_PACE`` as a number (0 when unset); InvalidInput names a bad value."""
    text = os.environ.get(PACE_ENV, "").strip()
    if not text:
        return 0.0
    try:
        pace = float(text)
    except ValueError:
        pace = float("nan")
    if not 0 <= pace <= 10:
        raise InvalidInput(
            f"{PACE_ENV} must be wall-clock seconds per virtual second (0 to 10), not {text!r}"
        )
    return pace


class VirtualClock:
    """A :class:`~rfs_deploy.drive.protocols.Clock` whose time moves only when asked.

    ``start`` defaults to the current wall time rounded down to the minute, so timestamps look
    real in reports; pass a fixed value for reproducible runs. The tests' and the fakes'
    :class:`rfs_deploy.testing.ManualClock` is this clock too.
    """

    def __init__(
        self, start: float | None = None, step: float = DEFAULT_STEP, pace: float | None = None
    ) -> None:
        if step <= 0:
            raise ValueError("step must be positive")
        #: Wall-clock seconds per virtual second slept (None: from ``RFS_DEPLOY_SIM_PACE``).
        self.pace = pace_from_env() if pace is None else float(pace)
        self._now = float(start) if start is not None else math.floor(time.time() / 60.0) * 60.0
        self._step = float(step)
        self._listeners: list[TickListener] = []
        #: Virtual seconds slept (advanced) so far.
        self.slept = 0.0

    @property
    def step(self) -> float:
        """Longest slice of time a listener is told about at once."""
        return self._step

    def now(self) -> float:
        """Virtual seconds since the epoch."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Advance virtual time by ``seconds`` (the world ticks meanwhile), then yield once; with
        a pace, slice by slice, each slice followed by its share of wall-clock time."""
        if self.pace <= 0:
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        if seconds < 0 or math.isnan(seconds):
            raise ValueError(f"cannot sleep a negative or NaN time ({seconds})")
        remaining = float(seconds)
        while True:
            chunk = min(remaining, self._step)
            self.advance(chunk)
            remaining -= chunk
            await asyncio.sleep(chunk * self.pace)
            if remaining <= 0:
                return

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` in slices of at most ``step``, ticking listeners.

        Slices end on multiples of ``step`` where possible, so the physics sees whole metric
        periods even when the driver sleeps odd amounts (30 s, 45 s, ...).
        """
        if seconds < 0 or math.isnan(seconds):
            raise ValueError(f"cannot sleep a negative or NaN time ({seconds})")
        end = self._now + seconds
        self.slept += seconds
        while self._now < end:
            boundary = (math.floor(self._now / self._step) + 1) * self._step
            stop = min(end, boundary)
            start, self._now = self._now, stop
            for listener in list(self._listeners):
                listener(start, stop)

    def set(self, now: float) -> None:
        """Jump to ``now`` without ticking (restoring a saved session); time never goes back."""
        if now < self._now:
            raise ValueError("a virtual clock never goes back")
        self._now = float(now)

    def subscribe(self, listener: TickListener) -> Callable[[], None]:
        """Call ``listener(start, end)`` for every elapsed slice; returns an unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe
