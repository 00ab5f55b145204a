"""False rollbacks of the blue-green load probe on a healthy version (a decision figure, printed).

Simulates ``--runs`` probes of a healthy release — both slots serve like the sandbox's baseline:
0.2 % 5xx, log-normal latency with median 0.08 s and p99 0.35 s — through the probe's judge
(:class:`rfs_deploy.drive.judge.StepJudge`, the service defaults, batches of ``--requests``),
and prints how often the first batch is not a pass and how often the probe fails.

    python benchmarks/bench_probe.py [--runs 20000] [--requests 200] [--seed 7]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfs_deploy.config.model import Analysis
from rfs_deploy.drive.judge import StepJudge
from rfs_deploy.drive.rules import Outcome, SlotMetrics, Window

Z99 = 2.3263478740408408


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    sigma = math.log(0.35 / 0.08) / Z99
    n = args.requests
    rank = max(0, math.ceil(0.99 * n) - 1)

    def batch() -> SlotMetrics:
        latencies = np.sort(np.exp(rng.normal(math.log(0.08), sigma, n)))
        return SlotMetrics(requests=n, errors=int(rng.binomial(n, 0.002)), p99=float(latencies[rank]))

    failed = held = batches = 0
    for _ in range(args.runs):
        judge = StepJudge(Analysis(), baseline=True, windows=1)
        first = True
        while judge.result is None:
            verdict = judge.observe(Window(new=batch(), baseline=batch()))
            batches += 1
            if first and verdict.outcome is not Outcome.PASS:
                held += 1
            first = False
        failed += judge.result.outcome is Outcome.FAIL
    runs = args.runs
    print(f"healthy probes: {runs:,} of {n} requests per batch and slot (seed {args.seed})")
    print(f"  first batch not a pass (held or thin): {held / runs:.2%}")
    print(f"  probe failed (a false rollback):       {failed / runs:.3%} ({failed} runs)")
    print(f"  batches per probe, mean:               {batches / runs:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
