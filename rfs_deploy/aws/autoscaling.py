"""Auto Scaling adapter (FleetControl): a slot's latest instance refresh, and cancelling it.

The program's ``instanceRefresh`` block starts refreshes during ``pulumi up``; the driver only
watches them and, when it rolls back, cancels one still rolling the bad version out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from rfs_deploy.aws.session import AwsSession, aws_errors, error_code
from rfs_deploy.readback import RefreshStatus

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
