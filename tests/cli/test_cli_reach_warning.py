"""``plan`` and ``deploy`` warn, in one line, when the stack file alone shows that the driver may
not reach the test listener (docs/listeners.md): never in the sandbox, which enforces no security
group, and not for a program of your own whose network the driver cannot see."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rfs_deploy.cli.commands import _reach_warning
from rfs_deploy.config import load_stack_config, read_namespace

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = read_namespace(REPO / "stacks" / "Pulumi.production.yaml")


class StackFileBackend:
    """The backend seam's read_config, from a namespace (the rest of the seam is not asked)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace

    def read_config(self) -> Any:
        return load_stack_config(self.namespace)


def warning_for(network_changes: dict[str, Any] | None, backend: str = "pulumi") -> str | None:
    namespace = copy.deepcopy(PRODUCTION)
    if network_changes is None:
        del namespace["network"]
    else:
        namespace["network"].update(network_changes)
    seams = SimpleNamespace(backend=StackFileBackend(namespace))
    return _reach_warning(argparse.Namespace(backend=backend), seams)  # type: ignore[arg-type]


def test_an_internet_facing_load_balancer_with_the_default_test_ingress_warns() -> None:
    warning = warning_for({})
    assert warning is not None and "\n" not in warning
    assert "internet-facing" in warning and "network.testIngressCidrs" in warning


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"testIngressCidrs": []}, "admits nobody"),
        ({"testIngressCidrs": ["198.51.100.7/32"]}, None),
        ({"internal": True}, None),
    ],
)
def test_the_stack_files_test_ingress_decides(changes: dict[str, Any], says: str | None) -> None:
    warning = warning_for(changes)
    assert (warning is None) if says is None else (warning is not None and says in warning)


def test_no_warning_in_the_sandbox_or_without_a_network_key() -> None:
    assert warning_for({}, backend="sim") is None
    assert warning_for(None) is None
