"""One slot of a service (blue or green): a target group and the fleet behind it.

A slot is a target group, a launch template for the version it runs, an Auto Scaling group
attached to the target group, and the slot's alarms. The release state says what the slot runs;
this component only turns that into resources.

A slot with no version yet (the idle slot of a fresh stack) still gets a launch template, built
from the *live* slot's version, and its group runs at capacity 0. The alternative, no template
and no group until a version arrives, would make the first release create the fleet from nothing
(and the next scale-down delete it), change the stack outputs' shape, and leave the group's
instance refresh, alarms and target group attachment untested until the worst moment. With a
placeholder template every slot always has the same resources; a release only updates them: a
new template version and a new capacity, in place.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from rfs_deploy.config.model import ServiceConfig, SlotName, check_ami, check_version
from rfs_deploy.infra import alarms
from rfs_deploy.infra.refresh import RefreshPreferences

#: Tag naming the version an instance boots (read by the sandbox and by operators).
VERSION_TAG = "rfs-deploy:version"
SLOT_TAG = "rfs-deploy:slot"


@dataclass(frozen=True)
class SlotArgs:
    """What one slot needs: its service's settings, what it runs, and where."""

    service: str
    slot: SlotName
    config: ServiceConfig
    #: The version the launch template boots: the slot's own, else the live slot's.
    boot_version: str
    #: That version's AMI when the release state carries it (else ``artifact.amis``).
    boot_image: str | None
    capacity: int
    refresh: RefreshPreferences
    vpc_id: pulumi.Input[str]
    #: The instances' subnets: a list (of ids or Outputs), or an Output of one.
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    instance_security_group_ids: Sequence[pulumi.Input[str]]
    load_balancer_suffix: pulumi.Input[str]
    tags: Mapping[str, str]
    #: An IAM instance profile for the launch template: its name or its ARN.
    instance_profile: pulumi.Input[str] | None = None
    #: The group scales itself within ``config.autoscaling`` (the live slot while no release
    #: runs); otherwise it is pinned to ``capacity``.
    autoscaled: bool = False

    def __post_init__(self) -> None:
        # The release state is validated when it is read, but the version also lands in a root
        # boot script (userData), tags and a description: checked again where it is used.
        check_version(self.boot_version)
        if self.boot_image is not None:
            check_ami(self.boot_image)


def encode_user_data(text: str | None) -> str | None:
    """User data as the launch template expects it: base64 of the UTF-8 text."""
    return None if text is None else base64.b64encode(text.encode()).decode("ascii")


def instance_profile_args(
    profile: pulumi.Input[str] | None,
) -> aws.ec2.LaunchTemplateIamInstanceProfileArgs | None:
    """The launch template's instance profile: by ARN when the value is one, else by name."""
    if profile is None:
        return None
    if isinstance(profile, str):
        is_arn = profile.startswith("arn:")
        return aws.ec2.LaunchTemplateIamInstanceProfileArgs(
            arn=profile if is_arn else None, name=None if is_arn else profile
        )
    value: pulumi.Output[str] = pulumi.Output.all(profile).apply(lambda v: str(v[0]))
    return aws.ec2.LaunchTemplateIamInstanceProfileArgs(
        arn=value.apply(lambda v: v if v.startswith("arn:") else None),
        name=value.apply(lambda v: None if v.startswith("arn:") else v),
    )


class Slot(pulumi.ComponentResource):
    """Target group, launch template, Auto Scaling group and alarms of one slot."""

    TYPE = "rfs-deploy:aws:Slot"

    target_group: aws.lb.TargetGroup
    launch_template: aws.ec2.LaunchTemplate
    group: aws.autoscaling.Group
    error_rate_alarm: aws.cloudwatch.MetricAlarm
    latency_alarm: aws.cloudwatch.MetricAlarm
    cpu_alarm: aws.cloudwatch.MetricAlarm

    def __init__(self, name: str, args: SlotArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self._args = args
        self._prefix = f"{args.service}-{{}}-{args.slot}"
        self._label = f"{args.service} {args.slot}"
        self.target_group = self._create_target_group()
        self.error_rate_alarm, self.latency_alarm = self._create_traffic_alarms()
        self.launch_template = self._create_launch_template()
        self.group = self._create_group()
        self.scaling_policy = self._create_scaling_policy()
        self.cpu_alarm = self._create_cpu_alarm()
        self.register_outputs(
            {
                "targetGroupArn": self.target_group.arn,
                "asgName": self.group.name,
                "alarmNames": self.alarm_names,
            }
        )

    @property
    def alarm_names(self) -> list[pulumi.Output[str]]:
        """5xx rate, p99 latency and CPU alarm names, in that order."""
        return [self.error_rate_alarm.name, self.latency_alarm.name, self.cpu_alarm.name]

    def _child(self, kind: str) -> str:
        return self._prefix.format(kind)

    def _opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _create_target_group(self) -> aws.lb.TargetGroup:
        cfg = self._args.config
        hc = cfg.health_check
        return aws.lb.TargetGroup(
            self._child("tg"),
            port=cfg.app_port,
            protocol="HTTP",
            target_type="instance",
            vpc_id=self._args.vpc_id,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True,
                protocol="HTTP",
                port="traffic-port",
                path=hc.path,
                interval=hc.interval,
                timeout=hc.timeout,
                healthy_threshold=hc.healthy_threshold,
                unhealthy_threshold=hc.unhealthy_threshold,
                matcher=hc.matcher,
            ),
            tags=self._tags(),
            opts=self._opts(),
        )

    def _create_traffic_alarms(self) -> tuple[aws.cloudwatch.MetricAlarm, aws.cloudwatch.MetricAlarm]:
        dims = alarms.target_dimensions(self.target_group.arn_suffix, self._args.load_balancer_suffix)
        analysis = self._args.config.analysis
        error_rate = alarms.create_error_rate_alarm(
            self._child("5xx"),
            label=self._label,
            dimensions=dims,
            analysis=analysis,
            tags=self._tags(),
            opts=self._opts(),
        )
        latency = alarms.create_latency_alarm(
            self._child("p99"),
            label=self._label,
            dimensions=dims,
            analysis=analysis,
            tags=self._tags(),
            opts=self._opts(),
        )
        return error_rate, latency

    def _create_launch_template(self) -> aws.ec2.LaunchTemplate:
        args = self._args
        artifact = args.config.artifact
        version = args.boot_version
        return aws.ec2.LaunchTemplate(
            self._child("lt"),
            description=f"{self._label}: {version}",
            image_id=args.boot_image or artifact.image_for(version),
            instance_type=args.config.instance_type,
            user_data=encode_user_data(artifact.user_data_for(version)),
            vpc_security_group_ids=list(args.instance_security_group_ids),
            iam_instance_profile=instance_profile_args(args.instance_profile),
            # Per-minute CPU metrics, so the CPU alarm sees every period.
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required"
            ),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags={VERSION_TAG: version})
                for kind in ("instance", "volume")
            ],
            # New versions become the default, so the console shows what the group runs.
            update_default_version=True,
            tags={**self._tags(), VERSION_TAG: version},
            opts=self._opts(),
        )

    def _create_group(self) -> aws.autoscaling.Group:
        args = self._args
        capacity = args.capacity
        # A numbered version, not "$Latest": a new version is a change the provider sees (and
        # starts the instance refresh for), and AWS only rolls a refresh back to a numbered one.
        version = self.launch_template.latest_version.apply(lambda v: str(int(v)))
        instance_tags = {**self._tags(), "Name": f"{args.service}-{args.slot}"}
        low, high, opts = capacity, capacity, self._opts()
        scaling = args.config.autoscaling
        if args.autoscaled and scaling is not None:
            # Between releases the policy owns the group's size: the program gives it its bounds
            # and the size to start from, and leaves the desired capacity alone afterwards, so an
            # update (a new instance profile, say) never resets what the policy scaled to.
            low, high = scaling.min, scaling.max
            capacity = min(max(capacity, low), high)
            opts = pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(ignore_changes=["desiredCapacity"])
            )
        return aws.autoscaling.Group(
            self._child("asg"),
            min_size=low,
            max_size=high,
            desired_capacity=capacity,
            vpc_zone_identifiers=args.subnet_ids,
            target_group_arns=[self.target_group.arn],
            health_check_type="ELB",
            health_check_grace_period=args.config.health_check_grace_period,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=self.launch_template.id, version=version
            ),
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=args.refresh.to_args([self.error_rate_alarm.name, self.latency_alarm.name]),
            ),
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in sorted(instance_tags.items())
            ],
            opts=opts,
        )

    def _create_scaling_policy(self) -> aws.autoscaling.Policy | None:
        """The target-tracking policy of a service with ``autoscaling``, on both slots and kept
        through releases (no policy to create and delete at every one): it only acts while the
        group's bounds leave it room, and a release pins them to one capacity."""
        scaling = self._args.config.autoscaling
        if scaling is None:
            return None
        return aws.autoscaling.Policy(
            self._child("scaling"),
            autoscaling_group_name=self.group.name,
            policy_type="TargetTrackingScaling",
            estimated_instance_warmup=self._args.config.health_check_grace_period or None,
            target_tracking_configuration=aws.autoscaling.PolicyTargetTrackingConfigurationArgs(
                predefined_metric_specification=(
                    aws.autoscaling.PolicyTargetTrackingConfigurationPredefinedMetricSpecificationArgs(
                        predefined_metric_type="ASGAverageCPUUtilization"
                    )
                ),
                target_value=scaling.target_cpu,
            ),
            opts=self._opts(),
        )

    def _create_cpu_alarm(self) -> aws.cloudwatch.MetricAlarm:
        return alarms.create_cpu_alarm(
            self._child("cpu"),
            label=self._label,
            asg_name=self.group.name,
            analysis=self._args.config.analysis,
            tags=self._tags(),
            opts=self._opts(),
        )

    def _tags(self) -> dict[str, str]:
        return {**self._args.tags, SLOT_TAG: self._args.slot}
