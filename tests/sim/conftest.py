"""Sandbox fixtures: a small stack file and sandboxes that are always closed (moto is process-global)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rfs_deploy.sim.sandbox import Sandbox

START = 1_800_000_000.0

STACK: dict[str, Any] = {
    "config": {
        "aws:region": "us-east-1",
        "rfs-deploy:network": {
            "vpcId": "vpc-0a1b2c3d4e5f60718",
            "subnetIds": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
        },
        "rfs-deploy:services": {
            "api-service": {
                "artifact": {
                    "amis": {"v1.0.0": "ami-0aa1100000000a100", "v2.0.0": "ami-0aa1100000000a200"},
                    "userData": "#!/bin/bash\necho APP_VERSION=${version}\n",
                },
                "instanceCount": 4,
                "healthCheckGracePeriod": 60,
                "strategy": {"type": "rolling", "batchSize": 1, "batchInterval": 30, "instanceWarmup": 60},
            }
        },
        "rfs-deploy:release": {
            "api-service": {
                "live": "blue",
                "blue": {"version": "v1.0.0", "capacity": 4},
                "green": {"capacity": 0},
                "weights": {"blue": 100, "green": 0},
            }
        },
    }
}


@pytest.fixture
def stack_file(tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.sandbox.yaml"
    path.write_text(yaml.safe_dump(STACK))
    return path


@pytest.fixture
def open_sandbox(stack_file: Path) -> Iterator[Callable[..., Sandbox]]:
    """Open (and provision) sandboxes over ``stack_file``; all are closed at teardown."""
    opened: list[Sandbox] = []

    def factory(scenario: str = "healthy", provision: bool = True, **kwargs: Any) -> Sandbox:
        kwargs.setdefault("start", START)
        box = Sandbox.open(kwargs.pop("stack", stack_file), scenario=scenario, **kwargs)
        opened.append(box)
        if provision:
            box.provision()
        return box

    yield factory
    for box in reversed(opened):
        box.close()
