"""The sandbox tests' small stack file, and variants of it."""

from __future__ import annotations

import copy
from typing import Any

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


def stack_with(service: dict[str, Any], capacity: int = 4) -> dict[str, Any]:
    """:data:`STACK` with ``service`` as api-service's settings, live on blue with ``capacity``."""
    stack = copy.deepcopy(STACK)
    stack["config"]["rfs-deploy:services"]["api-service"] = service
    stack["config"]["rfs-deploy:release"]["api-service"]["blue"]["capacity"] = capacity
    return stack
