"""The progress display: heartbeat lines, the wall-clock watchdog, a closed stream."""

from __future__ import annotations

import io
import time

from rfs_deploy.cli.progress import ProgressPrinter
from rfs_deploy.drive import events

STARTED = events.StepStarted(
    at=1000.0, deployment_id="d", index=4, total=9, kind="pause", description="wait 300s (switch delay)"
)


def test_a_heartbeat_is_one_line_with_the_wait_so_far() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, color=False)
    printer(STARTED)
    printer(
        events.Heartbeat(at=1090.0, deployment_id="d", step=4, label="switch delay", waited=90, total=300)
    )
    printer(events.Heartbeat(at=1120.0, deployment_id="d", step=4, label="step 2/9: wait", waited=120))
    assert stream.getvalue().splitlines() == [
        "[      0s] step 5/9: wait 300s (switch delay)",
        "[     90s]   … waiting: switch delay, 90s of 300s",
        "[    120s]   … waiting: step 2/9: wait, 120s",
    ]


def test_the_watchdog_speaks_after_silence_and_stops_with_the_deployment() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, color=False, watchdog=0.2)
    try:
        printer(STARTED)
        time.sleep(0.8)
        said = stream.getvalue().splitlines()
        assert len(said) >= 2, said
        assert all(
            "… still working (step 5/9: wait 300s (switch delay)), " in line
            and "s since the last line" in line
            for line in said[1:]
        )
        printer(events.DeploymentFinished(at=1100.0, deployment_id="d", status="COMPLETED", reason="ok"))
        settled = len(stream.getvalue().splitlines())
        time.sleep(0.6)
        assert len(stream.getvalue().splitlines()) == settled
    finally:
        printer.close()


def test_the_watchdog_keeps_the_stamps_in_order_on_a_fast_clock() -> None:
    # The sandbox's clock is not the wall clock: the next event may come at the same virtual
    # moment after a wall-clock silence the watchdog spoke in; its stamp must not go back.
    stream = io.StringIO()
    printer = ProgressPrinter(stream, color=False, watchdog=0.2)
    try:
        printer(STARTED)
        time.sleep(1.5)
        printer(events.Note(at=STARTED.at, deployment_id="d", message="next"))
        stamps = [int(line[1:8]) for line in stream.getvalue().splitlines()]
        assert len(stamps) >= 3 and stamps == sorted(stamps), stream.getvalue()
    finally:
        printer.close()


def test_the_watchdog_is_off_by_default_and_quiet_while_lines_flow() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, color=False, watchdog=0.5)
    try:
        printer(STARTED)
        for i in range(6):
            time.sleep(0.1)
            printer(events.Note(at=1000.0 + i, deployment_id="d", message=f"note {i}"))
        assert "still working" not in stream.getvalue()
    finally:
        printer.close()
    quiet = io.StringIO()
    ProgressPrinter(quiet, color=False)(STARTED)
    time.sleep(0.3)
    assert len(quiet.getvalue().splitlines()) == 1


def test_a_closed_stream_stops_the_display_not_the_caller() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, color=False, watchdog=0.1)
    stream.close()
    printer(STARTED)  # no exception: a deployment must not die because its log reader went away
    printer(events.Note(at=1001.0, deployment_id="d", message="still here"))
    time.sleep(0.3)
    printer.close()
