"""Apply the program's registered resources to moto: create, update or delete, per resource type.

:class:`MotoApplier` plays the part of the AWS provider. Within one update, :meth:`begin` opens
it, every custom resource the program registers goes through :meth:`apply` (keyed by type and
logical name, which is what a Pulumi URN is made of), and :meth:`finish` deletes whatever the
previous update had and this one did not register. Each resource type has a ``create_*``,
``update_*`` and ``delete_*`` method, so the same class could serve a test
``pulumi-resource-aws`` plugin for the real engine.

:class:`SandboxMocks` is the hook for :func:`rfs_deploy.sim.mockrun.run_program`: it sends
the types the sandbox models to the applier and leaves the rest to the harness's AwsMocks.

Provider behaviour reproduced on purpose: a launch template change creates a new template
version; an Auto Scaling group whose launch template changes while it has an
``instanceRefresh`` block starts an instance refresh (the sandbox's engine, as AWS's).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pulumi
from moto.moto_api._internal import mock_random

from rfs_deploy.infra.slot import VERSION_TAG
from rfs_deploy.sim import convert
from rfs_deploy.sim.aws import SimulatedAws, seed_ids, unseed_ids
from rfs_deploy.sim.mockrun import AwsMocks
from rfs_deploy.sim.network import NetworkMap
from rfs_deploy.sim.world import World

ACCOUNT = "123456789012"


@dataclass
class Applied:
    """One resource as applied to moto."""

    type: str
    name: str
    id: str
    physical: str
    #: Inputs as sent to moto (network ids translated).
    inputs: dict[str, Any]
    #: Computed state returned to the program (merged over its own inputs).
    computed: dict[str, Any]
    generation: int = 0
    urn: str = ""

    @property
    def key(self) -> str:
        return resource_key(self.type, self.name)


def resource_key(type_: str, name: str) -> str:
    """What identifies a resource across updates (a URN without the parent chain)."""
    return f"{type_}::{name}"


@dataclass
class _Kind:
    create: Callable[[Applied], None]
    update: Callable[[Applied, dict[str, Any]], None]
    delete: Callable[[Applied], None]


def _no_update(res: Applied, old: dict[str, Any]) -> None:
    """A resource without settings that change in place."""


@dataclass
class MotoApplier:
    """The sandbox's AWS provider over moto (see the module docstring)."""

    aws: SimulatedAws
    world: World
    network: NetworkMap
    #: Instances launched during this update count as long running (the stack's first update).
    warm: bool = False
    resources: dict[str, Applied] = field(default_factory=dict)
    #: Called after every create, update or delete (the sandbox saves the cloud as it changes).
    on_change: Callable[[], None] | None = None
    _seen: set[str] = field(default_factory=set)
    _changes: Counter[str] = field(default_factory=Counter)
    #: Configured certificate ARN -> moto's (see :meth:`moto_certificate`).
    _certificates: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kinds: dict[str, _Kind] = {
            "aws:ec2/securityGroup:SecurityGroup": _Kind(
                self.create_security_group, self.update_security_group, self.delete_security_group
            ),
            "aws:lb/loadBalancer:LoadBalancer": _Kind(
                self.create_load_balancer, self.update_load_balancer, self.delete_load_balancer
            ),
            "aws:lb/targetGroup:TargetGroup": _Kind(
                self.create_target_group, self.update_target_group, self.delete_target_group
            ),
            "aws:lb/listener:Listener": _Kind(
                self.create_listener, self.update_listener, self.delete_listener
            ),
            "aws:lb/listenerRule:ListenerRule": _Kind(
                self.create_listener_rule, self.update_listener_rule, self.delete_listener_rule
            ),
            "aws:lb/listenerCertificate:ListenerCertificate": _Kind(
                self.create_listener_certificate,
                self.update_listener_certificate,
                self.delete_listener_certificate,
            ),
            "aws:ec2/launchTemplate:LaunchTemplate": _Kind(
                self.create_launch_template, self.update_launch_template, self.delete_launch_template
            ),
            "aws:autoscaling/group:Group": _Kind(self.create_group, self.update_group, self.delete_group),
            "aws:autoscaling/policy:Policy": _Kind(self.put_policy, self.update_policy, self.delete_policy),
            "aws:cloudwatch/metricAlarm:MetricAlarm": _Kind(
                self.create_alarm, self.update_alarm, self.delete_alarm
            ),
            # a network of the program's own (a user's program, docs/components.md)
            "aws:ec2/vpc:Vpc": _Kind(self.create_vpc, self.update_ec2_tags, self.delete_vpc),
            "aws:ec2/subnet:Subnet": _Kind(self.create_subnet, self.update_ec2_tags, self.delete_subnet),
            "aws:ec2/internetGateway:InternetGateway": _Kind(
                self.create_internet_gateway, self.update_ec2_tags, self.delete_internet_gateway
            ),
            "aws:ec2/routeTable:RouteTable": _Kind(
                self.create_route_table, self.update_ec2_tags, self.delete_route_table
            ),
            "aws:ec2/routeTableAssociation:RouteTableAssociation": _Kind(
                self.create_route_table_association, _no_update, self.delete_route_table_association
            ),
        }

    # ----------------------------------------------------------------- one update

    def handles(self, type_: str) -> bool:
        return type_ in self.kinds

    def begin(self) -> None:
        self._seen = set()
        self._changes = Counter()

    def apply(
        self, type_: str, name: str, physical: str, inputs: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Create or update one resource; returns (id, state) for the program."""
        key = resource_key(type_, name)
        self._seen.add(key)
        sent = self.network.translate(dict(inputs))
        kind = self.kinds[type_]
        current = self.resources.get(key)
        if current is None:
            generation = 0
            current = Applied(type_, name, "", physical, sent, {}, generation)
            seed_ids(key, generation)
            try:
                kind.create(current)
            finally:
                unseed_ids()
            self.resources[key] = current
            self._changes["create"] += 1
            self._changed()
        elif current.inputs != sent:
            old = current.inputs
            current.inputs = sent
            kind.update(current, old)
            self._changes["update"] += 1
            self._changed()
        else:
            self._changes["same"] += 1
        return current.id, {**dict(inputs), **current.computed}

    def invoke(self, token: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a provider function the program calls (only ``aws.ec2.get_vpc`` is modelled)."""
        if token != "aws:ec2/getVpc:getVpc":
            raise ValueError(f"the sandbox does not model the provider function {token}")
        configured = str(args.get("id") or "")
        vpc_id = self.network.translate(configured)
        found = self.aws.raw("ec2").describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Vpcs"]
        if not found:
            raise ValueError(f"no VPC {configured} in the sandbox")
        vpc = found[0]
        return {
            "id": configured,
            "arn": f"arn:aws:ec2:{self.aws.region}:{vpc.get('OwnerId', '')}:vpc/{configured}",
            "cidrBlock": vpc["CidrBlock"],
            "cidrBlockAssociations": [
                {"associationId": a.get("AssociationId", ""), "cidrBlock": a["CidrBlock"]}
                for a in vpc.get("CidrBlockAssociationSet", [])
            ],
            "state": vpc.get("State", "available"),
            "ownerId": vpc.get("OwnerId", ""),
        }

    def finish(self) -> dict[str, int]:
        """Delete what this update did not register (newest first); returns the change counts."""
        for key in reversed([k for k in self.resources if k not in self._seen]):
            res = self.resources.pop(key)
            self.kinds[res.type].delete(res)
            self._changes["delete"] += 1
            self._changed()
        return dict(self._changes)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # ----------------------------------------------------------------- security groups

    def create_security_group(self, res: Applied) -> None:
        ec2 = self.aws.raw("ec2")
        inputs = res.inputs
        group_id = ec2.create_security_group(
            GroupName=inputs.get("name") or res.physical,
            Description=inputs.get("description") or "Managed by Pulumi",
            VpcId=inputs["vpcId"],
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": convert.tag_list(inputs.get("tags"))}
            ],
        )["GroupId"]
        if inputs.get("ingress"):
            ec2.authorize_security_group_ingress(
                GroupId=group_id, IpPermissions=convert.permissions(inputs["ingress"])
            )
        res.id = group_id
        res.computed = {
            "name": inputs.get("name") or res.physical,
            "ownerId": ACCOUNT,
            "arn": f"arn:aws:ec2:{self.aws.region}:{ACCOUNT}:security-group/{group_id}",
        }

    def update_security_group(self, res: Applied, old: dict[str, Any]) -> None:
        ec2 = self.aws.raw("ec2")
        if old.get("ingress") != res.inputs.get("ingress"):
            if old.get("ingress"):
                ec2.revoke_security_group_ingress(
                    GroupId=res.id, IpPermissions=convert.permissions(old["ingress"])
                )
            if res.inputs.get("ingress"):
                ec2.authorize_security_group_ingress(
                    GroupId=res.id, IpPermissions=convert.permissions(res.inputs["ingress"])
                )

    def delete_security_group(self, res: Applied) -> None:
        self.aws.raw("ec2").delete_security_group(GroupId=res.id)

    # ----------------------------------------------------------------- a network of its own

    def _ec2_state(self, res: Applied, kind: str) -> None:
        res.computed = {"ownerId": ACCOUNT, "arn": f"arn:aws:ec2:{self.aws.region}:{ACCOUNT}:{kind}/{res.id}"}

    def _tag(self, res: Applied) -> None:
        if res.inputs.get("tags"):
            self.aws.raw("ec2").create_tags(Resources=[res.id], Tags=convert.tag_list(res.inputs["tags"]))

    def update_ec2_tags(self, res: Applied, old: dict[str, Any]) -> None:
        """Tags change in place; other changes of these network resources are not modelled."""
        if old.get("tags") != res.inputs.get("tags"):
            self._tag(res)

    def create_vpc(self, res: Applied) -> None:
        ec2 = self.aws.raw("ec2")
        res.id = ec2.create_vpc(CidrBlock=res.inputs["cidrBlock"])["Vpc"]["VpcId"]
        if res.inputs.get("enableDnsHostnames"):
            ec2.modify_vpc_attribute(VpcId=res.id, EnableDnsHostnames={"Value": True})
        self._tag(res)
        self._ec2_state(res, "vpc")

    def delete_vpc(self, res: Applied) -> None:
        self.aws.raw("ec2").delete_vpc(VpcId=res.id)

    def create_subnet(self, res: Applied) -> None:
        inputs = res.inputs
        extra = {"AvailabilityZone": inputs["availabilityZone"]} if inputs.get("availabilityZone") else {}
        ec2 = self.aws.raw("ec2")
        res.id = ec2.create_subnet(VpcId=inputs["vpcId"], CidrBlock=inputs["cidrBlock"], **extra)["Subnet"][
            "SubnetId"
        ]
        if inputs.get("mapPublicIpOnLaunch"):
            ec2.modify_subnet_attribute(SubnetId=res.id, MapPublicIpOnLaunch={"Value": True})
        self._tag(res)
        self._ec2_state(res, "subnet")

    def delete_subnet(self, res: Applied) -> None:
        self.aws.raw("ec2").delete_subnet(SubnetId=res.id)

    def create_internet_gateway(self, res: Applied) -> None:
        ec2 = self.aws.raw("ec2")
        res.id = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        if res.inputs.get("vpcId"):
            ec2.attach_internet_gateway(InternetGatewayId=res.id, VpcId=res.inputs["vpcId"])
        self._tag(res)
        self._ec2_state(res, "internet-gateway")

    def delete_internet_gateway(self, res: Applied) -> None:
        ec2 = self.aws.raw("ec2")
        if res.inputs.get("vpcId"):
            ec2.detach_internet_gateway(InternetGatewayId=res.id, VpcId=res.inputs["vpcId"])
        ec2.delete_internet_gateway(InternetGatewayId=res.id)

    def create_route_table(self, res: Applied) -> None:
        ec2 = self.aws.raw("ec2")
        res.id = ec2.create_route_table(VpcId=res.inputs["vpcId"])["RouteTable"]["RouteTableId"]
        for route in res.inputs.get("routes") or []:
            ec2.create_route(
                RouteTableId=res.id, DestinationCidrBlock=route["cidrBlock"], GatewayId=route["gatewayId"]
            )
        self._tag(res)
        self._ec2_state(res, "route-table")

    def delete_route_table(self, res: Applied) -> None:
        self.aws.raw("ec2").delete_route_table(RouteTableId=res.id)

    def create_route_table_association(self, res: Applied) -> None:
        res.id = self.aws.raw("ec2").associate_route_table(
            SubnetId=res.inputs["subnetId"], RouteTableId=res.inputs["routeTableId"]
        )["AssociationId"]
        res.computed = {}

    def delete_route_table_association(self, res: Applied) -> None:
        self.aws.raw("ec2").disassociate_route_table(AssociationId=res.id)

    # ----------------------------------------------------------------- load balancer

    def create_load_balancer(self, res: Applied) -> None:
        inputs = res.inputs
        lb = self.aws.raw("elbv2").create_load_balancer(
            Name=inputs.get("name") or res.physical,
            Subnets=list(inputs.get("subnets") or []),
            SecurityGroups=list(inputs.get("securityGroups") or []),
            Scheme="internal" if inputs.get("internal") else "internet-facing",
            Type=inputs.get("loadBalancerType") or "application",
            Tags=convert.tag_list(inputs.get("tags")),
        )["LoadBalancers"][0]
        arn = lb["LoadBalancerArn"]
        res.id = arn
        res.computed = {
            "name": lb["LoadBalancerName"],
            "arn": arn,
            "arnSuffix": arn.split(":loadbalancer/", 1)[1],
            "dnsName": lb["DNSName"],
            "zoneId": lb.get("CanonicalHostedZoneId", ""),
        }

    def update_load_balancer(self, res: Applied, old: dict[str, Any]) -> None:
        if old.get("securityGroups") != res.inputs.get("securityGroups"):
            self.aws.raw("elbv2").set_security_groups(
                LoadBalancerArn=res.id, SecurityGroups=list(res.inputs.get("securityGroups") or [])
            )

    def delete_load_balancer(self, res: Applied) -> None:
        self.aws.raw("elbv2").delete_load_balancer(LoadBalancerArn=res.id)

    # ----------------------------------------------------------------- target groups

    def create_target_group(self, res: Applied) -> None:
        inputs = res.inputs
        group = self.aws.raw("elbv2").create_target_group(
            Name=inputs.get("name") or res.physical,
            Protocol=inputs.get("protocol") or "HTTP",
            Port=int(inputs.get("port") or 80),
            VpcId=inputs["vpcId"],
            TargetType=inputs.get("targetType") or "instance",
            Tags=convert.tag_list(inputs.get("tags")),
            **convert.health_check(inputs.get("healthCheck")),
        )["TargetGroups"][0]
        arn = group["TargetGroupArn"]
        res.id = arn
        res.computed = {"name": group["TargetGroupName"], "arn": arn, "arnSuffix": arn.rsplit(":", 1)[1]}

    def update_target_group(self, res: Applied, old: dict[str, Any]) -> None:
        check = convert.health_check(res.inputs.get("healthCheck"))
        check.pop("HealthCheckEnabled", None)
        if check:
            self.aws.raw("elbv2").modify_target_group(TargetGroupArn=res.id, **check)

    def delete_target_group(self, res: Applied) -> None:
        self.aws.raw("elbv2").delete_target_group(TargetGroupArn=res.id)

    # ----------------------------------------------------------------- listeners and rules

    def moto_certificate(self, arn: str) -> str:
        """moto's ACM certificate standing in for the configured ``arn`` (requested on first use).

        moto's load balancers accept only certificates in moto's ACM, and moto cannot import one
        under a chosen ARN, so each configured ARN gets one of its own, like the VPC and subnets
        (:mod:`rfs_deploy.sim.network`). Its ARN is seeded from the configured one, and moto's
        random state is put back afterwards: whether the certificate already existed never
        shifts the ids of the listener being created (a restored session gets the same ARNs).
        """
        acm = self.aws.raw("acm")
        known = self._certificates.get(arn)
        if known is not None and any(
            c["CertificateArn"] == known for c in acm.list_certificates()["CertificateSummaryList"]
        ):
            return known
        state = mock_random.getstate()
        seed_ids(f"certificate::{arn}")
        try:
            domain = f"{hashlib.sha256(arn.encode()).hexdigest()[:12]}.sandbox.invalid"
            created = str(acm.request_certificate(DomainName=domain)["CertificateArn"])
        finally:
            mock_random.setstate(state)
        self._certificates[arn] = created
        return created

    def _tls(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The certificate and TLS policy parameters of an HTTPS listener (none for HTTP)."""
        if (inputs.get("protocol") or "HTTP") != "HTTPS":
            return {}
        params: dict[str, Any] = {}
        if inputs.get("certificateArn"):
            params["Certificates"] = [
                {"CertificateArn": self.moto_certificate(str(inputs["certificateArn"]))}
            ]
        if inputs.get("sslPolicy"):
            params["SslPolicy"] = str(inputs["sslPolicy"])
        return params

    def create_listener(self, res: Applied) -> None:
        inputs = res.inputs
        listener = self.aws.raw("elbv2").create_listener(
            LoadBalancerArn=inputs["loadBalancerArn"],
            Protocol=inputs.get("protocol") or "HTTP",
            Port=int(inputs["port"]),
            DefaultActions=[convert.action(a) for a in inputs.get("defaultActions") or []],
            **self._tls(inputs),
        )["Listeners"][0]
        res.id = listener["ListenerArn"]
        res.computed = {"arn": res.id}

    def update_listener(self, res: Applied, old: dict[str, Any]) -> None:
        inputs = res.inputs
        self.world.lag.changing(res.id, self.world.clock.now())
        self.aws.raw("elbv2").modify_listener(
            ListenerArn=res.id,
            Port=int(inputs["port"]),
            Protocol=inputs.get("protocol") or "HTTP",
            DefaultActions=[convert.action(a) for a in inputs.get("defaultActions") or []],
            **self._tls(inputs),
        )

    def delete_listener(self, res: Applied) -> None:
        self.aws.raw("elbv2").delete_listener(ListenerArn=res.id)

    def create_listener_certificate(self, res: Applied) -> None:
        listener, certificate = str(res.inputs["listenerArn"]), str(res.inputs["certificateArn"])
        self.aws.raw("elbv2").add_listener_certificates(
            ListenerArn=listener, Certificates=[{"CertificateArn": self.moto_certificate(certificate)}]
        )
        # the AWS provider's id for one: "<listener ARN>_<certificate ARN>"
        res.id = f"{listener}_{certificate}"
        res.computed = {}

    def update_listener_certificate(self, res: Applied, old: dict[str, Any]) -> None:
        self.delete_listener_certificate(Applied(**{**asdict(res), "inputs": old}))
        self.create_listener_certificate(res)

    def delete_listener_certificate(self, res: Applied) -> None:
        certificate = self._certificates.get(str(res.inputs["certificateArn"]))
        if certificate is None:
            return
        self.aws.raw("elbv2").remove_listener_certificates(
            ListenerArn=str(res.inputs["listenerArn"]), Certificates=[{"CertificateArn": certificate}]
        )

    def create_listener_rule(self, res: Applied) -> None:
        inputs = res.inputs
        self.world.lag.changing(inputs["listenerArn"], self.world.clock.now())
        rule = self.aws.raw("elbv2").create_rule(
            ListenerArn=inputs["listenerArn"],
            Priority=int(inputs["priority"]),
            Conditions=convert.conditions(inputs.get("conditions")),
            Actions=[convert.action(a) for a in inputs.get("actions") or []],
        )["Rules"][0]
        res.id = rule["RuleArn"]
        res.computed = {"arn": res.id}

    def update_listener_rule(self, res: Applied, old: dict[str, Any]) -> None:
        elbv2 = self.aws.raw("elbv2")
        inputs = res.inputs
        self.world.lag.changing(inputs["listenerArn"], self.world.clock.now())
        elbv2.modify_rule(
            RuleArn=res.id,
            Conditions=convert.conditions(inputs.get("conditions")),
            Actions=[convert.action(a) for a in inputs.get("actions") or []],
        )
        if old.get("priority") != inputs.get("priority"):
            elbv2.set_rule_priorities(
                RulePriorities=[{"RuleArn": res.id, "Priority": int(inputs["priority"])}]
            )

    def delete_listener_rule(self, res: Applied) -> None:
        self.world.lag.changing(res.inputs["listenerArn"], self.world.clock.now())
        self.aws.raw("elbv2").delete_rule(RuleArn=res.id)

    # ----------------------------------------------------------------- launch templates

    def create_launch_template(self, res: Applied) -> None:
        inputs = res.inputs
        name = inputs.get("name") or res.physical
        template = self.aws.raw("ec2").create_launch_template(
            LaunchTemplateName=name,
            VersionDescription=inputs.get("description") or "",
            LaunchTemplateData=convert.launch_template_data(inputs),
            TagSpecifications=[
                {"ResourceType": "launch-template", "Tags": convert.tag_list(inputs.get("tags"))}
            ],
        )["LaunchTemplate"]
        res.id = template["LaunchTemplateId"]
        self.world.templates.record(res.id, 1, _template_version(inputs))
        res.computed = {
            "name": name,
            "arn": f"arn:aws:ec2:{self.aws.region}:{ACCOUNT}:launch-template/{res.id}",
            "latestVersion": 1,
            "defaultVersion": 1,
        }

    def update_launch_template(self, res: Applied, old: dict[str, Any]) -> None:
        ignored = ("tags", "updateDefaultVersion", "name")
        if {k: v for k, v in old.items() if k not in ignored} == {
            k: v for k, v in res.inputs.items() if k not in ignored
        }:
            return
        ec2 = self.aws.raw("ec2")
        created = ec2.create_launch_template_version(
            LaunchTemplateId=res.id,
            VersionDescription=res.inputs.get("description") or "",
            LaunchTemplateData=convert.launch_template_data(res.inputs),
        )["LaunchTemplateVersion"]
        number = int(created["VersionNumber"])
        self.world.templates.record(res.id, number, _template_version(res.inputs))
        res.computed = {**res.computed, "latestVersion": number}
        if res.inputs.get("updateDefaultVersion"):
            ec2.modify_launch_template(LaunchTemplateId=res.id, DefaultVersion=str(number))
            res.computed["defaultVersion"] = number

    def delete_launch_template(self, res: Applied) -> None:
        self.aws.raw("ec2").delete_launch_template(LaunchTemplateId=res.id)

    # ----------------------------------------------------------------- Auto Scaling groups

    def create_group(self, res: Applied) -> None:
        inputs = res.inputs
        name = inputs.get("name") or res.physical
        params: dict[str, Any] = {
            "AutoScalingGroupName": name,
            "MinSize": int(inputs.get("minSize", 0)),
            "MaxSize": int(inputs.get("maxSize", 0)),
            "DesiredCapacity": int(inputs.get("desiredCapacity", inputs.get("minSize", 0))),
            "VPCZoneIdentifier": ",".join(inputs.get("vpcZoneIdentifiers") or []),
            "TargetGroupARNs": list(inputs.get("targetGroupArns") or []),
            "HealthCheckType": inputs.get("healthCheckType") or "EC2",
            "HealthCheckGracePeriod": int(inputs.get("healthCheckGracePeriod", 300)),
            "Tags": convert.group_tags(name, inputs.get("tags")),
        }
        spec = convert.template_spec(inputs.get("launchTemplate"))
        if spec:
            params["LaunchTemplate"] = spec
        self.aws.raw("autoscaling").create_auto_scaling_group(**params)
        res.id = name
        res.computed = {
            "name": name,
            "arn": f"arn:aws:autoscaling:{self.aws.region}:{ACCOUNT}:autoScalingGroup:"
            f"{name}:autoScalingGroupName/{name}",
        }
        self.world.after_apply(warm=self.warm)

    def update_group(self, res: Applied, old: dict[str, Any]) -> None:
        asg = self.aws.raw("autoscaling")
        inputs = res.inputs
        previous, spec = (
            convert.template_spec(old.get("launchTemplate")),
            convert.template_spec(inputs.get("launchTemplate")),
        )
        params: dict[str, Any] = {
            "AutoScalingGroupName": res.id,
            "MinSize": int(inputs.get("minSize", 0)),
            "MaxSize": int(inputs.get("maxSize", 0)),
            "HealthCheckType": inputs.get("healthCheckType") or "EC2",
            "HealthCheckGracePeriod": int(inputs.get("healthCheckGracePeriod", 300)),
            "VPCZoneIdentifier": ",".join(inputs.get("vpcZoneIdentifiers") or []),
        }
        # As the AWS provider does: the desired capacity is sent only when it changed, so an
        # update of anything else leaves a scaling policy's size alone (AWS moves it into new
        # bounds by itself).
        desired = inputs.get("desiredCapacity", inputs.get("minSize", 0))
        if desired != old.get("desiredCapacity", old.get("minSize", 0)):
            params["DesiredCapacity"] = int(desired)
        if spec:
            params["LaunchTemplate"] = spec
        asg.update_auto_scaling_group(**params)
        before, after = set(old.get("targetGroupArns") or []), set(inputs.get("targetGroupArns") or [])
        if after - before:
            asg.attach_load_balancer_target_groups(
                AutoScalingGroupName=res.id, TargetGroupARNs=sorted(after - before)
            )
        if before - after:
            asg.detach_load_balancer_target_groups(
                AutoScalingGroupName=res.id, TargetGroupARNs=sorted(before - after)
            )
        self.world.after_apply(warm=self.warm)
        refresh = inputs.get("instanceRefresh")
        if spec != previous and refresh:
            self._start_refresh(res.id, refresh.get("preferences") or {}, previous)

    def _start_refresh(
        self, asg: str, preferences: Mapping[str, Any], previous: dict[str, Any] | None
    ) -> None:
        """What the provider does when a group's template changes: (re)start an instance refresh."""
        engine, now = self.world.refreshes, self.world.clock.now()
        engine.supersede(asg, now, "superseded by a new launch template")
        engine.start(asg, preferences, now, previous_spec=previous)

    def delete_group(self, res: Applied) -> None:
        self.aws.raw("autoscaling").delete_auto_scaling_group(AutoScalingGroupName=res.id, ForceDelete=True)
        self.world.after_apply()

    # ----------------------------------------------------------------- scaling policies

    def put_policy(self, res: Applied) -> None:
        name = res.inputs.get("name") or res.physical
        answer = self.aws.raw("autoscaling").put_scaling_policy(**convert.scaling_policy(name, res.inputs))
        res.id = name
        res.computed = {"name": name, "arn": answer.get("PolicyARN", "")}

    def update_policy(self, res: Applied, old: dict[str, Any]) -> None:
        if old.get("autoscalingGroupName") != res.inputs.get("autoscalingGroupName"):
            self.aws.raw("autoscaling").delete_policy(
                AutoScalingGroupName=old.get("autoscalingGroupName"), PolicyName=res.id
            )
        self.aws.raw("autoscaling").put_scaling_policy(**convert.scaling_policy(res.id, res.inputs))

    def delete_policy(self, res: Applied) -> None:
        self.aws.raw("autoscaling").delete_policy(
            AutoScalingGroupName=res.inputs.get("autoscalingGroupName"), PolicyName=res.id
        )

    # ----------------------------------------------------------------- alarms

    def create_alarm(self, res: Applied) -> None:
        name = res.inputs.get("name") or res.physical
        self.aws.raw("cloudwatch").put_metric_alarm(**convert.alarm(name, res.inputs))
        res.id = name
        res.computed = {"name": name, "arn": f"arn:aws:cloudwatch:{self.aws.region}:{ACCOUNT}:alarm:{name}"}

    def update_alarm(self, res: Applied, old: dict[str, Any]) -> None:
        self.aws.raw("cloudwatch").put_metric_alarm(**convert.alarm(res.id, res.inputs))

    def delete_alarm(self, res: Applied) -> None:
        self.aws.raw("cloudwatch").delete_alarms(AlarmNames=[res.id])

    # ----------------------------------------------------------------- persistence

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.resources.values()]

    def export(self) -> list[dict[str, Any]]:
        """The resources as a ``pulumi stack export`` deployment lists them."""
        return [
            {
                "urn": r.urn or r.key,
                "type": r.type,
                "id": r.id,
                "custom": True,
                "inputs": r.inputs,
                "outputs": {**r.inputs, **r.computed},
            }
            for r in self.resources.values()
        ]


def _template_version(inputs: Mapping[str, Any]) -> str | None:
    """The release version a launch template boots: its ``rfs-deploy:version`` tag."""
    tags = inputs.get("tags") or {}
    if VERSION_TAG in tags:
        return str(tags[VERSION_TAG])
    for spec in inputs.get("tagSpecifications") or []:
        if VERSION_TAG in (spec.get("tags") or {}):
            return str(spec["tags"][VERSION_TAG])
    return None


class SandboxMocks(AwsMocks):
    """Pulumi mocks that apply the modelled resource types to moto through a :class:`MotoApplier`."""

    def __init__(self, applier: MotoApplier, stack_outputs: Mapping[str, Any] | None = None) -> None:
        super().__init__(region=applier.aws.region, account_id=ACCOUNT)
        self.applier = applier
        #: The stack's outputs from its last successful update, for the engine's
        #: ``pulumi:pulumi:readStackOutputs`` (the program reads its live release state there).
        self.stack_outputs = dict(stack_outputs or {})

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "pulumi:pulumi:readStackOutputs":
            return {"name": args.args.get("name"), "outputs": self.stack_outputs}, []
        if args.token == "aws:ec2/getVpc:getVpc":
            return self.applier.invoke(args.token, dict(args.args)), []
        return super().call(args)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if not self.applier.handles(args.typ):
            return super().new_resource(args)
        return self.applier.apply(args.typ, args.name, self.physical_name(args), dict(args.inputs))
