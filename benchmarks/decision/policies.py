"""The decision policies the benchmark compares, each run minute by minute over one seed's draws.

* :class:`Ours` — rfs-deploy: the real :class:`~rfs_deploy.drive.judge.StepJudge` driven the way
  :meth:`rfs_deploy.drive.analysis.Analyst.analyze` drives it (one judged window per interval,
  the sequential evidence handed from step to step, a window without data merged into the next,
  the baseline compared up to 90 %, thresholds only at 100 %), plus the check the runner makes at
  every tick of the new slot's own CloudWatch alarms.
* :class:`Threshold` — a fixed threshold as Flagger and Argo Rollouts users set it: the new slot's
  error rate above 5 % or p99 above 500 ms (Flagger's documented ``request-success-rate`` /
  ``request-duration`` pair) in a 60 s interval is a failed check; the release rolls back at the
  ``limit``-th failed check (Flagger ``threshold``; Argo ``failureLimit`` is this minus one).
  As Flagger does, a failed check holds the weight for another interval, and an interval without
  data neither passes nor fails.
* :class:`Alarm` — CodeDeploy watching the CloudWatch alarms the program creates
  (:mod:`rfs_deploy.infra.alarms`): 5xx rate above ``maxErrorRate`` or p99 above
  ``maxP99Latency`` for ``failureLimit`` consecutive one-minute periods, missing data not
  breaching. Traffic shifts on schedule; the alarm is assumed to see each minute at its end.
* :class:`WaldPerMinute` — a reference, not a product: Wald's SPRT on the new slot's own counts,
  told the true baseline and regressed rates, looking once a minute.

Every policy returns a :class:`Decision`: rolled back, promoted or paused for a person, the minute
it decided (counted from the first shift of traffic) and the requests the new version served
until then. No policy here pauses today; a judge that ends an undecided step by asking a person
returns :meth:`Decision.pause`, and the tables count it as the third outcome.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Protocol

from benchmarks.decision.traffic import Minute, SeedTrace
from rfs_deploy.config.model import Analysis
from rfs_deploy.drive import rules
from rfs_deploy.drive.judge import StepJudge, planned_windows
from rfs_deploy.drive.rules import Outcome, SlotMetrics, Window
from rfs_deploy.drive.stats import Evidence

#: Seconds per metric period and per canary step (the default plan: 60 s steps, 60 s ticks).
PERIOD = 60
#: Average CPU the simulated fleets report (well under every CPU threshold).
CPU = 35.0


@dataclass(frozen=True)
class Decision:
    """How one simulated release ended."""

    rolled_back: bool
    #: Minute of the decision (rollback or the last passing check), from the first traffic shift.
    minute: int
    #: Requests the new version served up to the decision.
    exposure: int
    #: What decided: "promoted", "sequential test", "error rate", "p99 vs baseline", "p99",
    #: "not enough data", "alarm", "SPRT".
    reason: str
    #: The release stopped for a person to decide (neither rolled back nor promoted).
    paused: bool = False

    def __post_init__(self) -> None:
        if self.paused and self.rolled_back:
            raise ValueError("a release is rolled back or paused, not both")

    @classmethod
    def pause(cls, minute: int, exposure: int, reason: str) -> Decision:
        """The release paused for a person at ``minute``, the new version still at its weight."""
        return cls(False, minute, exposure, reason, paused=True)

    @property
    def outcome(self) -> str:
        """ "rolled back", "paused" or "promoted"."""
        return "rolled back" if self.rolled_back else "paused" if self.paused else "promoted"


class Policy(Protocol):
    """Decides one release from one seed's draws."""

    name: str

    def decide(self, trace: SeedTrace) -> Decision: ...


# --------------------------------------------------------------------------- alarms


@dataclass
class AlarmState:
    """The new slot's 5xx-rate and p99 alarms (M of M periods, missing data not breaching)."""

    periods: int
    max_error_rate: float
    max_p99: float
    #: A minute with fewer requests does not breach the 5xx alarm (the program's: metric math ``IF``).
    min_requests: int = 0
    _errors: int = 0
    _latency: int = 0

    def minute(self, m: Minute) -> str | None:
        """Feed one minute; the name of an alarm in ALARM afterwards, or None."""
        counted = m.new_requests > 0 and m.new_requests >= self.min_requests
        rate = m.new_errors / m.new_requests if counted else None
        self._errors = self._errors + 1 if rate is not None and rate > self.max_error_rate else 0
        slow = m.new_p99 is not None and m.new_p99 > self.max_p99
        self._latency = self._latency + 1 if slow else 0
        if self._errors >= self.periods:
            return "5xx"
        if self._latency >= self.periods:
            return "p99"
        return None


# --------------------------------------------------------------------------- ours


@dataclass
class Ours:
    """rfs-deploy's judge with ``analysis`` (default: the project's default Analysis policy)."""

    name: str = "rfs-deploy"
    analysis: Analysis = field(default_factory=Analysis)

    def decide(self, trace: SeedTrace) -> Decision:
        policy = self.analysis
        interval = max(PERIOD, policy.period)
        alarms = AlarmState(
            policy.failure_limit, policy.max_error_rate, policy.max_p99_latency, alarm_min_requests(policy)
        )
        t = exposure = 0
        # the runner reads the baseline's hour before the first shift and starts the test with it
        evidence = history_evidence(trace, policy)
        pool: Window | None = None
        for step, weight in enumerate(trace.weights):
            compare = weight < 100
            judge = StepJudge(
                policy,
                baseline=compare,
                windows=planned_windows(PERIOD, interval),
                evidence=evidence if compare else None,
                **({"release": True, "pool": pool} if _release_steps() else {}),
            )
            pending: list[Minute] = []
            while judge.result is None:
                t += 1
                m = trace.minute(t, step)
                exposure += m.new_requests
                pending.append(m)
                fired = alarms.minute(m)
                if fired is not None and not hasattr(judge, "alarm"):  # a judge from before alarm()
                    return Decision(True, t, exposure, "alarm")
                window = window_of(pending, compare, trace.slow_threshold)
                judge.observe(window)
                if window.new is not None and (not compare or window.baseline is not None):
                    pending = []
                # as the runner: the judge weighs a firing alarm against the minute it saw (a minute
                # the judge fails too is the alarm's)
                if fired and judge.result is not None and judge.result.outcome is Outcome.FAIL:
                    return Decision(True, t, exposure, "alarm")
                open_or_passed = judge.result is None or judge.result.outcome is Outcome.PASS
                one = window_of([m], compare, trace.slow_threshold)
                weighed = judge.alarm(fired, one) if fired and open_or_passed else None
                if weighed is not None and weighed.outcome is Outcome.FAIL:
                    return Decision(True, t, exposure, "alarm")
            if compare:
                evidence = judge.evidence
            pool = getattr(judge, "pool", None)
            outcome = judge.result.outcome
            if outcome is Outcome.FAIL:
                return Decision(True, t, exposure, classify(judge.result.reason))
            if outcome is not Outcome.PASS:
                # a step that ends neither passed nor failed waits for a person
                return Decision.pause(t, exposure, classify(judge.result.reason))
        return Decision(False, t, exposure, "promoted")


def history_evidence(trace: SeedTrace, policy: Analysis) -> Evidence | None:
    """The sequential test's start with the baseline's history as its prior, as the driver sets it
    (:func:`rfs_deploy.drive.history.with_history`); None without a history, or with a judge from
    before it had one (``--before``)."""
    if not trace.history or not hasattr(Evidence, "with_prior"):
        return None
    from rfs_deploy.drive.history import from_periods, with_history

    minutes = [SlotMetrics(n, e, p, CPU) for n, e, p in trace.history]
    end = 0.0
    history = from_periods(minutes, slot="live", start=end - 60 * len(minutes), end=end, period=PERIOD)
    return with_history(None, history, policy.max_error_rate)


def alarm_min_requests(policy: Analysis) -> int:
    """The request count below which the program's alarms do not count a minute as breaching
    (0 with a judge from before the alarms had one: ``--before``)."""
    found = getattr(rules, "alarm_min_requests", None)
    return 0 if found is None else int(found(policy))


def _release_steps() -> bool:
    """Whether this judge knows release steps (``--before`` may run one from before them)."""
    return "release" in inspect.signature(StepJudge).parameters


def window_of(minutes: list[Minute], compare: bool, threshold: float | None = None) -> Window:
    """The window the runner builds from the minutes since its last window with data.

    As :func:`rfs_deploy.drive.analysis._aggregate`: counts are summed, p99 is the worst minute's,
    a slot without any request has no datapoint (None). The slow-request counts are summed too,
    against ``threshold`` (the CloudWatch provider's ``TC(t:)``; None: not counted).
    """
    new = _slot([(m.new_requests, m.new_errors, m.new_p99, m.new_slow) for m in minutes], threshold)
    base = None
    if compare:
        base = _slot([(m.base_requests, m.base_errors, m.base_p99, m.base_slow) for m in minutes], threshold)
    return Window(new=new, baseline=base)


def _slot(
    minutes: list[tuple[int, int, float | None, int | None]], threshold: float | None
) -> SlotMetrics | None:
    seen = [(n, e, p, s) for n, e, p, s in minutes if n > 0]
    if not seen:
        return None
    p99s = [p for _, _, p, _ in seen if p is not None]
    counted = threshold is not None and all(s is not None for *_, s in seen)
    return SlotMetrics(
        requests=sum(n for n, _, _, _ in seen),
        errors=sum(e for _, e, _, _ in seen),
        p99=max(p99s) if p99s else None,
        cpu=CPU,
        slow=sum(s or 0 for *_, s in seen) if counted else None,
        slow_threshold=threshold if counted else None,
    )


def classify(reason: str) -> str:
    """A short name for what failed a step, from the judge's reason."""
    if "not enough data" in reason:
        return "not enough data"
    if "slower than" in reason and "vs the baseline's" in reason:
        return "slow requests"
    if "sequential" in reason:
        return "sequential test"
    if "the baseline's" in reason:
        return "p99 vs baseline"
    if "error rate" in reason:
        return "error rate"
    if "p99" in reason:
        return "p99"
    return reason.split(":")[0]


# --------------------------------------------------------------------------- thresholds and alarms


@dataclass
class Threshold:
    """Flagger / Argo Rollouts: error rate > 5 % or p99 > 500 ms per interval; roll back at ``limit``."""

    limit: int
    max_error_rate: float = 0.05
    max_p99: float = 0.5
    name: str = ""
    #: Intervals without data in a row before the release gives up (Flagger's progress deadline).
    max_no_data: int = 10

    def __post_init__(self) -> None:
        self.name = self.name or f"threshold, limit {self.limit}"

    def decide(self, trace: SeedTrace) -> Decision:
        t = exposure = failed = 0
        for step in range(len(trace.weights)):
            empty = 0
            while True:
                t += 1
                m = trace.minute(t, step)
                exposure += m.new_requests
                if m.new_requests == 0:
                    empty += 1
                    if empty > self.max_no_data:
                        return Decision(True, t, exposure, "no data")
                    continue
                rate = m.new_errors / m.new_requests
                slow = m.new_p99 is not None and m.new_p99 > self.max_p99
                if rate <= self.max_error_rate and not slow:
                    break
                failed += 1
                if failed >= self.limit:
                    return Decision(True, t, exposure, "error rate" if rate > self.max_error_rate else "p99")
        return Decision(False, t, exposure, "promoted")


@dataclass
class Alarm:
    """CodeDeploy with the program's alarms: ``periods`` consecutive breaching minutes roll back."""

    periods: int = 1
    analysis: Analysis = field(default_factory=Analysis)
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"alarm, {self.periods} period(s)"

    def decide(self, trace: SeedTrace) -> Decision:
        alarms = AlarmState(self.periods, self.analysis.max_error_rate, self.analysis.max_p99_latency)
        exposure = 0
        for step in range(len(trace.weights)):
            t = step + 1
            m = trace.minute(t, step)
            exposure += m.new_requests
            fired = alarms.minute(m)
            if fired is not None:
                return Decision(True, t, exposure, "error rate" if fired == "5xx" else "p99")
        return Decision(False, len(trace.weights), exposure, "promoted")


@dataclass
class WaldPerMinute:
    """Wald's SPRT of ``p0`` against ``p1`` on the new slot's counts, checked at each minute's end."""

    p0: float
    p1: float
    alpha: float = 0.01
    beta: float = 0.01
    name: str = "SPRT told the rates, per minute"

    def decide(self, trace: SeedTrace) -> Decision:
        upper = math.log((1 - self.beta) / self.alpha)
        lower = math.log(self.beta / (1 - self.alpha))
        per_error = math.log(self.p1 / self.p0)
        per_success = math.log((1 - self.p1) / (1 - self.p0))
        llr = 0.0
        t = exposure = 0
        for step in range(len(trace.weights)):
            t = step + 1
            m = trace.minute(t, step)
            exposure += m.new_requests
            llr += m.new_errors * per_error + (m.new_requests - m.new_errors) * per_success
            if llr >= upper:
                return Decision(True, t, exposure, "SPRT")
            if llr <= lower:
                return Decision(False, t, exposure, "accepted")
        return Decision(False, t, exposure, "promoted")
