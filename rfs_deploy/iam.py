"""The least-privilege IAM policy of the driver, and what ``pulumi up`` needs on top.

The driver itself only *reads* AWS, plus two writes on its services' instance refreshes:
cancelling one and starting it again. Every action below is one that an adapter in
:mod:`rfs_deploy.aws` (or the CloudWatch metrics provider, :mod:`rfs_deploy.metrics.cloudwatch`)
calls on the driver's behalf (the reliability tests record each API call of full sandbox
deployments of every strategy and check this list against them, both ways):

=================================  =============================  ===============================
action                             called by                      resource scoping
=================================  =============================  ===============================
cloudwatch:GetMetricData           CloudWatchProvider (each       none possible (``*``)
                                   tick)
cloudwatch:DescribeAlarms          CloudWatchAlarms               the services' alarms by name
elasticloadbalancing:Describe...   Elbv2Traffic: listeners,       none possible: ELBv2 Describe*
  Listeners / Rules / TargetHealth rules, target health           actions take only ``*``
autoscaling:DescribeInstance-      AutoScalingFleet.latest_       none possible (``*``)
  Refreshes                        refresh
autoscaling:CancelInstanceRefresh  AutoScalingFleet.cancel_       the services' Auto Scaling
                                   refresh (a rollback; a         groups by name
                                   rolling release's hold)
autoscaling:StartInstanceRefresh   AutoScalingFleet.resume_       the services' Auto Scaling
                                   refresh (a held rolling        groups by name
                                   release goes on)
ec2:DescribeImages                 Ec2Images.find (only for a     none possible (``*``)
                                   service with lookupTag)
autoscaling:DescribeAutoScaling-   AutoScalingFleet.desired_      none possible (``*``)
  Groups                           capacity (only for a service
                                   with autoscaling)
=================================  =============================  ===============================

The program's ``instanceRefresh`` block starts a release's refresh during ``pulumi up``; the
driver only holds a rolling release's refresh at a checkpoint while its windows cannot decide
(cancelled: the replaced instances stay) and starts it again once one passes, and cancels a
refresh still rolling the bad version out when it rolls back. RollbackInstanceRefresh is not
granted: AWS's own guard rolls a refresh back, never the driver. Resource names follow the
program's Pulumi auto-naming: ``<service>-asg-<slot>-<suffix>`` for groups and
``<service>-<kind>-<slot>-<suffix>`` for alarms.

``pulumi up`` (run by the driver through the Automation API) creates and changes the program's
resources; :func:`pulumi_actions` lists what the AWS provider needs for them, by resource type.
Give those to the principal Pulumi's AWS provider uses — ideally a separate role assumed through
the stack's ``aws:assumeRoles`` config — rather than widening the driver's policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: botocore service name -> IAM action prefix (CloudWatch signs as "monitoring", ELBv2 as
#: "elasticloadbalancing"; IAM knows them as below).
IAM_PREFIX = {
    "cloudwatch": "cloudwatch",
    "elbv2": "elasticloadbalancing",
    "autoscaling": "autoscaling",
    "ec2": "ec2",
}

READ_METRICS = ("cloudwatch:GetMetricData",)
READ_ALARMS = ("cloudwatch:DescribeAlarms",)
READ_LOAD_BALANCER = (
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetHealth",
)
READ_REFRESHES = ("autoscaling:DescribeInstanceRefreshes",)
#: Hold a rolling release's refresh (cancel it, start it again); cancel a bad one on rollback.
CONTROL_REFRESH = ("autoscaling:CancelInstanceRefresh", "autoscaling:StartInstanceRefresh")
#: Only when a service finds its AMIs by tag (``artifact.lookupTag``).
FIND_IMAGES = ("ec2:DescribeImages",)
#: Only when a service has ``autoscaling``: a release starts from the live group's size.
READ_GROUPS = ("autoscaling:DescribeAutoScalingGroups",)

#: Every action the driver needs.
DRIVER_ACTIONS: tuple[str, ...] = (
    *READ_METRICS,
    *READ_ALARMS,
    *READ_LOAD_BALANCER,
    *READ_REFRESHES,
    *CONTROL_REFRESH,
)


def action_name(service_name: str, operation: str) -> str:
    """The IAM action of one API call, e.g. ``("elbv2", "DescribeRules")`` ->
    ``elasticloadbalancing:DescribeRules``."""
    return f"{IAM_PREFIX.get(service_name, service_name)}:{operation}"


def driver_policy(
    services: Iterable[str] | None = None,
    region: str = "*",
    account: str = "*",
    image_lookup: bool = False,
    autoscaling: bool = False,
) -> dict[str, Any]:
    """The driver's IAM policy document; ``services`` scopes alarms and groups by name prefix
    (None: any name), ``region``/``account`` fill the ARNs; ``image_lookup`` adds
    DescribeImages, for services that find their AMIs by tag; ``autoscaling`` adds
    DescribeAutoScalingGroups, for services whose fleets scale themselves."""
    names = sorted(set(services)) if services is not None else ["*"]

    def arns(template: str) -> list[str] | str:
        found = [template.format(region=region, account=account, service=n) for n in names]
        return found[0] if len(found) == 1 else found

    alarm = "arn:aws:cloudwatch:{region}:{account}:alarm:{service}-*"
    group = "arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{service}-asg-*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            _statement("ReadMetrics", READ_METRICS, "*"),
            _statement("ReadServiceAlarms", READ_ALARMS, arns(alarm)),
            _statement("ReadLoadBalancer", READ_LOAD_BALANCER, "*"),
            _statement("ReadInstanceRefreshes", READ_REFRESHES, "*"),
            _statement("ControlInstanceRefresh", CONTROL_REFRESH, arns(group)),
            *([_statement("FindReleaseImages", FIND_IMAGES, "*")] if image_lookup else []),
            *([_statement("ReadFleetSizes", READ_GROUPS, "*")] if autoscaling else []),
        ],
    }


def _statement(sid: str, actions: Iterable[str], resource: list[str] | str) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resource}


def policy_actions(policy: dict[str, Any]) -> set[str]:
    """Every action a policy document allows."""
    found: set[str] = set()
    for statement in policy["Statement"]:
        actions = statement["Action"]
        found.update([actions] if isinstance(actions, str) else actions)
    return found


#: What the AWS provider calls for each resource type of the program during ``pulumi up``
#: (create, read, update, delete, tags). Indicative: the provider's exact calls change between
#: versions; confirm against CloudTrail or IAM Access Analyzer's policy generation.
PULUMI_ACTIONS: dict[str, tuple[str, ...]] = {
    "aws:ec2/securityGroup:SecurityGroup": (
        "ec2:CreateSecurityGroup",
        "ec2:DeleteSecurityGroup",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSecurityGroupRules",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:DescribeNetworkInterfaces",
        "ec2:CreateTags",
        "ec2:DeleteTags",
    ),
    "aws:lb/loadBalancer:LoadBalancer": (
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:SetSecurityGroups",
        "elasticloadbalancing:SetSubnets",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:RemoveTags",
        "elasticloadbalancing:DescribeTags",
    ),
    "aws:lb/targetGroup:TargetGroup": (
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
    ),
    "aws:lb/listener:Listener": (
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeListenerAttributes",
    ),
    "aws:lb/listenerRule:ListenerRule": (
        "elasticloadbalancing:CreateRule",
        "elasticloadbalancing:DeleteRule",
        "elasticloadbalancing:ModifyRule",
        "elasticloadbalancing:DescribeRules",
        "elasticloadbalancing:SetRulePriorities",
    ),
    "aws:ec2/launchTemplate:LaunchTemplate": (
        "ec2:CreateLaunchTemplate",
        "ec2:CreateLaunchTemplateVersion",
        "ec2:ModifyLaunchTemplate",
        "ec2:DeleteLaunchTemplate",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
    ),
    "aws:autoscaling/group:Group": (
        "autoscaling:CreateAutoScalingGroup",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:DeleteAutoScalingGroup",
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeScalingActivities",
        "autoscaling:AttachLoadBalancerTargetGroups",
        "autoscaling:DetachLoadBalancerTargetGroups",
        "autoscaling:StartInstanceRefresh",
        "autoscaling:DescribeInstanceRefreshes",
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "iam:CreateServiceLinkedRole",
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": (
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:DeleteAlarms",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:ListTagsForResource",
        "cloudwatch:TagResource",
        "cloudwatch:UntagResource",
    ),
}


def pulumi_policy() -> dict[str, Any]:
    """An IAM policy document for the principal of Pulumi's AWS provider (see the module docstring)."""
    statements = [
        _statement(kind.split(":")[-1], actions, "*") for kind, actions in sorted(PULUMI_ACTIONS.items())
    ]
    return {"Version": "2012-10-17", "Statement": statements}
