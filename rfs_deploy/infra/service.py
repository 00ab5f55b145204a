"""One service: its load balancer, security groups, two slots, listeners and outputs.

The shape is the same for every strategy (DESIGN.md, "Two slots"): blue-green, canary and A/B
are different weights and rules over the same two slots, rolling refreshes the live slot in
place. So a release never adds or removes resources; it changes versions, capacities, weights
and, during an A/B test, four listener rules.

Children (``name`` is the service name)::

    rfs-deploy:aws:Service  name
    ├── aws:ec2/securityGroup   name-alb-sg        listener ports (ingress.py)
    ├── aws:ec2/securityGroup   name-instance-sg   app port from the ALB security group only
    ├── aws:lb/loadBalancer     name-alb
    ├── rfs-deploy:aws:Slot     name-blue          (slot.py)  tg, 5xx, p99, lt, asg, cpu
    ├── rfs-deploy:aws:Slot     name-green
    └── rfs-deploy:aws:Listeners name-listeners    (listeners.py)

Behind a shared load balancer (``config.routing``, routing.py) there is no ``name-alb-sg``,
``name-alb`` nor ``name-listeners``: a ``rfs-deploy:aws:Routes name-routes`` holds the service's
rules on the shared listeners instead.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from rfs_deploy.config.model import SLOTS, SlotName
from rfs_deploy.infra.args import ServiceArgs, resolve_args
from rfs_deploy.infra.ingress import alb_ingress_rules, egress_anywhere
from rfs_deploy.infra.ingress import cidr_rule as cidr_rule
from rfs_deploy.infra.listeners import Listeners, ListenersArgs
from rfs_deploy.infra.refresh import refresh_preferences, rolling_settings
from rfs_deploy.infra.routing import ServiceRoutes, ServiceRoutesArgs
from rfs_deploy.infra.slot import Slot, SlotArgs
from rfs_deploy.outputs import ServiceOutputs, SlotOutputs

__all__ = ["SERVICE_TAG", "STACK_TAG", "Service", "ServiceArgs", "cidr_rule", "load_balancer_suffix"]

SERVICE_TAG = "rfs-deploy:service"
STACK_TAG = "rfs-deploy:stack"


def load_balancer_suffix(arn: str) -> str:
    """A load balancer ARN's ``app/<name>/<id>`` tail: its CloudWatch dimension (``arnSuffix``)."""
    return arn.split(":loadbalancer/", 1)[-1]


class Service(pulumi.ComponentResource):
    """The AWS resources of one service; ``outputs`` is its :class:`ServiceOutputs` mapping."""

    TYPE = "rfs-deploy:aws:Service"

    #: The security groups the component created (``None`` where existing ones were given).
    alb_security_group: aws.ec2.SecurityGroup | None
    instance_security_group: aws.ec2.SecurityGroup | None
    #: The load balancer it created (``None`` with ``ServiceArgs.load_balancer_arn``).
    load_balancer: aws.lb.LoadBalancer | None
    slots: dict[SlotName, Slot]
    #: Its own listeners, or (``config.routing``) its rules on a shared load balancer's.
    listeners: Listeners | None
    routes: ServiceRoutes | None
    outputs: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: ServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # validated before anything registers: a bad value leaves no half-built component
        resolved = resolve_args(name, args)
        super().__init__(self.TYPE, name, None, opts)
        self._name = name
        self._args = resolved
        self._tags: dict[str, str] = {
            **resolved.tags,
            SERVICE_TAG: name,
            STACK_TAG: pulumi.get_stack(),
        }
        self._set_up_security_groups()
        self._set_up_load_balancer()
        self.slots = {slot: self._create_slot(slot) for slot in SLOTS}
        self.routes = self._create_routes()
        self.listeners = self._create_listeners() if self.routes is None else None
        self.outputs = self._collect_outputs()
        self.register_outputs({"outputs": self.outputs})

    def _opts(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _set_up_security_groups(self) -> None:
        """Create the groups that were not given: the load balancer's only for a load balancer
        of the component's own, the instances' admitting the app port from the load balancer's."""
        args = self._args
        self.alb_security_group = self.instance_security_group = None
        alb_ids = args.load_balancer_security_group_ids
        if alb_ids is None and args.load_balancer_arn is None:
            self.alb_security_group, self.instance_security_group = self._create_security_groups()
            alb_ids = [self.alb_security_group.id]
        elif args.instance_security_group_ids is None:
            assert alb_ids is not None, "resolve_args requires them with an existing load balancer"
            self.instance_security_group = self._create_instance_security_group(alb_ids)
        self._alb_security_group_ids: list[pulumi.Input[str]] = list(alb_ids or [])
        given = args.instance_security_group_ids
        if given is not None:
            self._instance_security_group_ids: list[pulumi.Input[str]] = list(given)
        else:
            assert self.instance_security_group is not None
            self._instance_security_group_ids = [self.instance_security_group.id]

    def _create_instance_security_group(self, sources: list[pulumi.Input[str]]) -> aws.ec2.SecurityGroup:
        cfg, network = self._args.config, self._args.network
        return aws.ec2.SecurityGroup(
            f"{self._name}-instance-sg",
            description=f"{self._name} instances",
            vpc_id=network.vpc_id,
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp",
                    from_port=cfg.app_port,
                    to_port=cfg.app_port,
                    security_groups=list(sources),
                    description="app port from the load balancer",
                )
            ],
            egress=[egress_anywhere()],
            tags=self._tags,
            opts=self._opts(),
        )

    def _create_security_groups(self) -> tuple[aws.ec2.SecurityGroup, aws.ec2.SecurityGroup | None]:
        cfg, network = self._args.config, self._args.network
        alb = aws.ec2.SecurityGroup(
            f"{self._name}-alb-sg",
            description=f"{self._name} load balancer",
            vpc_id=network.vpc_id,
            ingress=alb_ingress_rules(cfg, network, pulumi.InvokeOptions(parent=self)),
            egress=[egress_anywhere()],
            tags=self._tags,
            opts=self._opts(),
        )
        given = self._args.instance_security_group_ids is not None
        instances = None if given else self._create_instance_security_group([alb.id])
        return alb, instances

    def _set_up_load_balancer(self) -> None:
        """The component's own load balancer, or the given one (its ARN suffix, the CloudWatch
        dimension, is the ARN's tail; its DNS name given or looked up)."""
        args = self._args
        if args.load_balancer_arn is None:
            self.load_balancer = self._create_load_balancer()
            self._lb_arn: pulumi.Output[str] = self.load_balancer.arn
            self._lb_suffix: pulumi.Output[str] = self.load_balancer.arn_suffix
            self._lb_dns: pulumi.Output[str] = self.load_balancer.dns_name
            return
        self.load_balancer = None
        self._lb_arn = pulumi.Output.from_input(args.load_balancer_arn)
        self._lb_suffix = self._lb_arn.apply(load_balancer_suffix)
        if args.load_balancer_dns_name is not None:
            self._lb_dns = pulumi.Output.from_input(args.load_balancer_dns_name)
        else:
            found = aws.lb.get_load_balancer_output(arn=self._lb_arn, opts=pulumi.InvokeOptions(parent=self))
            self._lb_dns = found.dns_name

    def _create_load_balancer(self) -> aws.lb.LoadBalancer:
        network = self._args.network
        subnets: Any = network.subnet_ids
        return aws.lb.LoadBalancer(
            f"{self._name}-alb",
            load_balancer_type="application",
            internal=network.internal,
            security_groups=self._alb_security_group_ids,
            subnets=list(subnets) if isinstance(subnets, list) else subnets,
            tags=self._tags,
            opts=self._opts(),
        )

    def _create_slot(self, slot: SlotName) -> Slot:
        cfg, release, network = self._args.config, self._args.release, self._args.network
        live_version = release.slot(release.live).version
        boot_version = release.slot(slot).version or live_version
        booted = release.slot(slot) if release.slot(slot).version else release.slot(release.live)
        assert boot_version is not None, "the live slot always has a version (ReleaseState checks it)"
        refresh = refresh_preferences(
            rolling_settings(cfg.strategy, release),
            instance_count=cfg.instance_count,
            grace_period=cfg.health_check_grace_period,
            auto_rollback=cfg.deploy.auto_rollback,
            guarded=release.rolling is not None,
        )
        args = SlotArgs(
            service=self._name,
            slot=slot,
            config=cfg,
            boot_version=boot_version,
            boot_image=booted.image,
            capacity=release.slot(slot).capacity,
            refresh=refresh,
            vpc_id=network.vpc_id,
            subnet_ids=network.instance_subnet_ids or network.subnet_ids,
            instance_security_group_ids=self._instance_security_group_ids,
            load_balancer_suffix=self._lb_suffix,
            instance_profile=self._args.instance_profile,
            tags=self._tags,
            autoscaled=slot == release.live and release.at_rest,
        )
        return Slot(f"{self._name}-{slot}", args, self._opts())

    def _create_listeners(self) -> Listeners:
        cfg = self._args.config
        args = ListenersArgs(
            service=self._name,
            listener_port=cfg.listener_port,
            test_listener_port=cfg.test_listener_port,
            release=self._args.release,
            load_balancer_arn=self._lb_arn,
            target_group_arns={slot: s.target_group.arn for slot, s in self.slots.items()},
            tags=self._tags,
            https=cfg.https,
        )
        return Listeners(f"{self._name}-listeners", args, self._opts())

    def _create_routes(self) -> ServiceRoutes | None:
        routing = self._args.config.routing
        if routing is None:
            return None
        assert self._args.listener_arn is not None and self._args.test_listener_arn is not None
        args = ServiceRoutesArgs(
            service=self._name,
            routing=routing,
            release=self._args.release,
            listener_arn=self._args.listener_arn,
            test_listener_arn=self._args.test_listener_arn,
            target_group_arns={slot: s.target_group.arn for slot, s in self.slots.items()},
            tags=self._tags,
        )
        return ServiceRoutes(f"{self._name}-routes", args, self._opts())

    def _traffic_arns(self) -> dict[str, pulumi.Input[str] | None]:
        """The listeners of the outputs, and the service's rules when it has some."""
        if self.routes is not None:
            return {
                "listener": self._args.listener_arn,
                "test_listener": self._args.test_listener_arn,
                "rule": self.routes.production.arn,
                "test_rule": self.routes.test.arn,
            }
        assert self.listeners is not None
        return {
            "listener": self.listeners.production.arn,
            "test_listener": self.listeners.test.arn,
            "rule": None,
            "test_rule": None,
        }

    def _collect_outputs(self) -> pulumi.Output[dict[str, Any]]:
        cfg = self._args.config
        routing = cfg.routing
        slots = {slot: self._slot_outputs(s) for slot, s in self.slots.items()}

        def build(v: dict[str, Any]) -> dict[str, Any]:
            return ServiceOutputs(
                load_balancer_arn=v["lb_arn"],
                load_balancer_dimension=v["lb_dim"],
                dns_name=v["dns"],
                listener_arn=v["listener"],
                test_listener_arn=v["test_listener"],
                listener_port=cfg.listener_port,
                test_listener_port=cfg.test_listener_port,
                slots={slot: v[slot] for slot in SLOTS},
                listener_protocol="HTTP" if cfg.https is None else "HTTPS",
                rule_arn=v["rule"],
                test_rule_arn=v["test_rule"],
                hosts=tuple(routing.hosts) if routing else (),
                paths=tuple(routing.paths) if routing else (),
                host_name=cfg.https.host_name if cfg.https is not None else None,
            ).to_output()

        return pulumi.Output.all(
            lb_arn=self._lb_arn,
            lb_dim=self._lb_suffix,
            dns=self._lb_dns,
            **self._traffic_arns(),
            **slots,
        ).apply(build)

    @staticmethod
    def _slot_outputs(slot: Slot) -> pulumi.Output[SlotOutputs]:
        return pulumi.Output.all(
            arn=slot.target_group.arn,
            dim=slot.target_group.arn_suffix,
            asg=slot.group.name,
            alarms=pulumi.Output.all(*slot.alarm_names),
        ).apply(lambda v: SlotOutputs(v["arn"], v["dim"], v["asg"], tuple(v["alarms"])))
