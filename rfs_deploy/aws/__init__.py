"""Production implementations of the driver's AWS seams, over boto3.

    AwsSession          clients with one region, credentials and botocore standard retries
    CloudWatchAlarms    AlarmReader     (DescribeAlarms)
    Elbv2Traffic        TrafficReader   (DescribeListeners / DescribeRules / DescribeTargetHealth)
    AutoScalingFleet    FleetControl    (the latest instance refresh, cancelling it)
    Ec2Images           ImageFinder     (DescribeImages: a release's AMI by tag)

:func:`connect` builds them over one session. The CloudWatch *metrics* provider lives with the
other providers (:class:`rfs_deploy.metrics.cloudwatch.CloudWatchProvider`, built over the same
session). botocore errors never leave this package: :func:`~rfs_deploy.aws.session.aws_errors`
turns them into AwsError / MissingCredentials.
"""

from __future__ import annotations

from dataclasses import dataclass

from rfs_deploy.aws.alarms import CloudWatchAlarms
from rfs_deploy.aws.autoscaling import AutoScalingFleet
from rfs_deploy.aws.elbv2 import Elbv2Traffic
from rfs_deploy.aws.images import Ec2Images
from rfs_deploy.aws.session import DEFAULT_MAX_ATTEMPTS, AwsSession, aws_errors


@dataclass(frozen=True)
class AwsAdapters:
    """The AWS seams the runner needs, sharing one session."""

    session: AwsSession
    alarms: CloudWatchAlarms
    traffic: Elbv2Traffic
    fleet: AutoScalingFleet
    images: Ec2Images

    @classmethod
    def from_session(cls, session: AwsSession) -> AwsAdapters:
        """Adapters over ``session``'s clients (raises MissingCredentials when there are none)."""
        return cls(
            session=session,
            alarms=CloudWatchAlarms.from_session(session),
            traffic=Elbv2Traffic.from_session(session),
            fleet=AutoScalingFleet.from_session(session),
            images=Ec2Images.from_session(session),
        )


def connect(
    region: str | None = None,
    *,
    profile: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    endpoint_url: str | None = None,
) -> AwsAdapters:
    """A new :class:`AwsSession` and the adapters over it (see AwsSession for the arguments)."""
    session = AwsSession(region, profile=profile, max_attempts=max_attempts, endpoint_url=endpoint_url)
    return AwsAdapters.from_session(session)


__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "AutoScalingFleet",
    "AwsAdapters",
    "AwsSession",
    "CloudWatchAlarms",
    "Ec2Images",
    "Elbv2Traffic",
    "aws_errors",
    "connect",
]
