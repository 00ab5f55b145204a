"""The cells of the benchmark, the policies judged on each, and their aggregation into rows."""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from benchmarks.decision.floor import floor
from benchmarks.decision.policies import Alarm, Decision, Ours, Policy, Threshold, WaldPerMinute
from benchmarks.decision.traffic import DEFAULT_WEIGHTS, Cell, simulate
from rfs_deploy.config.model import Analysis

BASE = 0.005
#: Our policy with a tighter latency tolerance, shown where latency is at stake.
TIGHT_LATENCY = {"latency_tolerance": 1.2}

#: The issue's cells: the default plan at 1,000 requests/min, then a low-traffic service.
MAIN_CELLS: tuple[Cell, ...] = (
    Cell("healthy (0.5 % 5xx)", 1000, BASE, variants=True),
    Cell("5xx 1 %", 1000, 0.01),
    Cell("5xx 2 %", 1000, 0.02),
    Cell("5xx 5 %", 1000, 0.05),
    Cell("5xx 20 %", 1000, 0.20),
    Cell("p99 +30 %", 1000, BASE, latency_factor=1.3, variants=True),
    Cell("p99 +100 %", 1000, BASE, latency_factor=2.0, variants=True),
    Cell("50 rpm: healthy", 50, BASE),
    Cell("50 rpm: 5xx 5 %", 50, 0.05),
    Cell("50 rpm: 5xx 20 %", 50, 0.20),
)


def first_step_cells() -> tuple[Cell, ...]:
    """The default plan with a 5 % or 1 % first step, ``minRequests`` lowered to its traffic."""
    cells = []
    for first in (5, 1):
        weights = (first, *[w for w in DEFAULT_WEIGHTS if w > first])
        tuned = (("min_requests", 10 * first),)
        for label, rate in (("healthy", BASE), ("5xx 5 %", 0.05), ("5xx 20 %", 0.20)):
            cells.append(Cell(f"first step {first} %: {label}", 1000, rate, weights=weights, analysis=tuned))
    return tuple(cells)


def ours(cell: Cell, label: str = "rfs-deploy") -> list[Ours]:
    """Our judge with the cell's Analysis policy (the default one unless the cell says otherwise)."""
    overrides = dict(cell.analysis)
    name = label + "".join(f", {_camel(k)} {v}" for k, v in overrides.items())
    chosen = [Ours(name, Analysis(**overrides))]  # type: ignore[arg-type]
    if cell.variants:
        tight = {**overrides, **TIGHT_LATENCY}
        chosen.append(Ours(f"{name}, latencyTolerance 1.2", Analysis(**tight)))  # type: ignore[arg-type]
    return chosen


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def policies(cell: Cell) -> list[Policy]:
    """Ours, then Flagger/Argo thresholds, CodeDeploy alarms, and the SPRT reference."""
    analysis = Analysis(**dict(cell.analysis))  # type: ignore[arg-type]
    chosen: list[Policy] = [*ours(cell), Threshold(1), Threshold(2), Alarm(1, analysis), Alarm(2, analysis)]
    if cell.new_error_rate > cell.base_error_rate:
        chosen.append(WaldPerMinute(cell.base_error_rate, cell.new_error_rate))
    return chosen


@dataclass(frozen=True)
class Row:
    """One (cell, policy) line of the table."""

    cell: str
    policy: str
    runs: int
    faulty: bool
    rolled_back: float
    minutes_median: float
    minutes_p95: float
    exposure_mean: float
    exposure_median: float
    exposure_p95: float
    #: The exposure floor (error-rate regressions only); the table shows mean exposure over it.
    floor: float | None
    reasons: str

    @property
    def floor_ratio(self) -> float | None:
        return None if not self.floor else self.exposure_mean / self.floor


def horizon(cell: Cell) -> int:
    """Minutes to draw: every step may be extended by inconclusive and held windows."""
    return len(cell.weights) * (Analysis().max_inconclusive + 4) + 20


def cell_seed(cell: Cell, base_seed: int) -> int:
    """A stable seed per cell (the same draws every run of the benchmark)."""
    return base_seed * 1_000_003 + zlib.crc32(cell.name.encode())


def cell_floor(cell: Cell) -> float | None:
    """The exposure floor of an error-rate regression (None for healthy and latency cells)."""
    if cell.new_error_rate <= cell.base_error_rate:
        return None
    return floor(cell.base_error_rate, cell.new_error_rate, cell.rpm, cell.weights).exposure


def evaluate(cell: Cell, seeds: int, base_seed: int, chosen: list[Policy] | None = None) -> list[Row]:
    """Every policy on the same ``seeds`` draws of ``cell`` (common random numbers)."""
    traces = simulate(cell, seeds, horizon(cell), cell_seed(cell, base_seed))
    judged = policies(cell) if chosen is None else chosen
    decisions: list[list[Decision]] = [[] for _ in judged]
    for seed in range(seeds):
        view = traces.seed(seed)
        for policy, found in zip(judged, decisions, strict=True):
            found.append(policy.decide(view))
    the_floor = cell_floor(cell)
    return [summarise(cell, p.name, found, the_floor) for p, found in zip(judged, decisions, strict=True)]


def summarise(cell: Cell, policy: str, decisions: list[Decision], the_floor: float | None) -> Row:
    """Aggregate one policy's decisions on one cell."""
    minutes = np.array([d.minute for d in decisions], dtype=float)
    exposure = np.array([d.exposure for d in decisions], dtype=float)
    rolled = [d for d in decisions if d.rolled_back]
    counts = Counter(d.reason for d in rolled)
    return Row(
        cell=cell.name,
        policy=policy,
        runs=len(decisions),
        faulty=cell.faulty,
        rolled_back=len(rolled) / len(decisions),
        minutes_median=float(np.median(minutes)),
        minutes_p95=float(np.percentile(minutes, 95)),
        exposure_mean=float(exposure.mean()),
        exposure_median=float(np.median(exposure)),
        exposure_p95=float(np.percentile(exposure, 95)),
        floor=the_floor,
        reasons=", ".join(f"{name} {n}" for name, n in counts.most_common(3)),
    )
