"""The Pulumi components of rfs-deploy (they run inside ``pulumi up``).

``program.run`` is the program; ``service.Service`` one service with its two slots
(``slot.Slot``), listener set (``listeners.Listeners``) and alarms (``alarms``);
``refresh`` maps rolling settings to instance refresh preferences. The harness that evaluates
the program under Pulumi's mock runtime (for the sandbox, tests and benchmarks) is not part of
the program: it is :mod:`rfs_deploy.sim.mockrun`.

For a Pulumi program of your own (docs/components.md)::

    from rfs_deploy.infra import Service, export_services, read_services

    driven = read_services()
    api = Service("api", driven.args("api", vpc_id=vpc.id, subnet_ids=[s.id for s in subnets]))
    export_services({"api": api}, driven.release)

The names below are loaded on first use, so importing one module of this package (the
sandbox reads ``slot.VERSION_TAG``) does not import them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rfs_deploy.infra.args import ArgsError, ServiceArgs
    from rfs_deploy.infra.program import DrivenServices, export_services, read_services, resolve_release
    from rfs_deploy.infra.service import Service

#: Public name -> the module defining it.
_EXPORTS = {
    "ArgsError": "rfs_deploy.infra.args",
    "ServiceArgs": "rfs_deploy.infra.args",
    "Service": "rfs_deploy.infra.service",
    "DrivenServices": "rfs_deploy.infra.program",
    "export_services": "rfs_deploy.infra.program",
    "read_services": "rfs_deploy.infra.program",
    "resolve_release": "rfs_deploy.infra.program",
}

__all__ = [
    "ArgsError",
    "DrivenServices",
    "Service",
    "ServiceArgs",
    "export_services",
    "read_services",
    "resolve_release",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
