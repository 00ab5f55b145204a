"""The sandbox's CancelInstanceRefresh as AWS answers it: a rollback in progress (the refresh's
alarm guard's) is cancelled like a refresh, ``Cancelling`` until its batch in flight finishes, and
StartInstanceRefresh is refused until the cancel has ended."""

from __future__ import annotations

import pytest
from test_sim_world import Open, release_step, sleep

from rfs_deploy.config import Rolling
from rfs_deploy.drive.steps import RollRefresh
from rfs_deploy.readback import RefreshStatus
from rfs_deploy.sim.refresh import RefreshError


def test_a_rollback_in_progress_is_cancelled_and_a_start_waits_for_the_cancel(open_sandbox: Open) -> None:
    box = open_sandbox("error-spike")
    asg = box.topology()["api-service"].slot("blue").asg_name
    release_step(box, RollRefresh("v2.0.0", rolling=Rolling()), "roll to v2")
    status: RefreshStatus | None = None
    for _ in range(80):
        status = box.adapters.fleet.latest_refresh(asg)
        assert status is not None and not status.done, status
        if status.status == "RollbackInProgress":
            break
        sleep(box, 30)
    assert status is not None and status.status == "RollbackInProgress"

    box.adapters.fleet.cancel_refresh(asg)
    cancelling = box.adapters.fleet.latest_refresh(asg)
    assert cancelling is not None and cancelling.refresh_id == status.refresh_id
    assert cancelling.status in ("Cancelling", "Cancelled")
    for _ in range(40):
        cancelling = box.adapters.fleet.latest_refresh(asg)
        assert cancelling is not None
        if cancelling.status != "Cancelling":
            break
        with pytest.raises(RefreshError, match="in progress") as info:
            box.world.refreshes.start(asg, {}, box.clock.now())
        assert info.value.code == "InstanceRefreshInProgress"
        sleep(box, 30)
    assert cancelling.status == "Cancelled", cancelling
    assert box.adapters.fleet.resume_refresh(asg) != status.refresh_id
