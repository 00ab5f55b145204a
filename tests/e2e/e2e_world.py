"""One deployment through the real sandbox, and the facts the end-to-end tests judge it by.

:func:`deploy` opens a fresh sandbox session of the repository's ``production`` stack with
:func:`rfs_deploy.connect.open_seams` (moto, physics, the real program under Pulumi's mock runtime),
runs :class:`rfs_deploy.drive.driver.Driver` and, before the sandbox closes (moto is
process-global), reads back what the world looks like: the stack history with the release state
of every update, the listener weights and target health from moto, and each slot's instances with
the version the sandbox launched them on. Tests then assert on a :class:`Run` without any sandbox open.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rfs_deploy.config.model import SLOTS, ReleaseState
from rfs_deploy.connect import open_seams
from rfs_deploy.drive import journal
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.protocols import HistoryEntry
from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.outputs import parse_outputs
from rfs_deploy.sim.sandbox import Sandbox

STACK = "production"
SERVICE = "api-service"
OLD, NEW = "v1.0.0", "v2.0.0"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Instance:
    """One instance of a slot's Auto Scaling group, as the sandbox recorded it."""

    instance_id: str
    version: str | None
    launched_at: float


@dataclass
class Run:
    """A finished deployment and the state of the sandbox right after it."""

    scenario: str
    strategy: str
    record: DeploymentRecord
    #: Stack history, oldest first.
    history: list[HistoryEntry]
    #: The history version the deployment started from (its checkpoint) and its release state.
    checkpoint_version: int
    checkpoint: ReleaseState
    #: The stack config's release state after the deployment.
    final: ReleaseState
    #: Production listener weights per slot, read from moto.
    listener: dict[str, int]
    #: Healthy targets per slot's target group, read through the production adapter.
    healthy: dict[str, int]
    #: Instances per slot, oldest first.
    instances: dict[str, list[Instance]] = field(default_factory=dict)
    #: Instance refreshes of each slot's group (DescribeInstanceRefreshes entries, newest first).
    refreshes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def new_slot(self) -> str:
        """The slot the new version went to (the live slot for rolling)."""
        if self.strategy == "rolling":
            return self.checkpoint.live
        return self.checkpoint.idle

    def versions(self, slot: str) -> Counter[str | None]:
        return Counter(i.version for i in self.instances[slot])

    def deployment_releases(self) -> list[ReleaseState]:
        """Release states of every update this deployment ran (its steps and its rollback)."""
        return [e.release[SERVICE] for e in self.history if self.ours(e) and e.release]

    def ours(self, entry: HistoryEntry) -> bool:
        """Whether ``entry`` is an update this deployment ran (by its journal tag)."""
        tag = journal.decode(entry.message)
        return tag is not None and tag.deployment_id == self.record.deployment_id

    def max_new_weight(self) -> int:
        """The largest weight the new slot had: in any update, sample or verdict of this deployment."""
        slot = self.new_slot
        weights = [r.weights[slot] for r in self.deployment_releases() if r.slot(slot).version == NEW]
        weights += [s.weights.get(slot, 0) for s in self.record.samples]
        weights += [self.verdict_weight(v.at, v.step) for v in self.record.verdicts]
        return max(weights, default=0)

    def verdict_weight(self, at: float, step: int) -> int:
        """The new slot's weight when the verdict of ``step`` at ``at`` was given (its sample's)."""
        found = [s for s in self.record.samples if s.at == at and s.step == step]
        assert found, f"verdict at {at} of step {step} has no sample"
        return found[0].weights.get(self.new_slot, 0)


#: The session fixture ``deployments(scenario, strategy, seed=None) -> Run``.
Deploy = Callable[..., "Run"]


def sandbox_of(seams: Seams) -> Sandbox:
    """The sandbox behind seams from :func:`open_seams` (its ``closer`` is ``SandboxHold.close``)."""
    holder = getattr(seams.closer, "__self__", None)
    box = getattr(holder, "box", holder)
    assert isinstance(box, Sandbox), "seams are not over a sandbox"
    return box


#: Every deployment tests/e2e/test_scenarios.py judges, as (scenario, strategy, seed): made up
#: front, two at a time in worker processes (see conftest.py). A key missing here still works;
#: it is made in the test's own process when first asked for.
PLANNED: tuple[tuple[str, str, int | None], ...] = (
    *(("healthy", s, None) for s in ("canary", "blue-green", "rolling", "ab-test")),
    *(
        (sc, s, None)
        for sc in ("error-spike", "latency-regression")
        for s in ("canary", "blue-green", "rolling")
    ),
    ("error-spike", "ab-test", None),
    *(("flaky-metrics", "canary", seed) for seed in (None, 14, 11)),
    *(("flaky-metrics", "blue-green", seed) for seed in (None, 3, 6)),
    *(("slow-start", s, None) for s in ("canary", "blue-green", "rolling")),
    *(("never-healthy", s, None) for s in ("canary", "blue-green")),
)


def deploy_in(state: str, scenario: str, strategy: str, seed: int | None) -> Run:
    """:func:`deploy` with its sandbox session and records under ``state`` (a worker's own dir)."""
    os.environ["RFS_DEPLOY_STATE"] = state
    return deploy(scenario, strategy, seed=seed)


def deploy(
    scenario: str, strategy: str, *, seed: int | None = None, version: str = NEW, label: str | None = None
) -> Run:
    """A fresh sandbox under ``scenario``, one deployment of ``version`` with ``strategy``."""
    seams = open_seams(STACK, backend="sim", scenario=scenario, seed=seed, fresh=True)
    try:
        record = asyncio.run(Driver(seams).deploy(SERVICE, version, strategy))
        return observe(seams, label or scenario, strategy, record)
    finally:
        seams.close()


def observe(seams: Seams, scenario: str, strategy: str, record: DeploymentRecord) -> Run:
    """Read the sandbox's state after ``record`` finished (the seams stay open)."""
    box = sandbox_of(seams)
    history = list(reversed(seams.backend.history()))
    tags = [journal.decode(e.message) for e in history]
    tag = next(t for t in tags if t is not None and t.deployment_id == record.deployment_id)
    assert tag.checkpoint is not None
    checkpoint_entry = next(e for e in history if e.version == tag.checkpoint)
    assert checkpoint_entry.release is not None
    out = parse_outputs(seams.backend.outputs(), SERVICE)
    by_tg = {out.slot(s).target_group_arn: s for s in SLOTS}
    listener = {by_tg[arn]: w for arn, w in seams.traffic.forward_weights(out.listener_arn).items()}
    box.world.fleet.sync(box.clock.now())
    return Run(
        scenario=scenario,
        strategy=strategy,
        record=record,
        history=history,
        checkpoint_version=checkpoint_entry.version,
        checkpoint=checkpoint_entry.release[SERVICE],
        final=seams.backend.read_config().release[SERVICE],
        listener={s: listener.get(s, 0) for s in SLOTS},
        healthy={s: seams.traffic.target_health(out.slot(s).target_group_arn).healthy for s in SLOTS},
        instances={
            s: [
                Instance(i.instance_id, i.version, i.launched_at)
                for i in box.world.fleet.of_group(out.slot(s).asg_name)
            ]
            for s in SLOTS
        },
        refreshes={s: box.world.refreshes.describe(out.slot(s).asg_name) for s in SLOTS},
    )
