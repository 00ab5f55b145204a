"""Auto Scaling instance refresh, which moto does not implement, done the way AWS does it.

A refresh replaces the group's instances in batches so that at least ``MinHealthyPercentage``
of the desired capacity stays in service: it terminates a batch (moto launches replacements on
the group's current launch template), waits until the replacements pass their health checks
and their ``InstanceWarmup`` has passed, pauses at each checkpoint for ``CheckpointDelay``, and
reports ``PercentageComplete``. When an alarm of its ``AlarmSpecification`` fires (or the
replacements never become healthy) it fails, or with ``AutoRollback`` rolls back: the group's
launch template goes back to what it was and the replaced instances are replaced again.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from rfs_deploy.sim.behaviour import Conduct
from rfs_deploy.sim.fleet import Fleet, Instance

#: A batch whose replacements are not healthy this long after their warm-up fails the refresh.
STUCK_AFTER = 900.0
ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress")


class RefreshError(Exception):
    """An Auto Scaling API error: ``code`` is what AWS would return."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass
class Preferences:
    """The refresh preferences the sandbox honours, from API (PascalCase) or Pulumi (camelCase) keys."""

    min_healthy: int = 90
    warmup: float | None = None
    checkpoints: list[int] = field(default_factory=list)
    checkpoint_delay: float = 3600.0
    auto_rollback: bool = False
    alarms: list[str] = field(default_factory=list)
    skip_matching: bool = False

    def to_api(self) -> dict[str, Any]:
        """The ``Preferences`` of a DescribeInstanceRefreshes entry (what a resumed refresh copies)."""
        api: dict[str, Any] = {
            "MinHealthyPercentage": self.min_healthy,
            "CheckpointPercentages": list(self.checkpoints),
            "CheckpointDelay": int(self.checkpoint_delay),
            "SkipMatching": self.skip_matching,
            "AutoRollback": self.auto_rollback,
        }
        if self.warmup is not None:
            api["InstanceWarmup"] = int(self.warmup)
        if self.alarms:
            api["AlarmSpecification"] = {"Alarms": list(self.alarms)}
        return api

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Preferences:
        data = {str(k)[:1].lower() + str(k)[1:]: v for k, v in (raw or {}).items()}
        alarms = data.get("alarmSpecification") or {}
        alarm_names = alarms.get("Alarms") or alarms.get("alarms") or []
        warmup = data.get("instanceWarmup")
        return cls(
            min_healthy=int(float(data.get("minHealthyPercentage", 90))),
            warmup=None if warmup in (None, "") else float(warmup),
            checkpoints=sorted(int(float(p)) for p in data.get("checkpointPercentages") or []),
            checkpoint_delay=float(data.get("checkpointDelay") or 3600),
            auto_rollback=bool(data.get("autoRollback", False)),
            alarms=[str(a) for a in alarm_names],
            skip_matching=bool(data.get("skipMatching", False)),
        )


@dataclass
class Refresh:
    """One refresh's progress (JSON-serialisable through ``asdict``)."""

    refresh_id: str
    asg: str
    status: str
    started_at: float
    preferences: Preferences
    #: The group's LaunchTemplate spec before the refresh (for rollback); None when unknown.
    previous_spec: dict[str, Any] | None
    total: int
    to_replace: list[str]
    replaced: int = 0
    in_flight: list[str] = field(default_factory=list)
    batch_started: float = 0.0
    wait_until: float | None = None
    checkpoints_done: int = 0
    reason: str = ""
    ended_at: float | None = None

    @property
    def percentage(self) -> int:
        return 100 if self.total == 0 else min(100, math.floor(100 * self.replaced / self.total))

    def describe(self) -> dict[str, Any]:
        """The DescribeInstanceRefreshes entry AWS would return."""
        entry: dict[str, Any] = {
            "InstanceRefreshId": self.refresh_id,
            "AutoScalingGroupName": self.asg,
            "Status": self.status,
            "StatusReason": self.reason,
            "StartTime": datetime.fromtimestamp(self.started_at, tz=UTC),
            "PercentageComplete": self.percentage,
            "InstancesToUpdate": len(self.to_replace) + len(self.in_flight),
            "Preferences": self.preferences.to_api(),
        }
        if self.ended_at is not None:
            entry["EndTime"] = datetime.fromtimestamp(self.ended_at, tz=UTC)
        return entry


class RefreshEngine:
    """Every group's refreshes, advanced by :meth:`tick` as virtual time passes."""

    def __init__(
        self,
        fleet: Fleet,
        autoscaling: Any,
        conduct_of: Callable[[Instance, float], Conduct],
        firing: Callable[[Sequence[str]], list[str]],
    ) -> None:
        self._fleet = fleet
        self._asg = autoscaling
        self._conduct = conduct_of
        self._firing = firing
        self.refreshes: dict[str, list[Refresh]] = {}

    # ----------------------------------------------------------------- API

    def active(self, asg: str) -> Refresh | None:
        latest = self.refreshes.get(asg, [])
        return latest[-1] if latest and latest[-1].status in ACTIVE else None

    def describe(self, asg: str) -> list[dict[str, Any]]:
        """DescribeInstanceRefreshes entries, newest first."""
        return [r.describe() for r in reversed(self.refreshes.get(asg, []))]

    def start(
        self,
        asg: str,
        preferences: Mapping[str, Any] | None,
        now: float,
        previous_spec: dict[str, Any] | None = None,
    ) -> str:
        """StartInstanceRefresh (``previous_spec``: the template spec to roll back to)."""
        if self.active(asg) is not None:
            raise RefreshError(
                "InstanceRefreshInProgress", f"an instance refresh is already in progress for {asg}"
            )
        group = self._fleet.describe_group(asg)
        if group is None:
            raise RefreshError("ValidationError", f"AutoScalingGroup name not found - {asg}")
        prefs = Preferences.parse(preferences)
        if prefs.warmup is None:
            prefs.warmup = float(
                group.get("DefaultInstanceWarmup") or group.get("HealthCheckGracePeriod") or 0
            )
        target = self._fleet.group_template(group)
        members = self._fleet.of_group(asg)
        outdated = [i.instance_id for i in members if not (prefs.skip_matching and i.template == target)]
        refresh = Refresh(
            refresh_id=str(uuid.uuid4()),
            asg=asg,
            status="InProgress",
            started_at=now,
            preferences=prefs,
            previous_spec=previous_spec or _spec_of(members),
            total=len(outdated),
            to_replace=outdated,
        )
        self.refreshes.setdefault(asg, []).append(refresh)
        self._advance(refresh, now)
        return refresh.refresh_id

    def cancel(self, asg: str, now: float) -> str:
        """CancelInstanceRefresh: replaced instances stay; the batch in flight finishes. AWS
        cancels a rollback in progress as well (it stops where it is, like a refresh)."""
        refresh = self.active(asg)
        if refresh is None:
            raise RefreshError("ActiveInstanceRefreshNotFound", f"no active instance refresh for {asg}")
        refresh.status = "Cancelling"
        refresh.reason = "cancelled by request"
        self._advance(refresh, now)
        return refresh.refresh_id

    def supersede(self, asg: str, now: float, reason: str) -> None:
        """What the provider does before starting a new refresh: cancel the active one and wait
        for the cancellation to end. The wait is collapsed into this call (the update blocks)."""
        refresh = self.active(asg)
        if refresh is None:
            return
        refresh.in_flight = []
        self._finish(refresh, now, "Cancelled", reason)

    def rollback(self, asg: str, now: float, reason: str = "rollback requested") -> str:
        """RollbackInstanceRefresh: back to the launch template the refresh started from."""
        refresh = self.active(asg)
        if refresh is None or refresh.status in ("Cancelling", "RollbackInProgress"):
            raise RefreshError("ActiveInstanceRefreshNotFound", f"no active instance refresh for {asg}")
        if refresh.previous_spec is None:
            raise RefreshError(
                "IrreversibleInstanceRefresh", f"the refresh of {asg} has no previous template"
            )
        self._begin_rollback(refresh, now, reason)
        return refresh.refresh_id

    def tick(self, now: float) -> None:
        """Advance every active refresh to ``now``."""
        for history in self.refreshes.values():
            if history and history[-1].status in ACTIVE:
                self._advance(history[-1], now)

    # ----------------------------------------------------------------- progression

    def _advance(self, refresh: Refresh, now: float) -> None:
        # Loop: several batches may finish within one tick when warm-up is short.
        for _ in range(1000):
            if not self._step(refresh, now):
                return

    def _step(self, refresh: Refresh, now: float) -> bool:
        """One state transition; False when nothing more can happen at ``now``."""
        prefs = refresh.preferences
        if refresh.status == "InProgress" and prefs.alarms and (firing := self._firing(prefs.alarms)):
            reason = f"alarm {firing[0]} is in ALARM"
            if prefs.auto_rollback and refresh.previous_spec is not None:
                self._begin_rollback(refresh, now, reason)
                return True
            return self._finish(refresh, now, "Failed", reason)
        if refresh.in_flight:
            return self._settle_batch(refresh, now)
        if refresh.status == "Cancelling":
            return self._finish(refresh, now, "Cancelled", refresh.reason)
        if refresh.wait_until is not None:
            if now < refresh.wait_until:
                return False
            refresh.wait_until = None
        if refresh.status == "InProgress" and self._at_checkpoint(refresh, now):
            return True
        if not refresh.to_replace:
            done = "RollbackSuccessful" if refresh.status == "RollbackInProgress" else "Successful"
            return self._finish(refresh, now, done, refresh.reason)
        self._launch_batch(refresh, now)
        return True

    def _at_checkpoint(self, refresh: Refresh, now: float) -> bool:
        points = refresh.preferences.checkpoints
        if refresh.checkpoints_done < len(points) and refresh.percentage >= points[refresh.checkpoints_done]:
            refresh.checkpoints_done += 1
            if refresh.percentage < 100:
                refresh.wait_until = now + refresh.preferences.checkpoint_delay
                refresh.reason = f"waiting at checkpoint {points[refresh.checkpoints_done - 1]}%"
            return True
        return False

    def _batch_size(self, refresh: Refresh) -> int:
        desired = len(self._fleet.of_group(refresh.asg))
        keep = math.ceil(desired * refresh.preferences.min_healthy / 100)
        return max(1, desired - keep)

    def _launch_batch(self, refresh: Refresh, now: float) -> None:
        batch = refresh.to_replace[: self._batch_size(refresh)]
        refresh.to_replace = refresh.to_replace[len(batch) :]
        before = set(self._fleet.instances)
        for iid in batch:
            if iid in self._fleet.instances:
                self._asg.terminate_instance_in_auto_scaling_group(
                    InstanceId=iid, ShouldDecrementDesiredCapacity=False
                )
        self._fleet.sync(now)
        refresh.in_flight = [iid for iid in self._fleet.instances if iid not in before]
        refresh.batch_started = now
        if refresh.status == "InProgress":
            refresh.reason = ""  # past the checkpoint; a rollback keeps saying why it happens

    def _settle_batch(self, refresh: Refresh, now: float) -> bool:
        warmup = refresh.preferences.warmup or 0.0
        members = [self._fleet.instances[i] for i in refresh.in_flight if i in self._fleet.instances]
        ready = all(now >= i.launched_at + warmup and self._conduct(i, now).in_service for i in members)
        if ready:
            refresh.replaced += len(refresh.in_flight)
            refresh.in_flight = []
            return True
        if now - refresh.batch_started > warmup + STUCK_AFTER and refresh.status == "InProgress":
            reason = "replacement instances did not pass their health checks"
            refresh.in_flight = []
            if refresh.preferences.auto_rollback and refresh.previous_spec is not None:
                self._begin_rollback(refresh, now, reason)
                return True
            return self._finish(refresh, now, "Failed", reason)
        return False

    def _begin_rollback(self, refresh: Refresh, now: float, reason: str) -> None:
        assert refresh.previous_spec is not None
        self._asg.update_auto_scaling_group(
            AutoScalingGroupName=refresh.asg, LaunchTemplate=refresh.previous_spec
        )
        group = self._fleet.describe_group(refresh.asg)
        target = self._fleet.group_template(group) if group else None
        members = self._fleet.of_group(refresh.asg)
        refresh.status = "RollbackInProgress"
        refresh.reason = reason
        refresh.to_replace = [i.instance_id for i in members if i.template != target]
        refresh.in_flight = []
        refresh.total = len(refresh.to_replace)
        refresh.replaced = 0
        refresh.wait_until = None

    def _finish(self, refresh: Refresh, now: float, status: str, reason: str) -> bool:
        refresh.status = status
        refresh.reason = reason
        refresh.ended_at = now
        if status in ("Successful", "RollbackSuccessful", "Cancelled"):
            refresh.wait_until = None
        return False

    # ----------------------------------------------------------------- persistence

    def rename(self, renamed: Mapping[str, str]) -> None:
        """Follow instance ids that changed when moto was rebuilt."""
        for history in self.refreshes.values():
            for refresh in history:
                refresh.to_replace = [renamed.get(i, i) for i in refresh.to_replace]
                refresh.in_flight = [renamed.get(i, i) for i in refresh.in_flight]

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {asg: [asdict(r) for r in history] for asg, history in self.refreshes.items()}

    def load_json(self, data: Mapping[str, list[dict[str, Any]]]) -> None:
        self.refreshes = {
            asg: [Refresh(**{**r, "preferences": Preferences(**r["preferences"])}) for r in history]
            for asg, history in data.items()
        }


def _spec_of(members: Sequence[Instance]) -> dict[str, Any] | None:
    """The launch template most of the group's instances run (rollback target of an API refresh)."""
    counts: dict[tuple[str, int], int] = {}
    for member in members:
        if member.template is not None:
            counts[member.template] = counts.get(member.template, 0) + 1
    if not counts:
        return None
    template_id, number = max(counts, key=lambda ref: counts[ref])
    return {"LaunchTemplateId": template_id, "Version": str(number)}
