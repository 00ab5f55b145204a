"""The Pulumi program: read the stack config, build every service, export the outputs.

``__main__.py`` calls :func:`run`; the mock-runtime harness (:mod:`rfs_deploy.sim.mockrun`)
calls it too, so tests and the sandbox evaluate exactly the program ``pulumi up`` runs.

The release state it applies is not simply the config's: see :mod:`rfs_deploy.releases`. A
service keeps its live release state (the previous update's ``release`` output) unless this
update's owner is the driver releasing it, so a ``pulumi up`` from a stale checkout never
reverts a release.
"""

from __future__ import annotations

import time

import pulumi

from rfs_deploy import releases
from rfs_deploy.config import ReleaseState, StackConfig, load_from_pulumi
from rfs_deploy.errors import ConfigError
from rfs_deploy.infra.service import Service, ServiceArgs
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
        owner, expect = releases.environment_owner()
        resolution = releases.resolve(config.release, live_release(), owner, expect, stack=pulumi.get_stack())
    except (ConfigError, releases.ReleaseConflict) as err:
        raise pulumi.RunError(str(err)) from err
    for warning in resolution.warnings:
        pulumi.log.warn(warning)
    config = config.model_copy(update={"release": resolution.release})
    services = build_services(config)
    pulumi.export(OUTPUT_NAME, {name: service.outputs for name, service in services.items()})
    pulumi.export(
        releases.RELEASE_OUTPUT, {name: state.to_config() for name, state in resolution.release.items()}
    )


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
    """One :class:`Service` component per configured service (SPEC P8), each with its own ALB."""
    return {
        name: Service(
            name,
            ServiceArgs(
                config=service, release=config.release[name], network=config.network, tags=config.tags
            ),
        )
        for name, service in config.services.items()
    }
