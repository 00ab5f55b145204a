"""The fault table: one injected fault per row, in a fresh sandbox session, and what the driver did.

Every row runs the production stack's ``api-service`` from v1.0.0 to v2.0.0 through the real
driver over the sandbox (moto, the production AWS adapters, the Pulumi program under the mock
runtime), injects one fault, and reports: what was injected, what the driver did (from the
deployment record), the end state of config and reality (:mod:`endstate`) and the exit code the
CLI gives that outcome. Faults come from the sandbox's own knobs: ``fail_next_updates`` on the
stack backend, scenario files (flaky CloudWatch, never-healthy targets, ELBv2 propagation lag)
and alarm states set in (simulated) CloudWatch.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import endstate  # noqa: E402

from rfs_deploy.cli import exit_code as record_exit_code  # noqa: E402
from rfs_deploy.drive import events  # noqa: E402
from rfs_deploy.drive.records import DeploymentRecord  # noqa: E402

STACK, SERVICE, VERSION = endstate.STACK, endstate.SERVICE, "v2.0.0"


@dataclass
class FaultRow:
    """One line of the fault table."""

    name: str
    injected: str
    did: str = ""
    end_state: str = ""
    exit_code: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@contextmanager
def state_dir() -> Iterator[Path]:
    """A private RFS_DEPLOY_STATE for one row (restored afterwards)."""
    saved = os.environ.get("RFS_DEPLOY_STATE")
    with tempfile.TemporaryDirectory(prefix="rfs-fault-") as tmp:
        os.environ["RFS_DEPLOY_STATE"] = tmp
        try:
            yield Path(tmp)
        finally:
            if saved is None:
                os.environ.pop("RFS_DEPLOY_STATE", None)
            else:
                os.environ["RFS_DEPLOY_STATE"] = saved


def scenario_file(root: Path, name: str, text: str) -> str:
    path = root / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def deploy(
    scenario: str | None,
    strategy: str = "blue-green",
    arm: Callable[[Any, Any], None] | None = None,
) -> tuple[DeploymentRecord | None, int, str, Any]:
    """A fresh session, ``arm(seams, event)`` called for every event, one deployment.

    Returns (record or None, exit code, error line or "", the closed seams)."""
    from rfs_deploy.connect import open_seams
    from rfs_deploy.drive.driver import Driver
    from rfs_deploy.errors import RfsDeployError

    seams = open_seams(STACK, backend="sim", scenario=scenario, fresh=True)
    if arm is not None:
        seams.listeners.append(lambda event: arm(seams, event))
    try:
        record = asyncio.run(Driver(seams).deploy(SERVICE, VERSION, strategy))
        return record, record_exit_code(record), "", seams
    except RfsDeployError as exc:
        return None, exc.exit_code, str(exc), seams
    finally:
        seams.close()


def summarize(record: DeploymentRecord) -> str:
    failed = [s for s in record.steps if s.outcome == "failed"]
    parts = [record.status.value]
    if failed:
        parts.append(f"step {failed[0].index + 1} ({failed[0].kind}) failed: {failed[0].reason[:90]}")
    if record.rollback_attempts:
        parts.append(f"{record.rollback_attempts} rollback attempt(s)")
    if record.rolled_back_to is not None:
        parts.append(f"restored stack version {record.rolled_back_to}")
    return "; ".join(parts)


def end_state(root: Path, strategy: str = "blue-green") -> str:
    """promoted / rolled-back / mixed (with the reason), from config and reality."""
    import crashkit

    seen = endstate.inspect_session(root)
    state, detail = endstate.classify(seen, *crashkit.expectations(strategy))
    return f"{state} ({detail})" if detail else state


def history_length(root: Path) -> int:
    return len(endstate.history_entries(root))


# --------------------------------------------------------------------------- rows


def update_fails_mid_step() -> FaultRow:
    row = FaultRow("update-fails", "the stack update of step 5 (switch traffic) fails after applying")

    def arm(seams: Any, event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.index == 4:
            seams.backend.fail_next_updates(1, after_apply=True, message="provider error (injected)")

    with state_dir() as root:
        record, row.exit_code, error, _ = deploy(None, arm=arm)
        assert record is not None, error
        row.did = summarize(record)
        row.end_state = end_state(root)
    return row


def _rollback_fails(times: int) -> FaultRow:
    label = "once" if times == 1 else "every time"
    name = f"rollback-fails-{label.replace(' ', '-')}"
    row = FaultRow(name, f"error-spike; the rollback update fails {label}")

    def arm(seams: Any, event: Any) -> None:
        if isinstance(event, events.RollbackStarted):
            seams.backend.fail_next_updates(times, message="rollback update failed (injected)")

    with state_dir() as root:
        record, row.exit_code, error, _ = deploy("error-spike", arm=arm)
        assert record is not None, error
        row.did = summarize(record)
        row.details["recovery"] = record.recovery
        if record.recovery:
            row.did += f"; prints: {record.recovery}"
            row.details["state_before_recovery"] = end_state(root)
            row.details["recovery_exit"] = run_cli(record.recovery)
        row.end_state = end_state(root)
    return row


def rollback_fails_once() -> FaultRow:
    return _rollback_fails(1)


def rollback_fails_always() -> FaultRow:
    return _rollback_fails(99)


def run_cli(command: str) -> int:
    """Run a printed ``rfs-deploy ...`` command in this process (sandbox backend)."""
    from rfs_deploy.cli import main

    argv = shlex.split(command)
    assert argv[0] == "rfs-deploy", command
    try:
        return main(["--backend", "sim", "--quiet", *argv[1:]])
    except SystemExit as exc:
        return int(exc.code or 0)


def scenario_row(name: str, injected: str, scenario_text: str, strategy: str = "blue-green") -> FaultRow:
    row = FaultRow(name, injected)
    with state_dir() as root:
        path = scenario_file(root, name, scenario_text) if "\n" in scenario_text else scenario_text
        record, row.exit_code, error, _ = deploy(path, strategy)
        assert record is not None, error
        row.did = summarize(record)
        changes = [s for s in record.steps if s.kind in ("set-weight", "promote")]
        if changes:
            row.details["change_step_seconds"] = [round((s.ended_at or 0) - s.started_at) for s in changes]
        row.details["fetch_problems"] = sum(
            1 for v in record.verdicts if "unavailable" in v.reason or "no data" in v.reason
        )
        row.details["windows"] = len(record.verdicts)
        row.end_state = end_state(root, strategy)
    return row


def flaky_metrics() -> FaultRow:
    return scenario_row(
        "flaky-metrics",
        "CloudWatch: 10% of GetMetricData throttled, 15% datapoints missing, 15% late",
        "flaky-metrics",
        "canary",
    )


def cloudwatch_down() -> FaultRow:
    return scenario_row(
        "cloudwatch-down",
        "CloudWatch: every GetMetricData throttled",
        "seed: 3\nmetrics: {throttled: 1.0}\n",
    )


def never_healthy() -> FaultRow:
    return scenario_row("never-healthy", "the new slot never passes a health check", "never-healthy")


def propagation_lag(seconds: int) -> FaultRow:
    return scenario_row(
        f"listener-lag-{seconds}",
        f"ELBv2 shows listener changes {seconds}s late (loadBalancer.propagationDelay)",
        f"seed: 1\nloadBalancer: {{propagationDelay: {seconds}}}\n",
    )


def alarm_already_firing() -> FaultRow:
    """An alarm of the live slot in ALARM before the deployment: refused, nothing changed."""
    import boto3

    from rfs_deploy.connect import open_seams
    from rfs_deploy.drive.driver import Driver
    from rfs_deploy.errors import RfsDeployError
    from rfs_deploy.outputs import parse_outputs

    row = FaultRow("alarm-firing", "the live slot's 5xx alarm is in ALARM before the deployment")
    with state_dir() as root:
        seams = open_seams(STACK, backend="sim", fresh=True)
        try:
            alarm = parse_outputs(seams.backend.outputs(), SERVICE).slot("blue").alarm_names[0]
            boto3.client("cloudwatch", region_name="us-east-1").set_alarm_state(
                AlarmName=alarm, StateValue="ALARM", StateReason="injected"
            )
            before = len(seams.backend.history())
            try:
                asyncio.run(Driver(seams).deploy(SERVICE, VERSION, "blue-green"))
                row.did = "deployment ran"
            except RfsDeployError as exc:
                row.exit_code = exc.exit_code
                row.did = f"refused ({type(exc).__name__}): {exc}"
            row.details["updates_run"] = len(seams.backend.history()) - before
        finally:
            seams.close()
        row.end_state = end_state(root)
    return row


ROWS: dict[str, Callable[[], FaultRow]] = {
    "update-fails": update_fails_mid_step,
    "rollback-fails-once": rollback_fails_once,
    "rollback-fails-every-time": rollback_fails_always,
    "flaky-metrics": flaky_metrics,
    "cloudwatch-down": cloudwatch_down,
    "never-healthy": never_healthy,
    "listener-lag-45": lambda: propagation_lag(45),
    "listener-lag-200": lambda: propagation_lag(200),
    "alarm-firing": alarm_already_firing,
}
