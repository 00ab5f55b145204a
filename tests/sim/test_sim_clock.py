"""VirtualClock: sleeps advance time at once, listeners see slices no longer than a metric period."""

from __future__ import annotations

import asyncio
import time

import pytest

from rfs_deploy.drive.protocols import Clock
from rfs_deploy.sim.clock import VirtualClock


def test_is_a_clock() -> None:
    clock: Clock = VirtualClock(60.0)  # mypy checks the protocol
    assert clock.now() == 60.0


def test_sleep_advances_without_waiting() -> None:
    clock = VirtualClock(1_000.0)
    began = time.monotonic()
    asyncio.run(clock.sleep(10 * 60))
    assert clock.now() == 1_600.0
    assert time.monotonic() - began < 1.0


def test_listeners_get_slices_aligned_to_the_step() -> None:
    clock = VirtualClock(30.0, step=60.0)
    slices: list[tuple[float, float]] = []
    clock.subscribe(lambda a, b: slices.append((a, b)))
    clock.advance(150.0)
    assert slices == [(30.0, 60.0), (60.0, 120.0), (120.0, 180.0)]


def test_unsubscribe_stops_ticks() -> None:
    clock = VirtualClock(0.0)
    seen: list[float] = []
    stop = clock.subscribe(lambda _a, b: seen.append(b))
    clock.advance(60)
    stop()
    clock.advance(60)
    assert seen == [60.0]


def test_time_never_goes_back() -> None:
    clock = VirtualClock(100.0)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(50.0)
    clock.set(500.0)
    assert clock.now() == 500.0


def test_default_start_is_now_rounded_to_the_minute() -> None:
    start = VirtualClock().now()
    assert start % 60 == 0
    assert abs(start - time.time()) < 120


def test_the_tests_manual_clock_is_this_clock_keeping_still_between_sleeps() -> None:
    """rfs_deploy.testing.ManualClock is a VirtualClock: one slice per sleep, listeners told the
    new time, a negative sleep is none (the fakes' semantics), ``slept`` counted the same way."""
    from rfs_deploy.testing import ManualClock

    clock = ManualClock()
    assert isinstance(clock, VirtualClock) and clock.now() == 1_700_000_000.0
    seen: list[float] = []
    slices: list[tuple[float, float]] = []
    clock.listeners.append(seen.append)
    clock.subscribe(lambda start, end: slices.append((start, end)))
    asyncio.run(clock.sleep(150))
    asyncio.run(clock.sleep(-5))
    assert seen == [1_700_000_150.0, 1_700_000_150.0]
    assert slices == [(1_700_000_000.0, 1_700_000_150.0)]
    assert clock.slept == 150.0
