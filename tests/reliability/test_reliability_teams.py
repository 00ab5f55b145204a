"""Concurrency a team relies on, with real processes on one sandbox stack (issue: pipelines).

* Two services of ``platform`` deployed at once from two processes: both complete (the second
  waits for the sandbox session, as it would for Pulumi's stack lock between updates).
* Two deployments of one service started at once: one runs, the other is refused in one line
  and leaves no open deployment in the journal and no IN_PROGRESS record.
* ``abort`` while the deployment's owner is alive is refused, naming the owner; after the
  owner is gone it works; ``abort --force`` / ``resume --force`` racing a live deployment wait
  for it and then change nothing.
* 50 ``status`` calls during a deployment all succeed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import crashkit

from rfs_deploy.drive.journal import decode


def start(state: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*crashkit.CLI, "--backend", "sim", *args],
        env=crashkit.env(state, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_step(proc: subprocess.Popen[str], step: int) -> list[str]:
    """Read the process's progress until step ``step`` starts; the lines read so far."""
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        match = crashkit.STEP_LINE.match(line)
        if match and int(match[1]) >= step:
            return seen
    raise AssertionError(f"the deployment ended before step {step}: {''.join(seen[-5:])}")


def platform_base(root: Path) -> Path:
    base = root / "base"
    done = crashkit.cli(base, "up", "--stack", "platform")
    assert done.returncode == 0, done.stderr
    return base


def history(state: Path, stack: str) -> list[dict]:
    shown = crashkit.cli(state, "--json", "history", "--stack", stack, "--limit", "200")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["stack_history"]


def test_two_services_of_one_stack_deploy_at_once(tmp_path: Path) -> None:
    state = platform_base(tmp_path)
    deploy = ["deploy", "--stack", "platform"]
    first = start(state, *deploy, "--service", "api-service", "--version", "v2.0.0")
    second = start(state, *deploy, "--service", "search", "--version", "v5.3.0")
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), [o[1][-800:] for o in outs]

    entries = history(state, "platform")
    tags = [decode(e["message"]) for e in entries]
    services = {t.service for t in tags if t is not None}
    assert services == {"api-service", "search"}
    status = crashkit.cli(state, "--json", "status", "--stack", "platform")
    assert status.returncode == 0, status.stderr
    plan = crashkit.cli(
        state, "--json", "plan", "--stack", "platform", "--service", "checkout", "--version", "v2025.1.0"
    )
    assert plan.returncode == 0, plan.stderr
    # each release kept the other's: both services are on their new versions
    for service, version, back in (("api-service", "v2.0.0", "v1.0.0"), ("search", "v5.3.0", "v5.2.0")):
        shown = crashkit.cli(
            state, "--json", "plan", "--stack", "platform", "--service", service, "--version", back
        )
        assert shown.returncode == 0, shown.stderr
        live = json.loads(shown.stdout)["from"]
        assert live[live["live"]]["version"] == version


def test_a_race_on_one_service_leaves_one_deployment_and_no_zombie(tmp_path: Path) -> None:
    state = crashkit.fresh_base(tmp_path)
    procs = [
        start(state, *crashkit.deploy_args(strategy, "healthy")) for strategy in ("canary", "blue-green")
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], [o[1][-600:] for o in outs]
    loser = next(o for p, o in zip(procs, outs, strict=True) if p.returncode == 2)
    lines = [line for line in loser[1].splitlines() if line.startswith("rfs-deploy: error:")]
    # refused before it changed anything: while the winner ran, or once it had finished
    assert len(lines) == 1, loser[1][-600:]
    assert any(text in lines[0] for text in ("is running", "still open", "already live")), lines[0]

    deployments = {t.deployment_id for e in history(state, "production") if (t := decode(e["message"]))}
    assert len(deployments) == 1
    status = crashkit.cli(state, "--json", "status", "--stack", "production")
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "COMPLETED", status.stdout
    nothing = crashkit.cli(state, "resume", "--stack", "production")
    assert nothing.returncode == 2 and "no open deployment" in nothing.stderr
    records = list((state / "deployments" / "sim").glob("*.json"))
    assert all(json.loads(r.read_text())["status"] != "IN_PROGRESS" for r in records)


def test_abort_is_refused_while_the_owner_is_alive(tmp_path: Path) -> None:
    state = crashkit.fresh_base(tmp_path)
    owner = start(state, *crashkit.deploy_args("canary", "healthy"))
    try:
        wait_for_step(owner, 5)
        owner.send_signal(signal.SIGSTOP)  # a slow owner: alive, between its updates
        refused = crashkit.cli(state, "abort", "--stack", "production", "--service", "api-service")
    finally:
        owner.send_signal(signal.SIGCONT)
    owner.communicate(timeout=600)
    assert refused.returncode == 2, refused.stderr
    assert f"being run by process {owner.pid}" in refused.stderr and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert owner.returncode == 0  # the refused abort changed nothing


def test_a_forced_abort_racing_a_live_deployment_never_undoes_it(tmp_path: Path) -> None:
    """``abort --force`` (and ``resume --force``) while the owner is alive and running: the
    sandbox holds the stack for the owner's whole command, so the takeover waits, then finds the
    deployment finished — one line, exit 2, and the owner's release and record stand."""
    state = crashkit.fresh_base(tmp_path)
    owner = start(state, *crashkit.deploy_args("canary", "healthy"))
    wait_for_step(owner, 5)
    assert owner.stderr is not None
    drain = threading.Thread(target=owner.stderr.read, daemon=True)
    drain.start()
    verbs = ("abort", "resume")
    racers = [
        start(state, verb, "--stack", "production", "--service", "api-service", "--force") for verb in verbs
    ]
    outs = [p.communicate(timeout=900) for p in racers]
    owner.wait(timeout=900)

    assert owner.returncode == 0
    for verb, proc, (_, err) in zip(verbs, racers, outs, strict=True):
        assert proc.returncode == 2, (verb, err[-600:])
        errors = [line for line in err.splitlines() if line.startswith("rfs-deploy: error:")]
        assert len(errors) == 1 and "nothing to do" in errors[0], (verb, err[-600:])
    status = crashkit.cli(state, "--json", "status", "--stack", "production")
    assert json.loads(status.stdout)["status"] == "COMPLETED", status.stdout
    phases = {t.phase for e in history(state, "production") if (t := decode(e["message"]))}
    assert phases.isdisjoint({"abort", "rollback"})
    records = list((state / "deployments" / "sim").glob("*.json"))
    assert [json.loads(r.read_text())["status"] for r in records] == ["COMPLETED"]


def test_abort_after_the_owner_died_restores_the_checkpoint(tmp_path: Path) -> None:
    state = crashkit.fresh_base(tmp_path)
    owner = start(state, *crashkit.deploy_args("canary", "healthy"))
    wait_for_step(owner, 5)
    owner.kill()
    owner.communicate(timeout=60)
    done = crashkit.cli(state, "abort", "--stack", "production", "--service", "api-service")
    assert done.returncode == 0, done.stderr


def test_status_polls_of_two_watchers_during_a_deployment_all_succeed(tmp_path: Path) -> None:
    """Two people (or dashboards) poll `status` side by side, 12 polls each, while the deployment
    runs: every poll answers one JSON document with exit 0, and most of them while it is open
    (the sandbox paces the deployment's virtual minutes in wall-clock time, so it lasts)."""
    state = crashkit.fresh_base(tmp_path)
    owner = start(state, *crashkit.deploy_args("canary", "healthy"), RFS_DEPLOY_SIM_PACE="0.1")
    wait_for_step(owner, 2)
    assert owner.stderr is not None
    drain = threading.Thread(target=owner.stderr.read, daemon=True)
    drain.start()
    failures: list[str] = []
    during: list[bool] = []

    def watcher() -> None:
        for _ in range(12):
            running = owner.poll() is None
            polled = crashkit.cli(state, "--json", "status", "--stack", "production", timeout=120)
            if polled.returncode != 0:
                failures.append(polled.stderr.strip()[-300:])
            json.loads(polled.stdout)  # one JSON document either way
            during.append(running)

    watchers = [threading.Thread(target=watcher) for _ in range(2)]
    for thread in watchers:
        thread.start()
    for thread in watchers:
        thread.join(timeout=900)
    owner.wait(timeout=600)
    assert failures == []
    assert len(during) == 24 and sum(during) >= 12, sum(during)
    assert owner.returncode == 0
