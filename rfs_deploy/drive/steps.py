"""Steps are data: a plan is a tuple of these, and progress is an index into it.

Two families:

* **changes** (``changes_stack = True``) are pure functions of the release state:
  ``apply(release) -> release``. The runner checkpoints, writes the new release state to the
  stack config, runs one stack update, then verifies in AWS that the change took effect.
* **observations** change nothing; the runner watches the world for them (health, validation,
  analysis, waiting) and turns what it sees into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rfs_deploy.config.model import ReleaseState, Rolling, Variants


@dataclass(frozen=True)
class Step:
    kind: ClassVar[str] = "step"
    changes_stack: ClassVar[bool] = False

    def describe(self) -> str:
        return self.kind


@dataclass(frozen=True)
class Change(Step):
    changes_stack: ClassVar[bool] = True

    def apply(self, release: ReleaseState) -> ReleaseState:
        raise NotImplementedError


def _instances(count: int) -> str:
    return f"{count} instance" if count == 1 else f"{count} instances"


# --------------------------------------------------------------------------- changes


def _pinned(release: ReleaseState, live_capacity: int | None) -> ReleaseState:
    """``release`` with the live slot at ``live_capacity`` (None: as it is)."""
    return release if live_capacity is None else release.with_slot(release.live, capacity=live_capacity)


@dataclass(frozen=True)
class DeployIdle(Change):
    """Put ``version`` on the idle slot with ``capacity`` instances, no production traffic; the
    live slot is pinned at ``live_capacity``, the size the release starts from (an autoscaled
    fleet's size then, docs/sizing.md; None: the live slot stays as it is)."""

    kind: ClassVar[str] = "deploy-idle"
    version: str
    capacity: int
    live_capacity: int | None = None

    def apply(self, release: ReleaseState) -> ReleaseState:
        pinned = _pinned(release, self.live_capacity)
        return pinned.with_slot(pinned.idle, version=self.version, capacity=self.capacity)

    def describe(self) -> str:
        return f"deploy {self.version} to the idle slot ({_instances(self.capacity)})"


@dataclass(frozen=True)
class ScaleIdle(Change):
    """Canary: grow (or shrink) the idle (new) slot to ``capacity`` instances before its weight
    becomes ``weight``; the runner then waits, as :class:`WaitHealthy` does, until all of them
    are healthy (at most ``timeout`` seconds, then ``warmup`` if set), so traffic never moves to a slot
    that cannot carry it yet. One step rather than a change and a wait, so skipping ahead
    (``promote --full``) cannot skip the wait and leave the change."""

    kind: ClassVar[str] = "scale-idle"
    capacity: int
    weight: int
    timeout: int
    warmup: int = 0

    def apply(self, release: ReleaseState) -> ReleaseState:
        return release.with_slot(release.idle, capacity=self.capacity)

    def health_wait(self) -> WaitHealthy:
        """The wait that follows the change."""
        return WaitHealthy(timeout=self.timeout, warmup=self.warmup)

    def describe(self) -> str:
        return (
            f"scale the idle slot to {_instances(self.capacity)} for {self.weight}% and wait until "
            f"they are healthy (at most {self.timeout}s)"
        )


@dataclass(frozen=True)
class SetWeight(Change):
    """Send ``weight`` percent of production traffic to the idle (new) slot."""

    kind: ClassVar[str] = "set-weight"
    weight: int
    stickiness: int | None = None

    def apply(self, release: ReleaseState) -> ReleaseState:
        weights = {release.idle: self.weight, release.live: 100 - self.weight}
        return release.evolve(weights=weights, stickiness=self.stickiness)

    def describe(self) -> str:
        return "switch all traffic to the new slot" if self.weight == 100 else f"set weight {self.weight}%"


@dataclass(frozen=True)
class StartVariants(Change):
    """A/B: split users ``split`` percent to B (idle slot) with stickiness; forced-variant rules."""

    kind: ClassVar[str] = "start-variants"
    split: int
    stickiness: int
    header: str
    cookie: str
    rule_priority: int

    def apply(self, release: ReleaseState) -> ReleaseState:
        variants = Variants(header=self.header, cookie=self.cookie, rule_priority=self.rule_priority)
        weights = {release.idle: self.split, release.live: 100 - self.split}
        return release.evolve(weights=weights, stickiness=self.stickiness, variants=variants)

    def describe(self) -> str:
        return f"A/B split {100 - self.split}/{self.split} with header {self.header} and cookie {self.cookie}"


@dataclass(frozen=True)
class Promote(Change):
    """The new slot becomes live with all traffic; A/B rules and stickiness are removed."""

    kind: ClassVar[str] = "promote"

    def apply(self, release: ReleaseState) -> ReleaseState:
        new = release.idle
        return release.evolve(live=new, weights={new: 100, release.live: 0}, variants=None, stickiness=None)

    def describe(self) -> str:
        return "promote the new slot to live"


@dataclass(frozen=True)
class ScaleDown(Change):
    """Scale the idle (old) slot to zero instances; its version stays on record."""

    kind: ClassVar[str] = "scale-down"

    def apply(self, release: ReleaseState) -> ReleaseState:
        return release.with_slot(release.idle, capacity=0)

    def describe(self) -> str:
        return "scale the old slot to zero"


@dataclass(frozen=True)
class RollRefresh(Change):
    """Rolling: the live slot's launch template moves to ``version``; instance refresh follows.
    The slot is pinned at ``live_capacity`` as :class:`DeployIdle` pins it."""

    kind: ClassVar[str] = "roll-refresh"
    version: str
    #: The refresh settings for this release (batch size, interval, warm-up).
    rolling: Rolling | None = None
    live_capacity: int | None = None

    def apply(self, release: ReleaseState) -> ReleaseState:
        moved = _pinned(release, self.live_capacity).with_slot(release.live, version=self.version)
        return moved if self.rolling is None else moved.evolve(rolling=self.rolling)

    def describe(self) -> str:
        return f"refresh the live slot to {self.version}"


@dataclass(frozen=True)
class FinishRefresh(Change):
    """Rolling: the release is done; its refresh settings (and the alarm guard) are removed."""

    kind: ClassVar[str] = "finish-refresh"

    def apply(self, release: ReleaseState) -> ReleaseState:
        return release.evolve(rolling=None)

    def describe(self) -> str:
        return "end the rolling release (refresh settings back to the service's)"


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class WaitHealthy(Step):
    """Wait until every target of the idle (new) slot is healthy, at most ``timeout`` seconds."""

    kind: ClassVar[str] = "wait-healthy"
    timeout: int
    #: Seconds the slot must then stay healthy (warm-up) before the step passes.
    warmup: int = 0

    def describe(self) -> str:
        warm = f", then {self.warmup}s warm-up" if self.warmup else ""
        return f"wait until the new slot is healthy (at most {self.timeout}s{warm})"


@dataclass(frozen=True)
class Validate(Step):
    """Validation hooks and HTTP checks through the test listener, before traffic moves."""

    kind: ClassVar[str] = "validate"
    version: str
    #: Also judge the slot under load (``validation.probe``) before any traffic moves to it.
    probe: bool = False

    def describe(self) -> str:
        load = " and under probe load" if self.probe else ""
        return f"validate {self.version} through the test listener{load}"


@dataclass(frozen=True)
class Pause(Step):
    """Wait ``seconds`` (switch delay, scale-down delay)."""

    kind: ClassVar[str] = "pause"
    seconds: int
    reason: str

    def describe(self) -> str:
        return f"wait {self.seconds}s ({self.reason})"


@dataclass(frozen=True)
class Gate(Step):
    """Hold here, weights unchanged, until a person (or a pipeline) promotes the deployment:
    ``deploy`` records the pause in the stack's history and exits with the paused code;
    ``rfs-deploy promote`` carries on from the next step."""

    kind: ClassVar[str] = "gate"
    #: Why it holds, e.g. ``"canary at 20 %"`` (shown by status and the pause record).
    reason: str

    def describe(self) -> str:
        return f"pause until promoted ({self.reason})"


@dataclass(frozen=True)
class Analyze(Step):
    """Watch metrics for ``duration`` seconds and judge every ``interval``.

    ``baseline`` compares the new slot with the live slot (needs traffic on both).
    """

    kind: ClassVar[str] = "analyze"
    duration: int
    interval: int
    baseline: bool

    def describe(self) -> str:
        vs = " against the live slot" if self.baseline else ""
        return f"analyze for {self.duration}s{vs}"


@dataclass(frozen=True)
class WatchRefresh(Step):
    """Rolling: follow the instance refresh to the end, judging metrics as it goes."""

    kind: ClassVar[str] = "watch-refresh"
    timeout: int
    interval: int
    #: Seconds the refresh should take by its preferences (batches x (warm-up + interval)).
    expected: int = 0

    def describe(self) -> str:
        return f"watch the instance refresh (at most {self.timeout}s)"


@dataclass(frozen=True)
class Decide(Step):
    """A/B: observe both variants for ``duration`` seconds, then decide between them."""

    kind: ClassVar[str] = "decide"
    duration: int
    interval: int

    def describe(self) -> str:
        return f"run the A/B test for {self.duration}s, then decide"
