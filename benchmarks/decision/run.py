"""The decision benchmark's command: every cell, every policy, the floor, the cost; tables out.

    python -m benchmarks.decision [--seeds 2000] [--cells TEXT,...] [--before REV] [--out benchmarks/results]

``--cells`` keeps only the cells whose name or group contains one of the comma-separated texts
(case-insensitive), e.g. ``--cells bursty,outage`` or ``--cells "5xx 5 %"``; the default runs
every cell.

``--before REV`` also judges every cell with the judge as it was at git revision ``REV``
(``rfs_deploy/drive/judge.py``, ``rules.py`` and ``stats.py`` from ``REV`` over a copy of today's
package, run in a subprocess), so the table shows the judge before and after a change on the same
draws.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.decision.cells import (
    GROUPS,
    MAIN_CELLS,
    Row,
    evaluate,
    first_step_cells,
    ours,
    real_traffic_cells,
    targets,
)
from benchmarks.decision.floor import Floor, floor, limits
from benchmarks.decision.report import (
    cost_table,
    decision_table,
    floor_table,
    goal_table,
    headline_table,
    limits_table,
    outcomes_table,
    write_csv,
)
from benchmarks.decision.traffic import DEFAULT_WEIGHTS, Cell

REPO = Path(__file__).resolve().parents[2]
JUDGE_FILES = ("rfs_deploy/drive/judge.py", "rfs_deploy/drive/stats.py")
#: The A/B decision, in judge.py until it moved to its own module.
AB_FILE = "rfs_deploy/drive/ab.py"
#: The rules of one window, in judge.py until they moved to their own module.
RULES_FILE = "rfs_deploy/drive/rules.py"


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decision", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2000, help="simulated releases per cell (default 2000)")
    parser.add_argument("--seed", type=int, default=6, help="base random seed (default 6)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--before", metavar="REV", help="also run the judge as it was at git revision REV")
    parser.add_argument("--no-cost", action="store_true", help="skip the driver cost measurement")
    parser.add_argument(
        "--cells", default="", metavar="TEXT,...", help="only cells whose name or group contains one of these"
    )
    parser.add_argument("--ours-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--label", default="rfs-deploy", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def all_cells() -> tuple[Cell, ...]:
    return MAIN_CELLS + first_step_cells() + real_traffic_cells()


def chosen_cells(spec: str) -> tuple[Cell, ...]:
    """The cells ``--cells`` keeps: name or group containing one of its comma-separated texts."""
    wanted = [w.strip().lower() for w in spec.split(",") if w.strip()]
    if not wanted:
        return all_cells()
    found = tuple(c for c in all_cells() if any(w in c.name.lower() or w == c.group for w in wanted))
    if not found:
        raise SystemExit(f"--cells {spec!r}: no cell's name or group contains any of these")
    return found


def ours_rows(seeds: int, base_seed: int, label: str, spec: str = "") -> list[Row]:
    """Only our judge's rows (the ``--before`` subprocess)."""
    rows: list[Row] = []
    for cell in chosen_cells(spec):
        rows += evaluate(cell, seeds, base_seed, list(ours(cell, label)))
    return rows


def before_rows(rev: str, seeds: int, base_seed: int, spec: str = "") -> list[Row]:
    """Our rows with the judge of ``rev``: a copy of the package with that revision's judge files."""
    label = f"rfs-deploy before ({rev})"
    known = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True
    )
    if known.returncode != 0:
        raise SystemExit(f"--before {rev}: not a git revision of this repository")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / "rfs_deploy", root / "rfs_deploy", ignore=skip)
        shutil.copytree(Path(__file__).parent, root / "benchmarks" / "decision", ignore=skip)
        for path in JUDGE_FILES:
            shown = subprocess.run(
                ["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True, text=True, check=True
            )
            (root / path).write_text(shown.stdout)
        # before the A/B decision and the rules of one window moved out of judge.py, they lived there
        for path, stand_in in (
            (AB_FILE, "from rfs_deploy.drive.judge import ABDecision, decide_ab  # noqa: F401\n"),
            (RULES_FILE, "from rfs_deploy.drive.judge import *  # noqa: F403\n"),
        ):
            has = subprocess.run(["git", "cat-file", "-e", f"{rev}:{path}"], cwd=REPO, capture_output=True)
            if has.returncode == 0:
                shown = subprocess.run(
                    ["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True, text=True, check=True
                )
                (root / path).write_text(shown.stdout)
            else:
                (root / path).write_text(stand_in)
        command = [sys.executable, "-m", "benchmarks.decision", "--ours-only", "--label", label]
        command += ["--seeds", str(seeds), "--seed", str(base_seed), "--cells", spec]
        env = {**os.environ, "PYTHONPATH": str(root)}
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"--before {rev}: the judge of that revision does not run here: {last}")
    return [Row(**item) for item in json.loads(done.stdout)]


def floors() -> list[tuple[str, Floor]]:
    """The floor of each error-rate regression at 1,000 requests/min, first step 10, 5 and 1 %."""
    found = []
    for rate in (0.01, 0.02, 0.05, 0.20):
        for first in (10, 5, 1):
            weights = (first, *[w for w in DEFAULT_WEIGHTS if w > first])
            found.append((f"5xx {100 * rate:g} %", floor(0.005, rate, 1000, weights)))
    return found


def _merge(rows: list[Row], before: list[Row]) -> list[Row]:
    """Each cell's before rows right after its rows of today's judge."""
    merged: list[Row] = []
    for row in rows:
        merged.append(row)
        if row.policy.startswith("rfs-deploy"):
            suffix = row.policy[len("rfs-deploy") :]
            merged += [b for b in before if b.cell == row.cell and b.policy.endswith(")" + suffix)]
    return merged


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    cells = chosen_cells(args.cells)
    if args.ours_only:
        print(json.dumps([asdict(r) for r in ours_rows(args.seeds, args.seed, args.label, args.cells)]))
        return 0
    started = time.monotonic()
    steps = first_step_cells()
    by_cell: dict[str, list[Row]] = {}
    for cell in cells:
        by_cell[cell.name] = evaluate(cell, args.seeds, args.seed)
        print(f"  {cell.name}: done after {time.monotonic() - started:.0f}s", file=sys.stderr)
    before_label = f"rfs-deploy before ({args.before})" if args.before else None
    if args.before:
        before = before_rows(args.before, args.seeds, args.seed, args.cells)
        by_cell = {name: _merge(rows, before) for name, rows in by_cell.items()}

    def rows_of(group: tuple[Cell, ...]) -> list[Row]:
        return [r for c in group if c.name in by_cell for r in by_cell[c.name]]

    main_rows, step_rows = rows_of(MAIN_CELLS), rows_of(steps)
    real = real_traffic_cells()
    if args.no_cost:
        measured = []
    else:
        # the real driver, imported only here: the --before subprocess pairs today's package with
        # an older judge, whose module may lack names today's driver imports from it
        from benchmarks.decision.cost import costs

        measured = costs()
    sections = [
        f"Seeds per cell: {args.seeds} (base seed {args.seed}); plan: "
        + " → ".join(f"{w} %" for w in DEFAULT_WEIGHTS)
        + ", 60 s per step; baseline 0.5 % 5xx."
    ]
    if main_rows:
        sections += [
            "## At a glance: rolled back · median minutes to decision · mean exposure (requests)",
            headline_table(main_rows),
            "## Decision quality (1,000 requests/min unless the cell says 50 rpm)",
            decision_table(main_rows),
        ]
    if step_rows:
        sections += [
            "## A smaller first canary step (1,000 requests/min, minRequests lowered to the step's traffic)",
            decision_table(step_rows),
        ]
    for group, title in GROUPS:
        grouped = rows_of(tuple(c for c in real if c.group == group))
        if grouped:
            sections += [f"## Real traffic: {title}", decision_table(grouped)]
    every = [r for rows in by_cell.values() for r in rows]
    sections += [
        "## Issue 15's goals",
        goal_table(every, before=before_label),
        "## Rolled back · paused for a person, and issue 15's targets",
        outcomes_table(every, targets(every), before=before_label),
        "## The exposure floor",
        floor_table(floors()),
        "## What the counts allow: the best any judge can do without knowing the baseline's rate "
        "(0.5 % false rollbacks)",
        limits_table(limits(DEFAULT_WEIGHTS)),
    ]
    if measured:
        title = "## Cost per deployment (default canary, real driver on the fakes)"
        sections += [title, cost_table(measured)]
    text = "\n\n".join(sections) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decision.md").write_text(text)
    write_csv(args.out / "decision.csv", every)
    (args.out / "decision.json").write_text(
        json.dumps(
            {"rows": [asdict(r) for r in every], "targets": [asdict(t) for t in targets(every)]}, indent=1
        )
        + "\n"
    )
    if measured:
        write_csv(args.out / "decision-cost.csv", measured)
    print(
        f"wrote {args.out}/decision.md, decision.csv, decision.json; {time.monotonic() - started:.0f}s",
        file=sys.stderr,
    )
    return 0
