"""The Pulumi program: read the stack config, build every service, export the outputs.

``__main__.py`` calls :func:`run`; the mock-runtime harness (:mod:`rfs_deploy.sim.mockrun`)
calls it too, so tests and the sandbox evaluate exactly the program ``pulumi up`` runs.

The release state it applies is not simply the config's: see :mod:`rfs_deploy.releases`. A
service keeps its live release state (the previous update's ``release`` output) unless this
update's owner is the driver releasing it, so a ``pulumi up`` from a stale checkout never
reverts a release.

:func:`run` is one consumer of the components. A program of your own uses the same pieces
(docs/components.md): :func:`read_services` for the services and resolved release states from
the stack config, :class:`~rfs_deploy.infra.service.Service` per service with your network,
and :func:`export_services` for the outputs the driver reads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pydantic import ValidationError

from rfs_deploy import releases
from rfs_deploy.config import ReleaseState, StackConfig, load_from_pulumi
from rfs_deploy.config.loading import NAMESPACE, format_error, parse_release, require_network
from rfs_deploy.config.model import SERVICE_NAME, ServiceConfig, shown
from rfs_deploy.errors import ConfigError
from rfs_deploy.infra.routing import SharedAlb, SharedAlbArgs
from rfs_deploy.infra.service import STACK_TAG, Service, ServiceArgs
from rfs_deploy.outputs import OUTPUT_NAME

#: The engine's built-in function returning a stack's outputs (what StackReference uses).
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
#: Tries of that read (0.25 s, 0.5 s, ... apart).
READ_ATTEMPTS = 6


def run() -> None:
    """The program body. Invalid config stops it with one line naming the key (a RunError,
    which Pulumi prints without a traceback); so does a release-state conflict."""
    try:
        config = load_from_pulumi()
    except ConfigError as err:
        raise pulumi.RunError(str(err)) from err
    config = config.model_copy(update={"release": resolve_release(config.release)})
    services = build_services(config)
    export_services(services, config.release)


def resolve_release(configured: Mapping[str, ReleaseState]) -> dict[str, ReleaseState]:
    """The release states this update applies: the configured ones checked against the live
    ones (:func:`rfs_deploy.releases.resolve`), a warning logged for each stale value kept
    live; a conflict (or an unreadable backend) stops the program with one line."""
    try:
        owner, expect = releases.environment_owner()
        resolution = releases.resolve(configured, live_release(), owner, expect, stack=pulumi.get_stack())
    except (ConfigError, releases.ReleaseConflict) as err:
        raise pulumi.RunError(str(err)) from err
    for warning in resolution.warnings:
        pulumi.log.warn(warning)
    return resolution.release


def export_services(services: Mapping[str, Service], release: Mapping[str, ReleaseState]) -> None:
    """Export what the driver reads: every service's outputs (:data:`OUTPUT_NAME`) and the
    release states applied (:data:`releases.RELEASE_OUTPUT`, what the next update resolves
    against)."""
    pulumi.export(OUTPUT_NAME, {name: service.outputs for name, service in services.items()})
    pulumi.export(releases.RELEASE_OUTPUT, {name: state.to_config() for name, state in release.items()})


@dataclass(frozen=True)
class DrivenServices:
    """The services of a program of your own, as the stack config and the driver set them."""

    #: ``rfs-deploy:services``, validated.
    services: dict[str, ServiceConfig]
    #: The release state to apply per service (``rfs-deploy:release``, resolved against the live one).
    release: dict[str, ReleaseState]
    #: ``rfs-deploy:tags`` (empty when unset).
    tags: dict[str, str]

    def args(self, name: str, **network: Any) -> ServiceArgs:
        """ServiceArgs for service ``name``: its config, release state and tags, plus the
        network and existing resources given as keywords (``vpc_id=vpc.id, subnet_ids=...``)."""
        tags = {**self.tags, **network.pop("tags", {})}
        return ServiceArgs(config=self.services[name], release=self.release[name], tags=tags, **network)


def read_services() -> DrivenServices:
    """Inside a program of your own: read ``rfs-deploy:services``, ``rfs-deploy:release`` and
    ``rfs-deploy:tags`` from the stack config (the keys the driver reads and writes), validate
    them with one-line errors, and resolve the release states as :func:`run` does. The network
    is not read: your program passes its own to each Service."""
    cfg = pulumi.Config(NAMESPACE)
    try:
        services = _read_mapping(cfg, "services")
        release_raw = _read_mapping(cfg, "release")
        tags = _read_mapping(cfg, "tags", required=False)
        if not services:
            raise ConfigError(f"{NAMESPACE}:services", "needs at least one service")
        configs = {name: _service_config(name, value) for name, value in services.items()}
        missing = sorted(set(configs) - set(release_raw))
        if missing:
            raise ConfigError(
                f"{NAMESPACE}:release.{missing[0]}", "missing: every service needs a release state"
            )
        unknown = sorted(set(release_raw) - set(configs))
        if unknown:
            raise ConfigError(f"{NAMESPACE}:release.{unknown[0]}", "names no service in services")
        release = {name: parse_release(name, release_raw[name]) for name in configs}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise ConfigError(f"{NAMESPACE}:tags", "a mapping of tag keys to string values")
    except ConfigError as err:
        raise pulumi.RunError(str(err)) from err
    return DrivenServices(configs, resolve_release(release), dict(tags))


def _read_mapping(cfg: pulumi.Config, key: str, *, required: bool = True) -> dict[str, Any]:
    value = cfg.get_object(key)
    if value is None:
        if required:
            raise ConfigError(f"{NAMESPACE}:{key}", "missing")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{NAMESPACE}:{key}", "must be a mapping")
    return value


def _service_config(name: str, value: Any) -> ServiceConfig:
    if not SERVICE_NAME.fullmatch(name):
        raise ConfigError(
            f"{NAMESPACE}:services",
            f"service name {shown(name)} must be 1-15 characters of a-z, 0-9 and '-', starting with a letter",
        )
    try:
        return ServiceConfig.model_validate(value)
    except ValidationError as exc:
        raise format_error(exc, ServiceConfig, prefix=f"{NAMESPACE}:services.{name}") from None


def live_release() -> dict[str, ReleaseState] | None:
    """The release state the stack's last successful update applied (its ``release`` output),
    read from the backend; None for a new stack or one without the output."""
    name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    for attempt in range(READ_ATTEMPTS):
        try:
            result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": name})
            break
        except Exception as exc:
            # the file and S3 backends can be caught writing the checkpoint ("failed to load
            # checkpoint: EOF"): try again; a backend that keeps refusing is said, never guessed
            if attempt == READ_ATTEMPTS - 1:
                raise ConfigError(
                    "", f"cannot read the live release state of stack {name} ({exc}); nothing was changed"
                ) from None
            time.sleep(0.25 * 2**attempt)
    outputs = (result.value or {}).get("outputs") if isinstance(result.value, dict) else None
    if not isinstance(outputs, dict):
        return None
    return releases.parse_release_output(outputs.get(releases.RELEASE_OUTPUT))


def build_services(config: StackConfig) -> dict[str, Service]:
    """One :class:`Service` component per configured service (SPEC P8), each with its own ALB,
    or (``routing``) with rules on one of the stack's shared ``loadBalancers``."""
    try:
        network = require_network(config).network
    except ConfigError as err:
        raise pulumi.RunError(str(err)) from None
    assert network is not None
    shared = {
        name: SharedAlb(
            name,
            SharedAlbArgs(settings, network, {**config.tags, STACK_TAG: pulumi.get_stack()}),
        )
        for name, settings in config.load_balancers.items()
    }
    services: dict[str, Service] = {}
    for name, service in config.services.items():
        routing = service.routing
        if routing is None or routing.load_balancer is None:
            args = ServiceArgs(
                config=service, release=config.release[name], network=network, tags=config.tags
            )
        else:
            alb, settings = shared[routing.load_balancer], config.load_balancers[routing.load_balancer]
            # the service's listeners are the shared ones: their ports and protocol are its own
            ports = {
                "listener_port": settings.listener_port,
                "test_listener_port": settings.test_listener_port,
                "https": settings.https,
            }
            args = ServiceArgs(
                config=service.model_copy(update=ports),
                release=config.release[name],
                network=network,
                tags=config.tags,
                load_balancer_arn=alb.load_balancer.arn,
                load_balancer_dns_name=alb.load_balancer.dns_name,
                load_balancer_security_group_ids=[alb.security_group.id],
                listener_arn=alb.production.arn,
                test_listener_arn=alb.test.arn,
            )
        services[name] = Service(name, args)
    return services
