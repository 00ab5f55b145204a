"""How long the Pulumi program takes to evaluate under the mock runtime, for 1, 10 and 50 services.

Each stack is the production stack's service copied N times (mid-canary, so every slot runs and
the A/B rules are present too: the largest graph a release produces). The figure is the wall
time of :func:`rfs_deploy.sim.mockrun.run_program`: config validation, every component and
resource registration, and the stack outputs. Imports are warmed up first. Goal: 50 services
under 3 s. Prints figures only; nothing here asserts a timing.

For scale, the last column of each row is the *floor*: the same number of dependency-free
security groups registered by a two-line program through the same harness, i.e. what Pulumi's
Python SDK itself costs per resource on this machine before the program does anything.

    python benchmarks/bench_program.py [--repeat N] [--sizes 1,10,50]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rfs_deploy.config import read_namespace  # noqa: E402
from rfs_deploy.sim.mockrun import run_program  # noqa: E402

TEMPLATE = "api-service"
RELEASE = {
    "live": "blue",
    "blue": {"version": "v1.0.0", "capacity": 10},
    "green": {"version": "v2.0.0", "capacity": 10},
    "weights": {"blue": 70, "green": 30},
    "stickiness": 300,
    "variants": {"header": "X-Variant", "cookie": "variant", "rulePriority": 100},
}


def namespace(services: int) -> dict[str, Any]:
    """The production namespace with ``services`` copies of its service."""
    base = read_namespace(REPO / "stacks" / "Pulumi.production.yaml")
    service = base["services"][TEMPLATE]
    names = [f"svc-{i:03d}" for i in range(services)]
    return {
        **base,
        "services": {name: copy.deepcopy(service) for name in names},
        "release": {name: copy.deepcopy(RELEASE) for name in names},
    }


def measure(services: int, repeat: int) -> tuple[list[float], int]:
    ns = namespace(services)
    times, count = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        run = run_program(ns, stack="bench")
        times.append(time.perf_counter() - start)
        count = len(run.resources)
    return times, count


def floor(resources: int) -> float:
    """Seconds to register ``resources`` independent security groups (the SDK's own cost)."""
    import pulumi_aws as aws

    def program() -> None:
        for i in range(resources):
            aws.ec2.SecurityGroup(f"floor-{i}", vpc_id="vpc-0a1b2c3d", description="floor")

    start = time.perf_counter()
    run_program({}, stack="floor", program=program)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (default 3)")
    parser.add_argument("--sizes", default="1,10,50", help="comma-separated service counts")
    args = parser.parse_args()
    measure(1, 1)  # warm-up: imports and first-use caches
    print(
        f"{'services':>8}  {'resources':>9}  {'median s':>8}  {'min s':>6}  {'max s':>6}  {'ms/resource':>11}"
        f"  {'floor s':>7}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        times, count = measure(size, args.repeat)
        median = statistics.median(times)
        print(
            f"{size:>8}  {count:>9}  {median:>8.3f}  {min(times):>6.3f}  {max(times):>6.3f}"
            f"  {1000 * median / count:>11.2f}  {floor(count):>7.3f}"
        )


if __name__ == "__main__":
    main()
