"""Wall time of a sandbox deployment: the 10-step canary with 60 s intervals (goal: under 10 s).

Two figures, each the median of ``--repeat`` runs:

* **deployment**: :meth:`Driver.deploy` of ``api-service`` v1.0.0 → v2.0.0 on the repository's
  ``production`` stack (canary 10 % + 10 % every 60 s: ten weights, ten analysis steps, a
  300 s warm-up), in this process, imports done and the sandbox already open. Where that time
  goes: stack updates (the real program under Pulumi's mock runtime, applied to moto), virtual
  time passing (the physics: traffic, CloudWatch datapoints, alarms), GetMetricData calls, and
  the rest (listener checks, target health, records).
* **command**: ``rfs-deploy --backend sim --quiet simulate`` as a new process, start to exit:
  interpreter, imports, a fresh sandbox and its first update, the deployment, the PNG+HTML report.
  Opening the sandbox (fresh session + first update) is also timed in-process on its own.

Prints figures only; nothing here asserts a timing. State goes to a temp dir.

    python benchmarks/bench_sandbox.py [--repeat N] [--scenario healthy] [--strategy canary]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Meter:
    """Calls and seconds spent in one kind of work."""

    calls: int = 0
    seconds: float = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - start

        return timed

    @property
    def mean(self) -> float:
        return self.seconds / self.calls if self.calls else 0.0


@dataclass
class Deployment:
    open_seconds: float
    wall: float
    #: CPU seconds of this process (all threads) during the deployment: less sensitive to a busy host.
    cpu: float
    status: str
    virtual: float
    meters: dict[str, Meter] = field(default_factory=dict)
    ticks: int = 0


def one_deployment(scenario: str, strategy: str) -> Deployment:
    """Open a fresh sandbox, then time one deployment with its phases metered."""
    from rfs_deploy.connect import open_seams
    from rfs_deploy.drive.driver import Driver

    start = time.perf_counter()
    seams = open_seams("production", backend="sim", scenario=scenario, fresh=True)
    opened = time.perf_counter() - start
    meters = {"stack updates": Meter(), "virtual time (physics)": Meter(), "GetMetricData": Meter()}
    try:
        backend: Any = seams.backend
        clock: Any = seams.clock
        metrics: Any = seams.metrics
        backend.up = meters["stack updates"].wrap(backend.up)
        clock.advance = meters["virtual time (physics)"].wrap(clock.advance)
        metrics.get_metric_data = meters["GetMetricData"].wrap(metrics.get_metric_data)
        start, cpu_start = time.perf_counter(), time.process_time()
        record = asyncio.run(Driver(seams).deploy("api-service", "v2.0.0", strategy))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        seams.close()
    return Deployment(
        opened, wall, cpu, record.status.value, record.duration or 0.0, meters, len(record.verdicts)
    )


def command(scenario: str, strategy: str, state: Path) -> float:
    """Seconds for ``rfs-deploy --backend sim --quiet simulate`` in a new process."""
    script = Path(sys.executable).with_name("rfs-deploy")
    argv = [str(script)] if script.is_file() else [sys.executable, "-m", "rfs_deploy.cli"]
    env = {**os.environ, "RFS_DEPLOY_STATE": str(state), "RFS_DEPLOY_PROJECT": str(REPO)}
    args = ["--backend", "sim", "--quiet", "simulate", "--scenario", scenario, "--strategy", strategy]
    start = time.perf_counter()
    subprocess.run(
        [*argv, *args, "--report", str(state / "report")],
        cwd=state,
        env=env,
        check=False,
        capture_output=True,
    )
    return time.perf_counter() - start


def interpreter(state: Path) -> float:
    """Seconds for a bare ``python -c pass`` (the floor of any command)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], cwd=state, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenario", default="healthy")
    parser.add_argument("--strategy", default="canary")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        state = Path(tmp)
        os.environ["RFS_DEPLOY_STATE"] = str(state / "in-process")
        os.environ["RFS_DEPLOY_PROJECT"] = str(REPO)
        start = time.perf_counter()
        import rfs_deploy.drive.driver
        import rfs_deploy.sim.mockrun
        import rfs_deploy.sim.sandbox  # noqa: F401

        imports = time.perf_counter() - start
        runs = [one_deployment(args.scenario, args.strategy) for _ in range(args.repeat)]
        commands = [command(args.scenario, args.strategy, state) for _ in range(args.repeat)]
        floor = interpreter(state)
    report(args, imports, runs, commands, floor)


def report(
    args: argparse.Namespace, imports: float, runs: list[Deployment], commands: list[float], floor: float
) -> None:
    med = statistics.median
    last = runs[-1]
    print(f"{args.strategy} under {args.scenario}: {last.status}, {last.virtual:.0f} s of virtual time")
    print(
        f"deployment (in-process, median of {len(runs)}): {med(r.wall for r in runs):6.2f} s wall"
        f"   runs: {', '.join(f'{r.wall:.2f}' for r in runs)}"
    )
    print(f"  CPU time of the deployment {med(r.cpu for r in runs):6.2f} s (all threads of this process)")
    for name in last.meters:
        calls = med(r.meters[name].calls for r in runs)
        seconds = med(r.meters[name].seconds for r in runs)
        mean = med(r.meters[name].mean for r in runs)
        print(f"  {name:<24} {calls:5.0f} calls {seconds:6.2f} s   mean {1000 * mean:6.1f} ms")
    other = med(r.wall - sum(m.seconds for m in r.meters.values()) for r in runs)
    print(f"  {'other driver work':<24}             {other:6.2f} s")
    print(f"  analysis verdicts         {med(r.ticks for r in runs):5.0f}")
    print(f"open a fresh sandbox (first update included): {med(r.open_seconds for r in runs):6.2f} s")
    print(f"imports (drive, mock runtime, sandbox):       {imports:6.2f} s")
    print(
        f"`rfs-deploy simulate` command, whole:         {med(commands):6.2f} s"
        f"   runs: {', '.join(f'{c:.2f}' for c in commands)}"
    )
    print(f"bare interpreter start-up:                    {floor:6.2f} s")


if __name__ == "__main__":
    main()
