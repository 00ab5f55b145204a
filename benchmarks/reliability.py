"""Reliability figures in one command: the crash matrix, the fault table, concurrent stacks.

    python benchmarks/reliability.py [--quick] [--jobs 2] [--only crash,faults,concurrency]

* **Crash matrix** — for each strategy healthy and under error-spike (where the kill can land in
  the automatic rollback), a real ``rfs-deploy deploy`` subprocess is SIGKILLed at every step
  boundary, in the middle of every multi-window bake, inside every stack update and, in the
  rollback rows, after each restoring update is recorded while the driver waits for the refresh
  back and the weights; then ``resume`` and, separately from the same kill point, ``abort`` run
  in new processes. Counted: runs, end states (promoted / rolled back / mixed, from the stack
  config *and* the load balancer and fleet), lost checkpoints and stuck recoveries (the journal
  still shows the deployment open after ``resume`` or ``abort``). ``--quick`` keeps a few kill
  points per row.
* **Fault table** — one injected fault per row in a fresh sandbox (see tests/reliability/faultkit.py).
* **Concurrency** — N stacks deployed at once with ``asyncio.gather`` over the shipped fakes and a
  compressed real-time clock (waiting dominates, as against AWS).

Prints the tables and writes them as Markdown to ``benchmarks/results/reliability.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KITS = REPO / "tests" / "reliability"
sys.path[:0] = [str(REPO), str(KITS)]
for key, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ.setdefault(key, value)

import concurrencykit  # noqa: E402
import crashkit  # noqa: E402
import faultkit  # noqa: E402

ROWS = [
    ("blue-green", "healthy"),
    ("canary", "healthy"),
    ("rolling", "healthy"),
    ("ab-test", "healthy"),
    ("canary", "error-spike"),
    ("rolling", "error-spike"),
    ("blue-green", "error-spike"),
    ("ab-test", "error-spike"),
]


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def crash_section(quick: bool, jobs: int, rows: list[tuple[str, str]] | None = None) -> str:
    summary, detail = [], []
    for strategy, scenario in rows or (ROWS[:1] if quick else ROWS):
        started = time.perf_counter()
        row = crashkit.crash_row(strategy, scenario, quick=quick, jobs=jobs)
        seconds = time.perf_counter() - started
        outs = row.outcomes
        resume, abort = Counter(o.resume_state for o in outs), Counter(o.abort_state for o in outs)
        summary.append(
            [
                strategy,
                scenario,
                len(outs),
                sum(o.killed for o in outs),
                3 * len(outs),
                _states(resume),
                _states(abort),
                resume["mixed"] + abort["mixed"],
                sum(o.lost_checkpoint for o in outs),
                sum(len(o.stuck) for o in outs),
                f"{seconds:.0f}s",
            ]
        )
        for o in outs:
            detail.append(
                [
                    f"{strategy}/{scenario}",
                    o.point.label,
                    o.journal.get("status") or "no deployment",
                    o.journal.get("checkpoint"),
                    f"{o.resume_exit} → {o.resume_state}",
                    f"{o.abort_exit} → {o.abort_state}",
                    "; ".join(o.notes)[:160],
                ]
            )
        print(f"  crash row {strategy}/{scenario}: {len(outs)} kill points in {seconds:.0f}s", flush=True)
    headers = [
        "strategy",
        "scenario",
        "kill points",
        "killed",
        "runs",
        "after resume",
        "after abort",
        "mixed",
        "lost checkpoints",
        "stuck",
        "time",
    ]
    detail_headers = ["row", "killed at", "journal after kill", "checkpoint", "resume", "abort", "notes"]
    return (
        "## Crash matrix\n\nEach kill point: one killed `deploy`, then `resume` and `abort` from the same "
        "kill point in new processes (runs = 3 per point).\n\n"
        + table(headers, summary)
        + "\n\n<details><summary>Every kill point</summary>\n\n"
        + table(detail_headers, detail)
        + "\n\n</details>\n"
    )


def _states(counts: Counter[str]) -> str:
    return ", ".join(f"{counts[k]} {k}" for k in ("promoted", "rolled-back", "mixed") if counts[k])


def fault_section() -> str:
    rows = []
    for name, run in faultkit.ROWS.items():
        started = time.perf_counter()
        row = run()
        extra = {k: v for k, v in row.details.items() if k not in ("recovery",)}
        rows.append([row.injected, row.did, row.end_state, row.exit_code, _fmt(extra)])
        print(f"  fault {name}: exit {row.exit_code} in {time.perf_counter() - started:.0f}s", flush=True)
    headers = ["injected", "what the driver did", "end state", "exit", "details"]
    return "## Fault table\n\n" + table(headers, rows) + "\n"


def _fmt(details: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in details.items())


def concurrency_section() -> str:
    rows = [
        [r["n"], f"{r['wall']:.2f}s", f"{r['ratio']:.2f}x", r["completed"], f"{r['cpu']:.3f}s"]
        for r in concurrencykit.scaling_table()
    ]
    body = table(["stacks (N)", "wall time", "vs N=1", "completed", "driver CPU"], rows)
    return (
        "## Concurrent stacks\n\nBlue-green on N stacks at once through `asyncio.gather(Driver.deploy ...)`,"
        " over the shipped fakes with a real-time clock compressed 200x (one driver second = 5 ms)."
        " The run is wait-dominated, as against AWS, so N stacks take about the time of one. In the"
        " sandbox the waiting is CPU-bound simulation under a virtual clock, which does not overlap"
        " (and moto allows one sandbox per process).\n\n" + body + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one crash row, a few kill points")
    parser.add_argument("--jobs", type=int, default=2, help="kill points run in parallel")
    parser.add_argument("--only", default="crash,faults,concurrency")
    parser.add_argument("--rows", help="crash rows to run, e.g. rolling/error-spike,blue-green/healthy")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "reliability.md"))
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    started = time.perf_counter()
    sections = []
    if "crash" in parts:
        rows = [tuple(r.split("/", 1)) for r in args.rows.split(",")] if args.rows else None
        sections.append(crash_section(args.quick, args.jobs, rows))  # type: ignore[arg-type]
    if "faults" in parts:
        sections.append(fault_section())
    if "concurrency" in parts:
        sections.append(concurrency_section())
    text = "# rfs-deploy reliability\n\n" + "\n".join(sections)
    text += f"\n_{time.strftime('%Y-%m-%d')}, {time.perf_counter() - started:.0f}s, `{' '.join(sys.argv)}`_\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
