"""The Pulumi program: read the stack config, build every service, export the outputs.

``__main__.py`` calls :func:`run`; the mock-runtime harness (:mod:`rfs_deploy.infra.mockrun`)
calls it too, so tests and the sandbox evaluate exactly the program ``pulumi up`` runs.
"""

from __future__ import annotations

import pulumi

from rfs_deploy.config import StackConfig, load_from_pulumi
from rfs_deploy.errors import ConfigError
from rfs_deploy.infra.service import Service, ServiceArgs
from rfs_deploy.outputs import OUTPUT_NAME


def run() -> None:
    """The program body. Invalid config stops it with one line naming the key (a RunError,
    which Pulumi prints without a traceback)."""
    try:
        config = load_from_pulumi()
    except ConfigError as err:
        raise pulumi.RunError(str(err)) from err
    services = build_services(config)
    pulumi.export(OUTPUT_NAME, {name: service.outputs for name, service in services.items()})


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
