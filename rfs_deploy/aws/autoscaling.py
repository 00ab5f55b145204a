"""Auto Scaling adapter (FleetControl): a slot's latest instance refresh, cancelling it, and
starting it again; a group's desired capacity (the size a release of an autoscaled service starts
from, docs/sizing.md).

The program's ``instanceRefresh`` block starts refreshes during ``pulumi up``; the driver watches
them, cancels one still rolling the bad version out when it rolls back, and holds a rolling
release at a checkpoint by cancelling its refresh and starting it again (AWS has no call that
pauses a refresh or ends a checkpoint's wait early).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from rfs_deploy.aws.session import AwsSession, aws_errors, error_code
from rfs_deploy.readback import RefreshStatus

#: The preferences a resumed refresh keeps from the one it continues (its batches and pauses).
RESUMED_PREFERENCES = (
    "MinHealthyPercentage",
    "MaxHealthyPercentage",
    "InstanceWarmup",
    "CheckpointPercentages",
    "CheckpointDelay",
)

#: AWS's answer when a group has no refresh to cancel or roll back.
NO_ACTIVE_REFRESH = "ActiveInstanceRefreshNotFound"


def refresh_status(refresh: Mapping[str, Any]) -> RefreshStatus:
    """A RefreshStatus from one ``InstanceRefreshes`` entry of DescribeInstanceRefreshes."""
    return RefreshStatus(
        refresh_id=refresh["InstanceRefreshId"],
        status=refresh["Status"],
        percentage_complete=int(refresh.get("PercentageComplete") or 0),
        instances_to_update=int(refresh.get("InstancesToUpdate") or 0),
        status_reason=refresh.get("StatusReason") or "",
    )


class AutoScalingFleet:
    """FleetControl over the Auto Scaling API."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def from_session(cls, session: AwsSession) -> AutoScalingFleet:
        """An adapter over the session's ``autoscaling`` client."""
        return cls(session.client("autoscaling"))

    def desired_capacity(self, asg_name: str) -> int | None:
        """The group's desired capacity (DescribeAutoScalingGroups), None when AWS has no such group."""
        with aws_errors(f"Auto Scaling DescribeAutoScalingGroups {asg_name}"):
            answer = self._client.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])
        groups = answer.get("AutoScalingGroups", [])
        return int(groups[0]["DesiredCapacity"]) if groups else None

    def latest_refresh(self, asg_name: str) -> RefreshStatus | None:
        """The group's most recent instance refresh (AWS lists them newest first), None if none."""
        with aws_errors(f"Auto Scaling DescribeInstanceRefreshes {asg_name}"):
            answer = self._client.describe_instance_refreshes(AutoScalingGroupName=asg_name, MaxRecords=1)
        refreshes = answer.get("InstanceRefreshes", [])
        return refresh_status(refreshes[0]) if refreshes else None

    def cancel_refresh(self, asg_name: str) -> None:
        """Cancel the group's active refresh; instances already replaced stay.

        Idempotent: when no refresh is active (already finished or cancelled) this does nothing,
        so a resumed driver can repeat it safely.
        """
        with aws_errors(f"Auto Scaling CancelInstanceRefresh {asg_name}"):
            try:
                self._client.cancel_instance_refresh(AutoScalingGroupName=asg_name)
            except ClientError as exc:
                if error_code(exc) != NO_ACTIVE_REFRESH:
                    raise

    def resume_refresh(self, asg_name: str) -> str:
        """Start the group's refresh again after it was cancelled: ``SkipMatching`` replaces only
        the instances not yet on the group's launch template, with the latest refresh's batch
        preferences; no alarm specification or auto rollback (a refresh started without a
        desired configuration would roll back to the template it already runs)."""
        with aws_errors(f"Auto Scaling StartInstanceRefresh {asg_name}"):
            answer = self._client.describe_instance_refreshes(AutoScalingGroupName=asg_name, MaxRecords=1)
            latest = (answer.get("InstanceRefreshes") or [{}])[0].get("Preferences") or {}
            preferences = {k: latest[k] for k in RESUMED_PREFERENCES if latest.get(k) is not None}
            preferences["SkipMatching"] = True
            started = self._client.start_instance_refresh(
                AutoScalingGroupName=asg_name, Strategy="Rolling", Preferences=preferences
            )
        return str(started["InstanceRefreshId"])
