"""Traffic shaped like production's, end to end through the command line: a quiet service, bursty
5xx, and an upstream outage that makes both slots fail together.

Each case is one ``rfs-deploy --backend sim --json deploy`` of ``api-service`` v1.0.0 → v2.0.0 on
the repository's ``production`` stack, run by the command line's ``main`` in a worker process on a
fresh sandbox (its own state directory), judged by its exit code, its JSON document and the
deployment record it saved. The
outcomes are those the decision benchmark predicts for these cells (``benchmarks/decision``): a
healthy release is never rolled back, for thin windows, a bursty minute or a shared outage; it is
promoted, or paused for a person when the pooled windows still cannot decide; a real regression
under the outage is still rolled back. The models behind the scenarios (``errorBursts``,
``outages``) are checked first, without a sandbox.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import re
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from e2e_world import NEW, SERVICE, STACK

from rfs_deploy import cli
from rfs_deploy.drive.records import DeploymentRecord, RecordStore
from rfs_deploy.errors import ScenarioError
from rfs_deploy.sim import load_scenario, parse_scenario
from rfs_deploy.sim.behaviour import conduct
from rfs_deploy.sim.scenario import Behaviour, ErrorBursts
from rfs_deploy.sim.traffic import Bursts, Route, serve, simulate_minute

STRATEGIES = ("canary", "blue-green", "rolling", "ab-test")
EXIT = {"COMPLETED": 0, "ROLLED_BACK": 3, "PAUSED": 5}

#: (scenario, strategy) -> the status the command line must report; the longest runs first, so the
#: two workers that make them end at about the same time.
EXPECTED: dict[tuple[str, str], str] = {
    # blue-green switches all of a quiet service's few requests to the new slot and then cannot
    # pool enough of them in its bake: it waits for a person instead of rolling back
    ("low-traffic", "blue-green"): "PAUSED",
    # the quiet canary's thin windows extend its steps until its time budget would run out: the
    # step then waits for a person (analysis.onInconclusive: pause), never a budget rollback
    ("low-traffic", "canary"): "PAUSED",
    ("shared-outage", "canary"): "COMPLETED",
    ("bursty-errors", "canary"): "COMPLETED",
    ("bursty-errors", "blue-green"): "COMPLETED",
    ("shared-outage-regression", "canary"): "ROLLED_BACK",
    ("low-traffic", "ab-test"): "COMPLETED",
    ("low-traffic", "rolling"): "COMPLETED",
    ("bursty-errors", "rolling"): "COMPLETED",
    # (shared-outage, rolling) is left out: the refresh's own alarm guard (its alarm specification,
    # AWS's auto rollback) rolls the refresh back in the outage's first minute, so the driver's
    # shared-incident hold never gets to hold it and the release ends ROLLED_BACK
    ("bursty-errors", "ab-test"): "COMPLETED",
    # A fails as badly as B: the test holds those minutes out of its decision, B's alarm included
    ("shared-outage", "ab-test"): "COMPLETED",
    ("shared-outage-regression", "ab-test"): "ROLLED_BACK",
}


# --------------------------------------------------------------------------- the models


def steady(error_rate: float) -> Behaviour:
    return Behaviour(error_rate=error_rate)


def errors_per_minute(
    minutes: int, requests: int, rate: float, bursts: Bursts | None, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    targets = [conduct(steady(rate), age=86_400)] * 2
    return np.array([serve(rng, requests, targets, bursts).errors for _ in range(minutes)], dtype=float)


@pytest.mark.parametrize(("cv", "requests"), [(0.5, 1000), (1.0, 1000), (1.0, 100)])
def test_bursts_inflate_a_minutes_variance_by_the_benchmarks_factor(cv: float, requests: int) -> None:
    rate = 0.005
    counts = errors_per_minute(2000, requests, rate, Bursts(slot_cv=cv))
    kappa = (1 - rate) / (cv * cv * rate) - 1
    factor = 1 + (requests - 1) / (kappa + 1)  # the beta-binomial's variance over the binomial's
    binomial = requests * rate * (1 - rate)
    assert counts.mean() == pytest.approx(requests * rate, rel=0.1)
    assert counts.var() / binomial == pytest.approx(factor, rel=0.2)


def test_without_bursts_counts_are_binomial() -> None:
    counts = errors_per_minute(2000, 1000, 0.005, None)
    assert counts.var() / (1000 * 0.005 * 0.995) == pytest.approx(1.0, rel=0.1)


def two_slots(bursts: ErrorBursts, minutes: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Each minute's 5xx count of two target groups of one version, half the traffic each."""
    rng = np.random.default_rng(3)
    members = {"a": [conduct(steady(0.005), age=86_400)] * 5, "b": [conduct(steady(0.005), age=86_400)] * 5}
    routes = [Route(1.0, {"a": 50, "b": 50})]
    minutes_seen = [simulate_minute(rng, 2000, routes, members, bursts, 0.005) for _ in range(minutes)]
    return (
        np.array([m.groups["a"].errors for m in minutes_seen], dtype=float),
        np.array([m.groups["b"].errors for m in minutes_seen], dtype=float),
    )


def test_shared_bursts_move_both_slots_in_the_same_minute_and_slot_bursts_do_not() -> None:
    shared = np.corrcoef(*two_slots(ErrorBursts(shared_cv=1.0)))[0, 1]
    per_slot = np.corrcoef(*two_slots(ErrorBursts(slot_cv=1.0)))[0, 1]
    assert shared > 0.6
    assert abs(per_slot) < 0.1


def test_a_scenario_without_bursts_draws_what_it_always_drew() -> None:
    members = {"a": [conduct(steady(0.01), age=86_400)] * 3}
    routes = [Route(1.0, {"a": 100})]
    plain, configured = np.random.default_rng(9), np.random.default_rng(9)
    for _ in range(20):
        before = simulate_minute(plain, 500, routes, members)
        after = simulate_minute(configured, 500, routes, members, ErrorBursts(), 0.01)
        assert after == before
    assert plain.bit_generator.state == configured.bit_generator.state


def test_an_outage_fails_every_version_for_its_minutes_and_no_longer() -> None:
    scenario = load_scenario("shared-outage")
    (outage,) = scenario.outages
    assert (outage.start, outage.duration, outage.error_rate) == (480, 120, 0.5)
    assert [scenario.outage_rate(t) for t in (479, 480, 599, 600)] == [0.0, 0.5, 0.5, 0.0]
    for behaviour in (scenario.baseline, scenario.new):
        during = conduct(behaviour, age=86_400, outage=scenario.outage_rate(510))
        assert during.error_rate == 0.5 and during.in_service, "health checks still pass"
    worse = conduct(steady(0.7), age=86_400, outage=0.5)
    assert worse.error_rate == 0.7, "an outage never makes a version better"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (
            {"errorBursts": {"slotCv": 2}, "new": {"errorRate": 0.3}},
            "errorBursts.slotCv 2 needs every errorRate below 0.2 (a Beta of that CV has no larger "
            "mean); new.errorRate is 0.3",
        ),
        ({"errorBursts": {"sharedCv": 1}, "baseline": {"errorRate": 0}}, "must be above 0 and below 0.5"),
        ({"errorBursts": {"slotCV": 1}}, "errorBursts.slotCV: unknown key; did you mean 'slotCv'?"),
        ({"errorBursts": {"slotCv": -1}}, "errorBursts.slotCv: Input should be greater than or equal to 0"),
        ({"outages": [{"strat": 60}]}, "outages.0.strat: unknown key; did you mean 'start'?"),
        ({"outages": [{"duration": 60}]}, "outages.0.start: Field required"),
        ({"outages": [{"start": 60, "errorRate": 2}]}, "outages.0.errorRate: Input should be less than"),
        ({"outages": [{"start": "8x"}]}, 'outages.0.start: "8x" is not a duration'),
        ({"outages": {"start": 60}}, "outages: Input should be a valid list"),
    ],
)
def test_bad_burst_and_outage_keys_are_one_line(data: dict[str, Any], says: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(data, "mine.yaml")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("scenario mine.yaml: ")
    assert says in message


def test_the_new_scenarios_say_what_they_simulate() -> None:
    assert load_scenario("low-traffic").traffic.requests_per_minute == 50
    bursty = load_scenario("bursty-errors")
    assert bursty.error_bursts.slot_cv == 1.0 and bursty.new == bursty.baseline
    assert load_scenario("shared-outage").new == load_scenario("shared-outage").baseline
    regression = load_scenario("shared-outage-regression")
    assert regression.outages == load_scenario("shared-outage").outages
    assert regression.new.error_rate == 0.02 > regression.baseline.error_rate


# --------------------------------------------------------------------------- through the command line


@dataclass(frozen=True)
class Cli:
    """One ``deploy`` through the command line: its exit code, its JSON document, its record."""

    exit_code: int
    payload: dict[str, Any]
    record: DeploymentRecord
    stderr: str

    def verdicts(self, text: str) -> list[Any]:
        return [v for v in self.record.verdicts if text in v.reason]

    def failed(self) -> list[Any]:
        return [v for v in self.record.verdicts if v.outcome == "FAIL"]

    def new_weights(self, step: int) -> set[int]:
        return {s.weights.get(s.new_slot, 0) for s in self.record.samples if s.step == step}


def deploy_cli(state: str, scenario: str, strategy: str) -> tuple[int, str, str]:
    """``rfs-deploy --backend sim --json deploy ...`` in this (worker) process, its state in ``state``.

    The command line's own ``main``, so a worker imports rfs-deploy once for all its deployments;
    each deployment opens a fresh sandbox session in its own state directory.
    """
    os.environ["RFS_DEPLOY_STATE"] = state
    argv = ["--backend", "sim", "--json", "deploy", "--stack", STACK, "--service", SERVICE]
    argv += ["--version", NEW, "--strategy", strategy, "--scenario", scenario]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Mapping[tuple[str, str], Cli]:
    """Every :data:`EXPECTED` deployment, two at a time in fresh worker processes (a sandbox is a
    whole moto, which is process-global), the longest first."""
    states = {key: tmp_path_factory.mktemp(f"{key[0]}-{key[1]}") for key in EXPECTED}
    spawn = multiprocessing.get_context("spawn")  # no fork of a process that has run moto
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        futures = {key: pool.submit(deploy_cli, str(states[key]), *key) for key in EXPECTED}
        done = {key: future.result() for key, future in futures.items()}
    made = {}
    for key, (code, stdout, stderr) in done.items():
        assert stdout, stderr[-2000:]
        payload = json.loads(stdout)
        record = RecordStore(states[key] / "deployments" / "sim").load(payload["deployment_id"])
        made[key] = Cli(code, payload, record, stderr)
    return made


def assert_outcome(run: Cli, expected: str) -> None:
    """The status and exit code expected, and never a rollback of the healthy version."""
    assert run.payload["status"] == expected, (run.payload["status"], run.record.errors)
    assert run.exit_code == run.payload["exit_code"] == EXIT[expected], run.stderr[-2000:]
    if expected != "ROLLED_BACK":
        assert run.record.rolled_back_to is None
        assert not run.failed(), [v.reason for v in run.failed()]


def strategies_for(scenario: str) -> list[str]:
    """The strategies :data:`EXPECTED` deploys ``scenario`` with."""
    return [s for s in STRATEGIES if (scenario, s) in EXPECTED]


def outcome_of(runs: Mapping[tuple[str, str], Cli], scenario: str, strategy: str) -> Cli:
    """The deployment of ``scenario`` with ``strategy``, its expected outcome checked."""
    run = runs[scenario, strategy]
    assert_outcome(run, EXPECTED[scenario, strategy])
    return run


@pytest.mark.parametrize("strategy", strategies_for("low-traffic"))
def test_a_quiet_service_is_never_rolled_back_for_lack_of_data(
    runs: Mapping[tuple[str, str], Cli], strategy: str
) -> None:
    run = outcome_of(runs, "low-traffic", strategy)
    expected = EXPECTED["low-traffic", strategy]
    thin = [v for v in run.record.verdicts if v.outcome == "INCONCLUSIVE" and "need" in v.reason]
    assert len(thin) >= 3, "the windows were thin"
    probed = {s.index for s in run.record.steps if s.kind == "validate"}  # the load probe's own requests
    minutes = [
        sum(slot.get("requests") or 0 for slot in s.slots.values())
        for s in run.record.samples
        if s.step not in probed
    ]
    assert minutes and max(minutes) < 100, "about 50 requests a minute"
    need = {int(n) for v in thin for n in re.findall(r"\(need (\d+)\)", v.reason)}
    if strategy == "ab-test":
        # B wins only on the whole test's pooled requests, never on a thin window's
        assert run.record.decision is not None and run.record.decision.startswith("B")
        (pooled,) = re.findall(r"over (\d+) requests", run.record.decision)
        assert len(need) == 1 and int(pooled) >= need.pop(), run.record.decision
    if expected == "PAUSED":
        paused = run.payload["paused"]
        assert "thin windows" in paused["reason"] and "waiting for a person" in paused["reason"]
        assert "requests pooled" in paused["reason"], paused["reason"]
        if strategy == "canary":
            # held before its budget ran out, not rolled back by it
            assert "time budget" in paused["reason"] and not run.record.errors, run.record.errors
        assert run.record.ended_at is None, "it waits at its weight"


@pytest.mark.parametrize("strategy", strategies_for("bursty-errors"))
def test_bursty_errors_do_not_roll_back_a_healthy_release(
    runs: Mapping[tuple[str, str], Cli], strategy: str
) -> None:
    run = outcome_of(runs, "bursty-errors", strategy)
    assert run.record.verdicts[-1].outcome in ("PASS", "WINNER B")
    if strategy == "ab-test":
        assert run.record.decision is not None and run.record.decision.startswith("B")


@pytest.mark.parametrize("strategy", strategies_for("shared-outage"))
def test_a_shared_outage_holds_the_step_and_the_release_completes(
    runs: Mapping[tuple[str, str], Cli], strategy: str
) -> None:
    run = outcome_of(runs, "shared-outage", strategy)
    holds = run.verdicts("shared incident")
    assert len(holds) >= 2, "both minutes of the outage were held"
    assert {v.outcome for v in holds} == {"INCONCLUSIVE"}
    baseline = "A" if strategy == "ab-test" else "the baseline"
    assert all(f"{baseline} fails too" in v.reason for v in holds)
    (step,) = {v.step for v in holds}
    assert len(run.new_weights(step)) == 1, "no weight change while held"
    held = next(s for s in run.record.steps if s.index == step)
    assert held.outcome == "passed", "judging resumed once the baseline recovered"
    assert run.record.steps[-1].outcome == "passed"


@pytest.mark.parametrize("strategy", strategies_for("shared-outage-regression"))
def test_a_regression_under_a_shared_outage_is_still_rolled_back(
    runs: Mapping[tuple[str, str], Cli], strategy: str
) -> None:
    run = outcome_of(runs, "shared-outage-regression", strategy)
    assert run.record.rolled_back_to is not None
    holds = run.verdicts("shared incident")
    assert holds, "the outage was held as a shared incident first"
    if strategy == "ab-test":
        # the test's decision, on the minutes around the outage, keeps A
        (decided,) = [v for v in run.record.verdicts if v.outcome.startswith("WINNER")]
        assert decided.outcome == "WINNER A" and decided.at > max(v.at for v in holds)
        assert run.record.decision is not None and "higher than A's" in run.record.decision
        return
    (failed,) = run.failed()
    assert failed.at > max(v.at for v in holds)
    # rolled back for being worse than its baseline, not for the outage's alarm
    assert "vs baseline" in failed.reason and "alarm" not in failed.reason, failed.reason
