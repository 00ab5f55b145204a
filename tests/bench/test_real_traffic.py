"""The decision benchmark's real-traffic cells (issue 15): each traffic model's statistics, the
paused outcome, the targets, exact reproduction, and the sandbox-model cells drawing what they
drew before. Small seed counts; no timings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmarks.decision.cells import (
    ANCHORS,
    GROUPS,
    MAIN_CELLS,
    Row,
    evaluate,
    first_step_cells,
    real_traffic_cells,
    summarise,
    targets,
)
from benchmarks.decision.policies import Decision
from benchmarks.decision.run import main
from benchmarks.decision.traffic import (
    MEDIAN,
    P99,
    Cell,
    SeedTrace,
    beta_rates,
    latency_params,
    minute_rates,
    sample_p99,
    simulate,
)

# --------------------------------------------------------------------------- today's cells unchanged


@pytest.mark.parametrize(
    ("cell", "fingerprint"),
    [
        (Cell("t", 1000, 0.02), (6465, 1332, 206.11332306014873, 183.48272801866)),
        (Cell("s", 50, 0.005, latency_factor=2.0), (96, 73, 324.5653887439237, 142.99833500864332)),
    ],
)
def test_the_sandbox_model_draws_what_it_drew_before_the_real_traffic_models(
    cell: Cell, fingerprint: tuple[int, int, float, float]
) -> None:
    """Sums pinned from the traffic model before issue 15's additions, same cell and seed."""
    traces = simulate(cell, 5, 12, seed=3)
    assert cell.steady
    found = (
        int(traces.new_errors.sum()),
        int(traces.base_errors.sum()),
        float(np.nansum(traces.new_p99)),
        float(np.nansum(traces.base_p99)),
    )
    assert found[:2] == fingerprint[:2]
    assert found[2:] == pytest.approx(fingerprint[2:], rel=1e-12)


def test_every_cell_has_its_own_name_and_every_real_traffic_cell_a_known_group() -> None:
    cells = MAIN_CELLS + first_step_cells() + real_traffic_cells()
    assert len({c.name for c in cells}) == len(cells)
    groups = {g for g, _ in GROUPS}
    assert {c.group for c in real_traffic_cells()} == groups
    # steady: the sandbox's error and traffic model, whatever the latency (whole-distribution factors)
    assert all(not c.steady for c in real_traffic_cells() if c.group not in ("low", "latency"))
    assert all(c.steady for c in real_traffic_cells() if c.group == "low" or c.latency_factor > 1)


# --------------------------------------------------------------------------- overdispersed errors


@pytest.mark.parametrize(("cv", "bursts"), [(0.5, "slot"), (1.0, "slot"), (2.0, "slot"), (1.0, "shared")])
def test_beta_mixture_inflates_the_binomial_variance_by_the_expected_factor(cv: float, bursts: str) -> None:
    """Var(errors | n) = n p (1 - p) (1 + (n - 1) / (kappa + 1)), kappa = (1 - p) / (cv^2 p) - 1."""
    p = 0.005
    traces = simulate(Cell("b", 1000, p, rate_cv=cv, bursts=bursts), 300, 40, seed=11)
    n = traces.base_requests[:, :, 0].astype(float)
    errors = traces.base_errors[:, :, 0]
    kappa = (1 - p) / (cv * cv * p) - 1
    inflation = ((errors - n * p) ** 2 / (n * p * (1 - p))).mean()
    assert inflation == pytest.approx((1 + (n - 1) / (kappa + 1)).mean(), rel=0.1)
    assert errors.sum() / n.sum() == pytest.approx(p, rel=0.05)  # bursts around the same mean


def test_binomial_errors_have_no_extra_variance() -> None:
    traces = simulate(Cell("b", 1000, 0.005), 300, 40, seed=11)
    n = traces.base_requests[:, :, 0].astype(float)
    ratio = ((traces.base_errors[:, :, 0] - n * 0.005) ** 2 / (n * 0.005 * 0.995)).mean()
    assert ratio == pytest.approx(1.0, abs=0.06)


def test_beta_rates_have_the_asked_mean_and_coefficient_of_variation() -> None:
    rates = beta_rates(np.random.default_rng(2), np.full(200_000, 0.01), 1.5)
    assert rates.mean() == pytest.approx(0.01, rel=0.02)
    assert rates.std() / rates.mean() == pytest.approx(1.5, rel=0.03)
    with pytest.raises(ValueError, match="impossible"):
        beta_rates(np.random.default_rng(2), np.full(3, 0.5), 2.0)


def test_shared_bursts_hit_both_slots_in_the_same_minutes_per_slot_bursts_do_not() -> None:
    rng = np.random.default_rng(4)
    shared_new, shared_base = minute_rates(Cell("s", 1000, 0.02, rate_cv=1.0, bursts="shared"), 200, 30, rng)
    assert np.allclose(shared_new / shared_base, 4.0)  # one burst, the canary's 2 % scaled with it
    own_new, own_base = minute_rates(Cell("o", 1000, 0.005, rate_cv=1.0), 200, 30, rng)
    assert abs(np.corrcoef(own_new.ravel(), own_base.ravel())[0, 1]) < 0.05
    healthy_new, healthy_base = minute_rates(Cell("h", 1000, 0.005, rate_cv=1.0, bursts="shared"), 5, 5, rng)
    assert np.allclose(healthy_new, healthy_base, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- drift, ramps, latency


def test_drift_rises_linearly_over_its_minutes_then_holds() -> None:
    rng = np.random.default_rng(0)
    new, base = minute_rates(Cell("d", 1000, 0.005, drift=0.01), 2, 20, rng)
    assert new[0, 0] == pytest.approx(0.005) and new[0, 9] == pytest.approx(0.015)
    assert np.allclose(new[0, 9:], 0.015) and np.all(np.diff(new[0, :10]) > 0)
    assert np.array_equal(new, base)
    alone_new, alone_base = minute_rates(Cell("a", 1000, 0.005, drift=0.015, drift_slots="new"), 2, 20, rng)
    assert alone_new[0, -1] == pytest.approx(0.02) and np.allclose(alone_base, 0.005)
    assert Cell("a", 1000, 0.005, drift=0.015, drift_slots="new").faulty
    assert not Cell("b", 1000, 0.005, drift=0.015).faulty


def test_traffic_ramps_linearly_then_holds() -> None:
    traces = simulate(Cell("r", 1000, 0.005, ramp=(1.0, 0.1)), 400, 14, seed=5)
    per_minute = (traces.new_requests + traces.base_requests)[:, :, 0].mean(axis=0)
    expected = 1000 * np.r_[np.linspace(1.0, 0.1, 10), [0.1] * 4]
    assert per_minute == pytest.approx(expected, rel=0.01)


def test_tail_only_latency_keeps_the_median_and_moves_the_p99() -> None:
    mu, sigma = latency_params(1.0, tail=1.3)
    assert np.exp(mu) == pytest.approx(MEDIAN)
    assert np.exp(mu + sigma * 2.3263478740408408) == pytest.approx(1.3 * P99)
    big = sample_p99(np.random.default_rng(1), np.full(2000, 2000), mu, sigma)
    assert np.median(big) == pytest.approx(1.3 * P99, rel=0.03)
    whole_mu, whole_sigma = latency_params(1.3)
    assert np.exp(whole_mu) == pytest.approx(1.3 * MEDIAN) and whole_sigma == latency_params()[1] < sigma


# --------------------------------------------------------------------------- shared outages


def test_a_shared_outage_hits_both_slots_in_the_same_minutes() -> None:
    cell = Cell("o", 1000, 0.005, outage_minutes=2, outage_rate=0.5, outage_latest=8)
    new, base = minute_rates(cell, 500, 20, np.random.default_rng(9))
    down_new, down_base = new >= 0.5, base >= 0.5
    assert np.array_equal(down_new, down_base)
    assert (down_new.sum(axis=1) == 2).all()
    starts = down_new.argmax(axis=1)
    assert set(starts.tolist()) == set(range(8))  # minute 1 to 8
    assert down_new[np.arange(500), starts + 1].all()  # two minutes in a row
    traces = simulate(cell, 50, 20, seed=9)
    outage_minutes = traces.new_errors[:, :, 4] > 0.3 * traces.new_requests[:, :, 4]
    assert np.array_equal(outage_minutes, traces.base_errors[:, :, 4] > 0.3 * traces.base_requests[:, :, 4])
    assert (outage_minutes.sum(axis=1) == 2).all()


# --------------------------------------------------------------------------- exact reproduction


@pytest.mark.parametrize("group", [g for g, _ in GROUPS])
def test_each_real_traffic_group_reproduces_exactly_from_its_seed(group: str) -> None:
    cell = next(c for c in real_traffic_cells() if c.group == group)
    rows = evaluate(cell, 6, base_seed=6)
    assert rows == evaluate(cell, 6, base_seed=6)
    assert {r.policy for r in rows} >= {"rfs-deploy", *ANCHORS}
    first, again = simulate(cell, 6, 30, seed=1), simulate(cell, 6, 30, seed=1)
    assert np.array_equal(first.new_errors, again.new_errors)
    assert not np.array_equal(first.new_errors, simulate(cell, 6, 30, seed=2).new_errors)


# --------------------------------------------------------------------------- paused, targets


@dataclass
class Pauses:
    """A policy that asks a person on every third release and promotes the others."""

    name: str = "pauses"
    seen: int = 0

    def decide(self, trace: SeedTrace) -> Decision:
        self.seen += 1
        if self.seen % 3 == 0:
            return Decision.pause(4, trace.minute(4, 3).new_requests, "not enough data")
        return Decision(False, 10, 5000, "promoted")


def test_the_harness_counts_a_paused_release_as_neither_rolled_back_nor_promoted() -> None:
    cell = Cell("healthy", 1000, 0.005)
    (row,) = evaluate(cell, 9, base_seed=6, chosen=[Pauses()])
    assert (row.rolled_back, row.paused) == (0.0, pytest.approx(1 / 3))
    assert row.reasons == "paused: not enough data 3"
    assert Decision.pause(2, 10, "held").outcome == "paused"
    assert Decision(True, 2, 10, "alarm").outcome == "rolled back"
    with pytest.raises(ValueError, match="not both"):
        Decision(True, 2, 10, "alarm", paused=True)


def _row(cell: str, policy: str, rolled: float, paused: float = 0.0, faulty: bool = False) -> Row:
    back, held = round(rolled * 100), round((rolled + paused) * 100)
    decisions = [Decision(i < back, 1, 1, "x", paused=back <= i < held) for i in range(100)]
    return summarise(Cell(cell, 1000, 0.05 if faulty else 0.005), policy, decisions, None)


def test_targets_against_the_anchor_policies() -> None:
    anchors = [0.03, 0.01, 0.02, 0.04]
    healthy = [_row("h", a, r) for a, r in zip(ANCHORS, anchors, strict=True)]
    ok, too_many, paused = (
        targets([_row("h", "rfs-deploy", 0.01), *healthy]),
        targets([_row("h", "rfs-deploy", 0.02), *healthy]),
        targets([_row("h", "rfs-deploy", 0.0, paused=0.06), *healthy]),
    )
    assert ok[0].met and ok[0].bound == pytest.approx(0.015)
    assert not too_many[0].met and "false rollbacks" in too_many[0].why
    assert not paused[0].met and "paused" in paused[0].why
    faulty = [_row("f", a, r, faulty=True) for a, r in zip(ANCHORS, (0.5, 0.9, 0.7, 0.2), strict=True)]
    assert targets([_row("f", "rfs-deploy", 0.9, faulty=True), *faulty])[0].met
    assert not targets([_row("f", "rfs-deploy", 0.89, faulty=True), *faulty])[0].met
    strict = targets([_row("h", "rfs-deploy", 0.01), *healthy], absolute=frozenset({"h"}))
    assert not strict[0].met and strict[0].bound == pytest.approx(0.005)
    assert targets([_row("h", "rfs-deploy, minRequests 50", 0.0), *healthy])[0].met  # the cell's own policy


# --------------------------------------------------------------------------- the command


def test_cells_filter_runs_only_those_cells_and_reports_paused(tmp_path: Path) -> None:
    assert main(["--seeds", "3", "--no-cost", "--cells", "outage", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "decision.md").read_text()
    assert "## Real traffic: Shared outages" in text and "## Decision quality" not in text
    assert "| shared outage 1 min: healthy | healthy |" in text
    data = json.loads((tmp_path / "decision.json").read_text())
    assert {r["cell"] for r in data["rows"]} == {c.name for c in real_traffic_cells() if c.group == "outage"}
    assert all("paused" in r for r in data["rows"]) and len(data["targets"]) == 4
    assert (tmp_path / "decision.csv").read_text().startswith("cell,policy,runs,faulty,rolled_back,paused")


def test_cells_filter_that_matches_nothing_is_one_clear_error() -> None:
    with pytest.raises(SystemExit, match="no cell's name or group"):
        main(["--seeds", "3", "--no-cost", "--cells", "nonesuch"])


def test_before_an_unknown_revision_is_one_clear_error() -> None:
    with pytest.raises(SystemExit, match="not a git revision"):
        main(["--seeds", "2", "--no-cost", "--cells", "5xx 20 %", "--before", "no-such-revision"])
