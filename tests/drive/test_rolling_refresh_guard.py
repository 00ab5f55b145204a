"""A rolling release's instance refresh as AWS runs it around the driver's holds (issue 15, "Per
strategy"): a hold's cancel takes a while to end and AWS refuses to start a refresh until it has;
AWS's own guard of the refresh (its alarm specification) may roll it back during a shared incident,
and then the driver neither cancels that rollback nor starts the refresh again. On the fakes at the
FleetControl seam, with a refresh scripted as AWS answers."""

from __future__ import annotations

from drive_world import World
from test_strategy_low_traffic import ScriptedRefresh, outage_at_second_batch, rolling_world

from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.errors import AwsError
from rfs_deploy.readback import RefreshStatus

ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress")


class AwsRefresh(ScriptedRefresh):
    """The scripted refresh, with what AWS adds: a cancel is ``Cancelling`` for ``cancel_seconds``
    before it is ``Cancelled`` (the batch in flight finishes); StartInstanceRefresh fails while a
    refresh is active; with ``guard`` set, a firing alarm rolls an ``InProgress`` refresh back
    (``RollbackInProgress``), as the alarm specification the program gives it does."""

    def __init__(self, world: World, guard: bool = False, cancel_seconds: int = 90) -> None:
        super().__init__(world)
        self.guard = guard
        self.cancel_seconds = cancel_seconds
        self.cancelled_at: float | None = None
        self.refused = 0

    def _sync(self, asg: str) -> None:
        super()._sync(asg)
        ended = (
            self.cancelled_at is not None
            and self.world.clock.now() - self.cancelled_at >= self.cancel_seconds
        )
        if self.status == "Cancelling" and ended:
            self.status = "Cancelled"
        if self.guard and self.status == "InProgress" and self.world.alarms.firing_names:
            self.status = "RollbackInProgress"

    def latest_refresh(self, asg_name: str) -> RefreshStatus | None:
        status = super().latest_refresh(asg_name)
        if status is None or self.status != "RollbackInProgress":
            return status
        return RefreshStatus(status.refresh_id, self.status, 0, status.instances_to_update, "alarm in ALARM")

    def cancel_refresh(self, asg_name: str) -> None:
        self._sync(asg_name)
        self.calls.append(("cancel", asg_name))
        if self.status in ("InProgress", "RollbackInProgress"):  # AWS cancels a rollback too
            self.status, self.cancelled_at = "Cancelling", self.world.clock.now()

    def resume_refresh(self, asg_name: str) -> str:
        self._sync(asg_name)
        if self.status in ACTIVE:
            self.refused += 1
            raise AwsError(
                f"Auto Scaling StartInstanceRefresh {asg_name} failed: InstanceRefreshInProgress: "
                "an instance refresh is already in progress"
            )
        return super().resume_refresh(asg_name)


def aws_world(guard: bool = False, cancel_seconds: int = 90) -> tuple[World, AwsRefresh]:
    world, _ = rolling_world(rpm=1000)
    fleet = AwsRefresh(world, guard=guard, cancel_seconds=cancel_seconds)
    world.fleet = fleet  # type: ignore[assignment]
    return world, fleet


def test_a_refresh_held_through_a_shared_incident_starts_again_only_once_its_cancel_ended() -> None:
    # the cancel takes longer than the incident: the driver waits for Cancelled, never asks early
    world, fleet = aws_world(cancel_seconds=200)
    outage = outage_at_second_batch(world, fleet, minutes=1)
    record = world.deploy("rolling")

    assert outage, "the outage never started"
    assert record.status is DeploymentStatus.COMPLETED, record.errors
    assert any("shared incident" in v.reason for v in record.verdicts)
    assert fleet.refused == 0, "StartInstanceRefresh was called while the cancel was under way"
    assert [c for c, _ in fleet.calls].count("resume") == 1
    assert fleet.replaced == fleet.instances


def test_aws_rolling_the_refresh_back_in_a_shared_incident_ends_the_step_without_a_hold() -> None:
    # the refresh's own alarm guard rolls it back in the incident: that is AWS's decision, which
    # the driver reports; it neither cancels the rollback (a hold) nor starts the refresh again
    world, fleet = aws_world(guard=True)
    outage = outage_at_second_batch(world, fleet)
    record = world.deploy("rolling")

    assert outage, "the outage never started"
    assert record.status is DeploymentStatus.ROLLED_BACK
    assert any("AWS rolled the instance refresh back (RollbackInProgress)" in e for e in record.errors), (
        record.errors
    )
    assert any("during a shared incident" in e for e in record.errors), record.errors
    assert fleet.calls == [], "the driver cancelled or restarted AWS's rollback"
    assert world.release() == world.start
