"""The benchmark's tables as Markdown (printed and written) and CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.decision.cells import ANCHORS, MAX_PAUSED, Row, Target, judge_row, targets
from benchmarks.decision.floor import Floor, Limit

if TYPE_CHECKING:  # the real driver only where the cost is measured (see run.main)
    from benchmarks.decision.cost import Cost


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _n(x: float) -> str:
    return f"{x:,.0f}"


def decision_table(rows: Sequence[Row]) -> str:
    """Decision quality: one line per (cell, policy)."""
    lines = [
        "| cell | policy | rolled back | paused | minutes to decision, median / p95 "
        "| exposure, mean / median / p95 | mean exposure / floor | what decided (runs) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kind = "detected" if r.faulty else "false"
        ratio = "" if r.floor_ratio is None else f"{r.floor_ratio:.2f}x"
        lines.append(
            f"| {r.cell} | {r.policy} | {_pct(r.rolled_back)} {kind} | {_pct(r.paused)} "
            f"| {r.minutes_median:.0f} / "
            f"{r.minutes_p95:.0f} | {_n(r.exposure_mean)} / {_n(r.exposure_median)} / {_n(r.exposure_p95)} "
            f"| {ratio} | {r.reasons} |"
        )
    return "\n".join(lines)


def headline_table(rows: Sequence[Row]) -> str:
    """One line per cell, one column per policy (its variants left out): rolled back, median
    minutes to decision, mean exposure."""
    cells = list(dict.fromkeys(r.cell for r in rows))
    policies = list(dict.fromkeys(r.policy for r in rows if "latencyTolerance" not in r.policy))
    found = {(r.cell, r.policy): r for r in rows}
    lines = [
        "| cell | floor | " + " | ".join(policies) + " |",
        "|---|---|" + "---|" * len(policies),
    ]
    for cell in cells:
        first = next(r for r in rows if r.cell == cell)
        entries = []
        for policy in policies:
            r = found.get((cell, policy))
            entries.append(
                ""
                if r is None
                else f"{_pct(r.rolled_back)} · {r.minutes_median:.0f} min · {_n(r.exposure_mean)}"
            )
        floor = "" if first.floor is None else _n(first.floor)
        lines.append(f"| {cell} | {floor} | " + " | ".join(entries) + " |")
    return "\n".join(lines)


def outcomes_table(
    rows: Sequence[Row], found: Sequence[Target], judge: str = "rfs-deploy", before: str | None = None
) -> str:
    """One line per cell: rolled back / paused for the judge and each anchor, then issue 15's
    target (healthy: false rollbacks at most the lowest anchor + 0.5 points and at most 5 %
    paused; faulty: detection at least the highest anchor) and whether the judge meets it."""
    by = {(r.cell, r.policy): r for r in rows}
    checked = {t.cell: t for t in found}
    judges = [before, judge] if before else [judge]
    lines = [
        "| cell | kind | " + " | ".join(judges) + " | " + " | ".join(ANCHORS) + " | target | met |",
        "|---|---|" + "---|" * len(judges) + "---|" * len(ANCHORS) + "---|---|",
    ]
    for cell in dict.fromkeys(r.cell for r in rows):
        first = next(r for r in rows if r.cell == cell)
        entries = []
        ours = [judge_row(list(rows), cell, j) for j in judges]
        for r in [*ours, *(by.get((cell, a)) for a in ANCHORS)]:
            entries.append("" if r is None else f"{_pct(r.rolled_back)} / {_pct(r.paused)}")
        t = checked.get(cell)
        if t is None:
            target, met = "", ""
        elif t.faulty:
            target, met = f"detection ≥ {_pct(t.bound)}", "yes" if t.met else f"**no**: {t.why}"
        else:
            target = f"false ≤ {_pct(t.bound)}, paused ≤ 5 %"
            met = "yes" if t.met else f"**no**: {t.why}"
        kind = "faulty" if first.faulty else "healthy"
        lines.append(f"| {cell} | {kind} | " + " | ".join(entries) + f" | {target} | {met} |")
    lines.append(
        f"\nEach entry: rolled back / paused for a person (a faulty cell's rolled back is its detection, "
        f"a healthy cell's its false rollbacks); {judge} with the cell's own Analysis policy. Through a "
        "shared outage a healthy canary is to be held and promoted, so there the target is absolute."
    )
    return "\n".join(lines)


#: Issue 15's named goals beside the per-cell targets: (cell, what is measured, bound, at most?).
NAMED_GOALS: tuple[tuple[str, str, float, bool], ...] = (
    ("healthy (0.5 % 5xx)", "false rollbacks", 0.005, True),
    ("5xx 1 %", "detection", 0.85, False),
    ("5xx 5 %", "mean exposure / floor", 1.5, True),
)


def goal_table(rows: Sequence[Row], judge: str = "rfs-deploy", before: str | None = None) -> str:
    """Each goal of issue 15, measured for ``judge`` (and the judge of ``before``, a --before
    label): the per-cell targets counted over every cell, then the named goals."""

    def cell_goals(label: str) -> dict[str, tuple[str, bool]]:
        found = targets(list(rows), judge=label)
        healthy = [t for t in found if not t.faulty]
        faulty = [t for t in found if t.faulty]
        false_ok = [t for t in healthy if t.rolled_back <= t.bound]
        paused_ok = [t for t in healthy if t.paused <= MAX_PAUSED]
        caught_ok = [t for t in faulty if t.met]

        def count(ok: Sequence[Target], of: Sequence[Target]) -> tuple[str, bool]:
            missed = sorted({t.cell for t in of} - {t.cell for t in ok})
            shown = f"{len(ok)} of {len(of)} cells" + (f" (missed: {', '.join(missed)})" if missed else "")
            return shown, len(ok) == len(of)

        out = {
            "healthy cells: false rollbacks ≤ the lowest anchor's + 0.5 points": count(false_ok, healthy),
            "healthy cells: paused for a person ≤ 5 %": count(paused_ok, healthy),
            "faulty cells: detection ≥ the highest anchor's": count(caught_ok, faulty),
        }
        for cell, what, bound, at_most in NAMED_GOALS:
            row = judge_row(list(rows), cell, label)
            if row is None:
                continue
            value = row.floor_ratio if what.startswith("mean exposure") else row.rolled_back
            if value is None:
                continue
            shown = f"{value:.2f}x" if what.startswith("mean exposure") else _pct(value)
            sign = "≤" if at_most else "≥"
            bound_shown = f"{bound:g}x" if what.startswith("mean exposure") else _pct(bound)
            met = value <= bound if at_most else value >= bound
            out[f"{cell}: {what} {sign} {bound_shown}"] = (shown, met)
        return out

    after = cell_goals(judge)
    then = cell_goals(before) if before else {}
    head = "| goal | " + (f"{before} | " if before else "") + f"{judge} | met |"
    lines = [head, "|---|" + ("---|" if before else "") + "---|---|"]
    for goal, (shown, met) in after.items():
        old = f"{then[goal][0]} | " if before and goal in then else ("| " if before else "")
        lines.append(f"| {goal} | {old}{shown} | {'yes' if met else '**no**'} |")
    return "\n".join(lines)


def floor_table(floors: Iterable[tuple[str, Floor]]) -> str:
    """The exposure floor per regression and first canary step."""
    lines = [
        "| regression | first step | SPRT E[N] (requests) | one period at the first step | floor | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in floors:
        lines.append(
            f"| {name} | {f.first_weight} % | {f.sprt_requests:,.0f} | {f.period_requests:,.0f} "
            f"| {f.exposure:,.0f} | {f.minutes} |"
        )
    return "\n".join(lines)


def cost_table(costs: Sequence[Cost]) -> str:
    """Cost per deployment of the default canary."""
    from benchmarks.decision.cost import USD_PER_1000_METRICS

    lines = [
        "| deployment | steps | stack updates | analysis ticks | GetMetricData requests (ticks + history) "
        "| metrics requested (per tick, total) | USD per deployment | DescribeAlarms calls | listener reads "
        "| driver CPU per step | driver CPU total |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in costs:
        lines.append(
            f"| {c.case} ({c.status}) | {c.steps} | {c.stack_updates} | {c.ticks} "
            f"| {c.get_metric_data_requests} ({c.ticks} + {c.history_requests}) "
            f"| {c.max_metrics_per_tick}, {c.metrics_requested} | {c.usd:.5f} | {c.describe_alarms_calls} "
            f"| {c.listener_reads} | {c.cpu_ms_per_step:.2f} ms | {c.cpu_ms_total:.1f} ms |"
        )
    lines.append(
        f"\nGetMetricData is billed per metric requested (USD {USD_PER_1000_METRICS} per 1,000); "
        "DescribeAlarms and the ELBv2 reads are free. The history is one request per deployment: the "
        "live slot's hour before the first traffic shift."
    )
    return "\n".join(lines)


def write_csv(path: Path, items: Sequence[object]) -> None:
    """Dataclass instances as CSV, one column per field."""
    if not items:
        return
    names = [f.name for f in fields(items[0])]  # type: ignore[arg-type]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for item in items:
            writer.writerow(asdict(item))  # type: ignore[call-overload]


def limits_table(found: Iterable[Limit]) -> str:
    """Issue 15's absolute goals against the best a judge that does not know the baseline's rate
    can do (:func:`benchmarks.decision.floor.limits`)."""
    lines = ["| goal | the best any judge can do | why |", "|---|---|---|"]
    for limit in found:
        best = f"{limit.best:.2f}x" if "exposure" in limit.goal else f"{100 * limit.best:.1f} %"
        lines.append(f"| {limit.goal} | {best} | {limit.how} |")
    return "\n".join(lines)
