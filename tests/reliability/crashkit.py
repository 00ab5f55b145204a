"""The crash matrix: SIGKILL a real ``rfs-deploy deploy`` process, then ``resume`` or ``abort`` it.

For one (strategy, scenario) row:

1. a base session: ``rfs-deploy --backend sim up --stack production`` in a fresh state directory;
2. a reference run (no kill) on a copy, to learn the step lines, the observation ticks and the
   number of stack updates this deployment makes;
3. kill points from it: every step boundary (SIGKILL as soon as ``step k/n:`` is on stderr, i.e.
   before step k completes), the first tick of multi-window bakes (mid-bake), every stack update
   half-applied (``RFS_DEPLOY_SIM_KILL=mid:N``: the sandbox SIGKILLs itself after the update's
   first resource change; in rows that roll back also after its last change, before it is
   recorded; and in every restoring update's wait, ``RFS_DEPLOY_SIM_KILL=after:N``: after the
   rollback update is recorded, while the driver waits for the refresh back and the weights)
   and the moment after the last step;
4. per kill point: copy the base, run ``deploy`` and kill it; copy the killed session twice; run
   ``resume`` on one and ``abort`` on the other (new processes); inspect both (:mod:`endstate`).

Each outcome records the exit codes, the journal after the kill (checkpoint found or lost) and
the end state (promoted, rolled back or mixed) of config and reality.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import endstate  # noqa: E402

from rfs_deploy.sim.aws import fake_environment  # noqa: E402

STACK, SERVICE, VERSION = endstate.STACK, endstate.SERVICE, "v2.0.0"
CLI = [sys.executable, "-c", "import sys\nfrom rfs_deploy.cli import main\nsys.exit(main())"]
STEP_LINE = re.compile(r"^\[\s*-?\d+s\] step (\d+)/(\d+): (.*)$")
TICK_LINE = re.compile(r"^\[\s*-?\d+s\]   [A-Z_]+\s+\[")
DONE_LINE = re.compile(r"^\[\s*-?\d+s\]   (ok|[A-Z]+): ")
FAKE_AWS = fake_environment()


def env(state: Path, **extra: str) -> dict[str, str]:
    """The environment of one CLI run: its own state directory, fake credentials, no kill armed."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RFS_DEPLOY_")}
    return {**base, **FAKE_AWS, "RFS_DEPLOY_STATE": str(state), "RFS_DEPLOY_PROJECT": str(REPO), **extra}


def cli(state: Path, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``rfs-deploy --backend sim ARGS`` to the end."""
    return subprocess.run(
        [*CLI, "--backend", "sim", *args],
        env=env(state, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def deploy_args(strategy: str, scenario: str) -> list[str]:
    args = ["deploy", "--stack", STACK, "--service", SERVICE, "--version", VERSION, "--strategy", strategy]
    return [*args, "--scenario", scenario]


@dataclass(frozen=True)
class KillPoint:
    """Where to kill: ``boundary`` (on step k's line), ``bake`` (first tick of step k),
    ``update`` (inside the N-th update, sandbox hook), ``update-end`` (the N-th update applied,
    not recorded), ``update-after`` (the N-th update recorded, the driver waiting on the world
    before its next), ``end`` (after the last step's result)."""

    kind: str
    step: int = 0
    update: int = 0
    label: str = ""


@dataclass
class Reference:
    """What an unkilled run of the row does."""

    steps: list[tuple[int, int, str]] = field(default_factory=list)
    #: Observation ticks per step number (the steps that bake).
    ticked: dict[int, int] = field(default_factory=dict)
    updates: int = 0
    #: The updates (1-based among the run's) that restore the checkpoint and wait for the world.
    restores: list[int] = field(default_factory=list)
    exit_code: int = 0


def fresh_base(root: Path) -> Path:
    """A state directory with the stack's first updates done (``up``)."""
    base = root / "base"
    done = cli(base, "up", "--stack", STACK)
    if done.returncode != 0:
        raise RuntimeError(f"rfs-deploy up failed: {done.stderr.strip()[-300:]}")
    return base


def copy_state(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "sandbox" / STACK / "update.lock").unlink(missing_ok=True)
    return dst


def reference_run(base: Path, root: Path, strategy: str, scenario: str) -> Reference:
    state = copy_state(base, root / "reference")
    before = len(endstate.history_entries(state))
    done = cli(state, *deploy_args(strategy, scenario))
    ref = Reference(exit_code=done.returncode)
    current = 0
    for line in done.stderr.splitlines():
        step = STEP_LINE.match(line)
        if step:
            current = int(step.group(1))
            ref.steps.append((current, int(step.group(2)), step.group(3)))
        elif TICK_LINE.match(line) and current:
            ref.ticked[current] = ref.ticked.get(current, 0) + 1
    from rfs_deploy.drive import journal

    made = list(reversed(endstate.history_entries(state)))[before:]
    ref.updates = len(made)
    for number, entry in enumerate(made, start=1):
        tag = journal.decode(entry.message)
        if tag is not None and tag.wait:
            ref.restores.append(number)
    return ref


def kill_points(ref: Reference, quick: bool = False) -> list[KillPoint]:
    """Every boundary, mid-bake and mid-update point of the reference run (``quick``: a few)."""
    points = [KillPoint("boundary", step=k, label=f"step {k} started: {text}") for k, _, text in ref.steps]
    # mid-bake: every step with several ticks, and the first observing step (a one-window bake
    # ends with its tick, so killing there is much like killing at the next boundary)
    bakes = [k for k, n in ref.ticked.items() if n > 1 or k == min(ref.ticked)]
    points += [KillPoint("bake", step=k, label=f"mid-bake of step {k}") for k in bakes]
    points += [KillPoint("update", update=n, label=f"inside update {n}") for n in range(1, ref.updates + 1)]
    if ref.exit_code == 3:  # the run rolls back: also kill updates fully applied but not recorded
        points += [
            KillPoint("update-end", update=n, label=f"update {n} applied, not recorded")
            for n in range(1, ref.updates + 1)
        ]
    points += [
        KillPoint("update-after", update=n, label=f"restoring update {n} recorded, world not yet confirmed")
        for n in ref.restores
    ]
    if ref.steps:
        points.append(KillPoint("end", step=ref.steps[-1][0], label="after the last step"))
    if quick:
        keep = {("boundary", 1), ("boundary", 2), ("bake", min(ref.ticked) if ref.ticked else -1)}
        chosen = [p for p in points if (p.kind, p.step) in keep]
        chosen += [p for p in points if p.kind.startswith("update") and p.update in (1, 2)]
        chosen += [p for p in points if p.kind == "update-after" and p.update not in (1, 2)]
        points = chosen
    return points


def run_and_kill(state: Path, strategy: str, scenario: str, point: KillPoint) -> int:
    """Run ``deploy`` and SIGKILL it at ``point``; returns its exit status (-9 when killed)."""
    stage = {"update": "mid", "update-end": "end", "update-after": "after"}.get(point.kind)
    extra = {"RFS_DEPLOY_SIM_KILL": f"{stage}:{point.update}"} if stage else {}
    proc = subprocess.Popen(
        [*CLI, "--backend", "sim", *deploy_args(strategy, scenario)],
        env=env(state, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    current = 0
    for line in proc.stderr:
        step = STEP_LINE.match(line)
        if step:
            current = int(step.group(1))
        hit = (
            (point.kind == "boundary" and step is not None and current == point.step)
            or (point.kind == "bake" and current == point.step and TICK_LINE.match(line) is not None)
            or (point.kind == "end" and current == point.step and DONE_LINE.match(line) is not None)
        )
        if hit:
            proc.send_signal(signal.SIGKILL)
            break
    proc.stderr.close()
    return proc.wait(timeout=300)


@dataclass
class Outcome:
    """One kill point: the kill, the journal after it, and both recoveries."""

    point: KillPoint
    killed: bool
    journal: dict[str, Any]
    lost_checkpoint: bool
    resume_exit: int | None = None
    resume_state: str = ""
    abort_exit: int | None = None
    abort_state: str = ""
    #: The recoveries after which the journal still shows a deployment open (stuck).
    stuck: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def recover(state: Path, verb: str) -> tuple[int, str]:
    """``resume`` or ``abort`` in a new process; a stack with no open deployment whose config is
    ahead of its history (killed before the first update was recorded) is put back by ``rollback``."""
    done = cli(state, "--quiet", verb, "--stack", STACK)
    note = ""
    if done.returncode == 2 and "no open deployment" in done.stderr:
        note = f"{verb}: no open deployment"
        history = endstate.history_entries(state)
        latest = next(e for e in history if e.result == "succeeded")
        seen_config = json.loads((state / "sandbox" / STACK / "state.json").read_text())
        config = seen_config["backend"]["namespace"]["release"][SERVICE]
        if latest.release is not None and latest.release[SERVICE].to_config() != config:
            fixed = cli(state, "--quiet", "rollback", "--stack", STACK, "--service", SERVICE)
            note += f"; config ahead of history: rollback exit {fixed.returncode}"
    return done.returncode, note


def run_point(
    base: Path, root: Path, strategy: str, scenario: str, point: KillPoint, expect: tuple[Any, Any]
) -> Outcome:
    """One kill point end to end (see the module docstring)."""
    name = f"{point.kind}-{point.step}-{point.update}"
    killed_dir = copy_state(base, root / f"{name}-killed")
    status = run_and_kill(killed_dir, strategy, scenario, point)
    history = endstate.history_entries(killed_dir)
    journal = endstate.journal_view(history)
    start = expect[1]
    lost = journal["checkpoint"] is None or (
        journal["deployment"] is not None and journal.get("checkpoint_release") != start.to_config()
    )
    outcome = Outcome(point, status == -signal.SIGKILL, journal, lost)
    dirs = {verb: copy_state(killed_dir, root / f"{name}-{verb}") for verb in ("resume", "abort")}
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(dirs, pool.map(lambda v: recover(dirs[v], v), dirs), strict=True))
    outcome.resume_exit, resume_note = results["resume"]
    outcome.abort_exit, abort_note = results["abort"]
    outcome.notes += [n for n in (resume_note, abort_note) if n]
    for verb, path in dirs.items():
        after = endstate.journal_view(endstate.history_entries(path))
        if after["status"] in ("in-progress", "rolling-back", "aborting"):
            outcome.stuck.append(verb)
            outcome.notes.append(f"{verb}: still open ({after['status']})")
    seen = inspect_many([dirs["resume"], dirs["abort"]])
    for verb, data in zip(("resume", "abort"), seen, strict=True):
        if "error" in data:
            state, detail = "mixed", data["error"]
        else:
            state, detail = endstate.classify(data, *expect)
        setattr(outcome, f"{verb}_state", state)
        if detail:
            outcome.notes.append(f"{verb}: {detail}")
    for path in (killed_dir, *dirs.values()):
        shutil.rmtree(path, ignore_errors=True)
    return outcome


def inspect_many(dirs: list[Path]) -> list[dict[str, Any]]:
    """:func:`endstate.inspect_session` of each directory, in one child process (moto is global)."""
    done = subprocess.run(
        [sys.executable, str(HERE / "endstate.py"), *map(str, dirs)],
        env=env(dirs[0]),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if len(lines) != len(dirs):
        return [{"error": done.stderr.strip()[-300:] or "inspector failed"}] * len(dirs)
    return lines


def expectations(strategy: str) -> tuple[Any, Any]:
    """(release after a full promotion, release at the checkpoint) for the production stack."""
    from rfs_deploy.config.loading import load_stack_file
    from rfs_deploy.drive.driver import resolve
    from rfs_deploy.drive.plans import plan, replay

    config = load_stack_file(REPO / "stacks" / f"Pulumi.{STACK}.yaml")
    start = config.release[SERVICE]
    svc, strat = resolve(config.service(SERVICE), strategy)
    return replay(start, plan(svc, strat, start, VERSION)), start


@dataclass
class Row:
    """The crash matrix row of one (strategy, scenario)."""

    strategy: str
    scenario: str
    reference_exit: int
    outcomes: list[Outcome]


def crash_row(strategy: str, scenario: str = "healthy", quick: bool = False, jobs: int = 1) -> Row:
    """Build the base, learn the kill points, run every one (``jobs`` at a time)."""
    root = Path(tempfile.mkdtemp(prefix=f"rfs-crash-{strategy}-"))
    try:
        base = fresh_base(root)
        ref = reference_run(base, root, strategy, scenario)
        expect = expectations(strategy)
        points = kill_points(ref, quick)
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            outcomes = list(pool.map(lambda p: run_point(base, root, strategy, scenario, p, expect), points))
        return Row(strategy, scenario, ref.exit_code, outcomes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
