"""Auto Scaling adapter (FleetControl): instance refresh and in-service capacity of a slot's fleet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from rfs_deploy.aws.session import AwsSession, aws_errors, error_code
from rfs_deploy.drive.protocols import RefreshStatus
from rfs_deploy.errors import AwsError

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

    def start_refresh(self, asg_name: str, preferences: Mapping[str, Any]) -> str:
        """Start a Rolling instance refresh; ``preferences`` is the API's ``Preferences`` structure
        (MinHealthyPercentage, InstanceWarmup, CheckpointPercentages, AutoRollback, ...). Returns its id.
        """
        with aws_errors(f"Auto Scaling StartInstanceRefresh {asg_name}"):
            answer = self._client.start_instance_refresh(
                AutoScalingGroupName=asg_name, Strategy="Rolling", Preferences=dict(preferences)
            )
        return str(answer["InstanceRefreshId"])

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

    def rollback_refresh(self, asg_name: str) -> None:
        """Roll the active refresh back to the launch template it started from.

        Raises AwsError when there is no active refresh or AWS cannot reverse it.
        """
        with aws_errors(f"Auto Scaling RollbackInstanceRefresh {asg_name}"):
            self._client.rollback_instance_refresh(AutoScalingGroupName=asg_name)

    def in_service(self, asg_name: str) -> int:
        """Instances of the group whose LifecycleState is InService."""
        with aws_errors(f"Auto Scaling DescribeAutoScalingGroups {asg_name}"):
            groups = self._client.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])[
                "AutoScalingGroups"
            ]
        if not groups:
            raise AwsError(f"Auto Scaling DescribeAutoScalingGroups failed: no group named {asg_name!r}")
        return sum(1 for inst in groups[0].get("Instances", []) if inst.get("LifecycleState") == "InService")
