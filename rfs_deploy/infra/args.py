"""The arguments of the :class:`~rfs_deploy.infra.service.Service` component, for your own program.

:class:`ServiceArgs` is a frozen dataclass in the style of awsx's args classes: every value that
names an AWS resource (VPC, subnets, load balancer, security groups, instance profile) is a
``pulumi.Input``, so Outputs of resources in the same program and StackReference outputs can be
passed as they are. The service config and its release state are either the
validated models (:class:`~rfs_deploy.config.model.ServiceConfig`,
:class:`~rfs_deploy.config.model.ReleaseState`) or the mapping a stack file holds (camelCase).

Plain values are checked when the component is built, and a bad one stops the program with one
line naming the field (``ServiceArgs.subnet_ids: ...``, ``config rfs-deploy:services.api.
instanceCount: ...``), raised as a ``pulumi.RunError``, which Pulumi prints without a traceback.
Values still unknown (Outputs) cannot be checked before AWS sees them; they are passed through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pydantic import ValidationError

from rfs_deploy.config.loading import NAMESPACE, format_error, parse_release
from rfs_deploy.config.model import SERVICE_NAME, Network, ReleaseState, ServiceConfig, missing_image, shown
from rfs_deploy.errors import ConfigError

VPC_ID = re.compile(r"vpc-[0-9a-f]{1,17}")
SUBNET_ID = re.compile(r"subnet-[0-9a-f]{1,17}")
SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-f]{1,17}")
LOAD_BALANCER_ARN = re.compile(
    r"arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:loadbalancer/app/.+"
)
LISTENER_ARN = re.compile(r"arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:listener/app/.+")
INSTANCE_PROFILE = re.compile(r"(arn:aws[a-z-]*:iam::[0-9]{12}:instance-profile/)?[\w+=,.@/-]{1,128}")
#: Placeholders standing in for Input ids while the plain network settings are validated.
_PLACEHOLDER_VPC = "vpc-0"
_PLACEHOLDER_SUBNETS = ["subnet-0", "subnet-1"]


class ArgsError(pulumi.RunError):
    """A plain value of the component's args is wrong (one line naming the field)."""


@dataclass(frozen=True)
class ServiceArgs:
    """Everything a :class:`~rfs_deploy.infra.service.Service` needs.

    Required: ``config`` and ``release``, and the network: ``vpc_id`` and ``subnet_ids`` (or a
    ``network`` model/mapping carrying them, as the stack file's ``network`` key does). The rest
    is optional; each existing resource given replaces the one the component would create.
    """

    #: The service's settings: a ServiceConfig, or the stack file's mapping for it (camelCase).
    config: ServiceConfig | Mapping[str, Any]
    #: Its release state: a ReleaseState, or the mapping ``rfs-deploy:release.<name>`` holds.
    release: ReleaseState | Mapping[str, Any]
    vpc_id: pulumi.Input[str] | None = None
    #: Subnets of the load balancer (two zones at least) and, by default, of the instances.
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
    instance_subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
    #: The plain network settings (``internal``, ``ingressCidrs`` and the other keys of the stack
    #: file's ``network`` mapping), as a Network or a mapping; ids given above win over its own.
    network: Network | Mapping[str, Any] | None = None
    #: An existing Application Load Balancer: no load balancer (nor its security group) is
    #: created; the listeners are added to this one.
    load_balancer_arn: pulumi.Input[str] | None = None
    #: That load balancer's DNS name (for the outputs); looked up from the ARN when not given.
    load_balancer_dns_name: pulumi.Input[str] | None = None
    #: Existing security groups of the load balancer: none is created for it; the instances'
    #: group admits the app port from these.
    load_balancer_security_group_ids: Sequence[pulumi.Input[str]] | None = None
    #: Existing security groups of the instances: none is created for them.
    instance_security_group_ids: Sequence[pulumi.Input[str]] | None = None
    #: An IAM instance profile for the launch templates: its name or its ARN.
    instance_profile: pulumi.Input[str] | None = None
    #: Tags on every resource (added to rfs-deploy's own service, stack and slot tags).
    tags: Mapping[str, str] = field(default_factory=dict)
    #: With ``config.routing`` (a load balancer shared by several services): the shared
    #: production and test listeners the service's rules go on (docs/shared-alb.md).
    listener_arn: pulumi.Input[str] | None = None
    test_listener_arn: pulumi.Input[str] | None = None


@dataclass(frozen=True)
class ResolvedArgs:
    """ServiceArgs after validation: models for the config and release, the network as a
    :class:`Network` whose id fields may hold Inputs (the component reads them as Inputs)."""

    config: ServiceConfig
    release: ReleaseState
    network: Network
    load_balancer_arn: pulumi.Input[str] | None
    load_balancer_dns_name: pulumi.Input[str] | None
    load_balancer_security_group_ids: list[pulumi.Input[str]] | None
    instance_security_group_ids: list[pulumi.Input[str]] | None
    instance_profile: pulumi.Input[str] | None
    tags: dict[str, str]
    listener_arn: pulumi.Input[str] | None = None
    test_listener_arn: pulumi.Input[str] | None = None


def _fail(field_name: str, reason: str) -> ArgsError:
    return ArgsError(f"ServiceArgs.{field_name}: {reason}")


def _check_id(field_name: str, value: Any, pattern: re.Pattern[str], what: str) -> None:
    """A plain string must match; an Output is checked by AWS."""
    if isinstance(value, str):
        if not pattern.fullmatch(value):
            raise _fail(field_name, f"{shown(value)} is not {what}")
    elif value is not None and not isinstance(value, pulumi.Output):
        raise _fail(field_name, f"must be a string or an Output, not {type(value).__name__}")


def _check_ids(
    field_name: str, value: Any, pattern: re.Pattern[str], what: str, minimum: int = 1
) -> pulumi.Input[Sequence[pulumi.Input[str]]]:
    """A list of ids (each plain or an Output), or one Output of a list (a StackReference's)."""
    if isinstance(value, pulumi.Output):
        return value
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(field_name, f"must be a list of {what}s (or an Output of one)")
    if len(value) < minimum:
        raise _fail(field_name, f"needs at least {minimum} {what}s, got {len(value)}")
    for index, item in enumerate(value):
        _check_id(f"{field_name}[{index}]", item, pattern, what)
    return list(value)


def _as_config(name: str, value: Any) -> ServiceConfig:
    if isinstance(value, ServiceConfig):
        return value
    if not isinstance(value, Mapping):
        raise _fail("config", "must be a ServiceConfig or the stack file's mapping for the service")
    try:
        return ServiceConfig.model_validate(dict(value))
    except ValidationError as exc:
        raise ArgsError(
            str(format_error(exc, ServiceConfig, prefix=f"{NAMESPACE}:services.{name}"))
        ) from None


def _as_release(name: str, value: Any) -> ReleaseState:
    if isinstance(value, ReleaseState):
        return value
    if not isinstance(value, Mapping):
        raise _fail("release", "must be a ReleaseState or the mapping rfs-deploy:release.<service> holds")
    try:
        return parse_release(name, dict(value))
    except ConfigError as err:
        raise ArgsError(str(err)) from None


def _check_images(name: str, config: ServiceConfig, release: ReleaseState) -> None:
    # the same rule as the stack file's (StackConfig): every running version has an image
    found = missing_image(name, config, release)
    if found is not None:
        key, reason = found
        raise ArgsError(str(ConfigError(f"{NAMESPACE}:{key}", reason)))


def _as_network(args: ServiceArgs) -> Network:
    given = args.network
    if isinstance(given, Network):
        base: dict[str, Any] = given.model_dump(by_alias=True)
    elif given is None:
        base = {}
    elif isinstance(given, Mapping):
        base = dict(given)
    else:
        raise _fail("network", "must be a Network or the stack file's network mapping")
    vpc_id = args.vpc_id if args.vpc_id is not None else base.get("vpcId")
    subnets = args.subnet_ids if args.subnet_ids is not None else base.get("subnetIds")
    instance_subnets = (
        args.instance_subnet_ids if args.instance_subnet_ids is not None else base.get("instanceSubnetIds")
    )
    if vpc_id is None:
        raise _fail("vpc_id", "required (the VPC of the target groups and security groups)")
    if subnets is None:
        raise _fail("subnet_ids", "required (the load balancer's subnets, in two zones at least)")
    _check_id("vpc_id", vpc_id, VPC_ID, "a VPC id (vpc-...)")
    # an existing load balancer has its own subnets; these then only place instances
    minimum = 1 if args.load_balancer_arn is not None else 2
    subnets = _check_ids("subnet_ids", subnets, SUBNET_ID, "subnet id", minimum)
    if instance_subnets is not None:
        instance_subnets = _check_ids("instance_subnet_ids", instance_subnets, SUBNET_ID, "subnet id")
    plain = {**base, "vpcId": _PLACEHOLDER_VPC, "subnetIds": _PLACEHOLDER_SUBNETS}
    plain.pop("instanceSubnetIds", None)
    try:
        checked = Network.model_validate(plain)
    except ValidationError as exc:
        raise ArgsError(str(format_error(exc, Network, prefix="ServiceArgs.network"))) from None
    # the ids may be Inputs: set after validation, which only the plain settings went through
    return checked.model_copy(
        update={"vpc_id": vpc_id, "subnet_ids": subnets, "instance_subnet_ids": instance_subnets}
    )


def _check_tags(tags: Any) -> dict[str, str]:
    if not isinstance(tags, Mapping):
        raise _fail("tags", "must be a mapping of tag keys to values")
    if len(tags) > 40:
        raise _fail("tags", f"at most 40 tags, got {len(tags)}")
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise _fail("tags", f"tag key {shown(key)} must be a string of 1-128 characters")
        if not isinstance(value, str) or len(value) > 256:
            raise _fail(f"tags.{key}", "a tag value is a string of at most 256 characters")
    return dict(tags)


def _sg_list(field_name: str, value: Any) -> list[pulumi.Input[str]] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not 1 <= len(value) <= 5:
        raise _fail(field_name, "a list of 1-5 security group ids")
    for index, item in enumerate(value):
        _check_id(f"{field_name}[{index}]", item, SECURITY_GROUP_ID, "a security group id (sg-...)")
    return list(value)


def resolve_args(name: str, args: ServiceArgs) -> ResolvedArgs:
    """Validate ``args`` for the service ``name``; ArgsError (one line) when a plain value is wrong."""
    if not isinstance(args, ServiceArgs):
        raise ArgsError(f"Service {name!r}: args must be a ServiceArgs, not {type(args).__name__}")
    if not SERVICE_NAME.fullmatch(name):
        raise ArgsError(
            f"Service name {shown(name)} must be 1-15 characters of a-z, 0-9 and '-', starting with a letter"
        )
    config = _as_config(name, args.config)
    release = _as_release(name, args.release)
    _check_images(name, config, release)
    network = _as_network(args)
    _check_id(
        "load_balancer_arn", args.load_balancer_arn, LOAD_BALANCER_ARN, "an Application Load Balancer ARN"
    )
    _check_id("instance_profile", args.instance_profile, INSTANCE_PROFILE, "an instance profile name or ARN")
    alb_groups = _sg_list("load_balancer_security_group_ids", args.load_balancer_security_group_ids)
    instance_groups = _sg_list("instance_security_group_ids", args.instance_security_group_ids)
    if args.load_balancer_arn is not None and alb_groups is None and instance_groups is None:
        raise _fail(
            "load_balancer_security_group_ids",
            "required with load_balancer_arn (the instances' security group admits the load balancer's), "
            "unless instance_security_group_ids is given",
        )
    _check_routing(config, args)
    return ResolvedArgs(
        config=config,
        release=release,
        network=network,
        load_balancer_arn=args.load_balancer_arn,
        load_balancer_dns_name=args.load_balancer_dns_name,
        load_balancer_security_group_ids=alb_groups,
        instance_security_group_ids=instance_groups,
        instance_profile=args.instance_profile,
        tags=_check_tags(args.tags),
        listener_arn=args.listener_arn,
        test_listener_arn=args.test_listener_arn,
    )


def _check_routing(config: ServiceConfig, args: ServiceArgs) -> None:
    """A routed service needs the shared load balancer and its two listeners; listeners given
    without routing would be listeners the service never uses."""
    for field_name in ("listener_arn", "test_listener_arn"):
        value = getattr(args, field_name)
        _check_id(field_name, value, LISTENER_ARN, "an Application Load Balancer listener ARN")
        if config.routing is None and value is not None:
            raise _fail(field_name, "only with config.routing (a service behind a shared load balancer)")
        if config.routing is not None and value is None:
            raise _fail(field_name, "required with config.routing (the shared load balancer's listener)")
    if config.routing is not None and args.load_balancer_arn is None:
        raise _fail("load_balancer_arn", "required with config.routing (the shared load balancer)")
