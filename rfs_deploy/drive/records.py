"""Deployment records (SPEC D7): what happened, step by step, with the numbers behind each verdict.

A record is kept in memory while the driver runs and saved as JSON by :class:`RecordStore` after
every step, so ``status`` works from another process. Stack history stays the authority on where a
deployment stood (see :mod:`rfs_deploy.drive.journal`); records add the detail history cannot hold.
Records hold numbers and messages only, never config values, so no secret can reach them.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rfs_deploy import statefiles
from rfs_deploy.config.secrets import redact_value
from rfs_deploy.errors import DamagedState, InvalidInput

#: The file name of a record rfs-deploy writes: the deployment id and ``.json``.
RECORD_NAME = re.compile(r"\A[A-Za-z0-9_-]{1,64}\.json\Z")


class DeploymentStatus(enum.StrEnum):
    """The seed's statuses: a deployment record's status, and the seed API's
    ``rfs_deploy.deployment.DeploymentStatus`` (this class). How stack history shows a deployment
    is another type, :data:`rfs_deploy.drive.journal.JournalStatus`."""

    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    VALIDATING = "VALIDATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"

    @property
    def finished(self) -> bool:
        return self in (DeploymentStatus.COMPLETED, DeploymentStatus.FAILED, DeploymentStatus.ROLLED_BACK)


@dataclass
class StepRecord:
    index: int
    kind: str
    description: str
    started_at: float
    ended_at: float | None = None
    outcome: str = "running"  # running | passed | failed | skipped
    reason: str = ""
    #: Stack history version of the update this step made (changes only).
    stack_version: int | None = None


@dataclass
class VerdictRecord:
    at: float
    step: int
    outcome: str
    reason: str
    numbers: dict[str, Any]


@dataclass
class Sample:
    """One analysis tick: the traffic split and per-slot numbers at virtual or real time ``at``."""

    at: float
    weights: dict[str, int]
    #: slot (blue/green) -> {"requests", "errors", "error_rate", "p99", "cpu"} (values may be None)
    slots: dict[str, dict[str, float | None]]
    #: The slot running the version being released.
    new_slot: str = ""
    step: int = -1


@dataclass
class DeploymentRecord:
    deployment_id: str
    stack: str
    service: str
    version: str
    previous_version: str | None
    strategy: str
    status: DeploymentStatus = DeploymentStatus.PENDING
    started_at: float = 0.0
    ended_at: float | None = None
    total_steps: int = 0
    current_step: int = -1
    steps: list[StepRecord] = field(default_factory=list)
    verdicts: list[VerdictRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Stack history version restored by a rollback or abort.
    rolled_back_to: int | None = None
    #: The restore was asked for (``abort``, ``rollback``), not decided by the judge: a
    #: ROLLED_BACK record with it set is a success of the command that asked (exit 0, not 3).
    on_request: bool = False
    rollback_attempts: int = 0
    #: A/B outcome: "A" or "B" with its reason.
    decision: str | None = None
    #: The one command that finishes the job when the deployment ended FAILED.
    recovery: str | None = None
    #: Live slot's instances and healthy targets when the deployment ended.
    instance_count: int = 0
    healthy_instances: int = 0
    #: The per-deployment settings on top of the stack config: the resolved ``strategy`` (dumped)
    #: and any ``analysis`` / ``deploy`` / ``validation`` overrides, so ``resume`` can rebuild
    #: the same plan. None for rollbacks and records from before it was kept.
    settings: dict[str, Any] | None = None
    #: Held at a gate until promoted (the status stays IN_PROGRESS: the seed's statuses are
    #: fixed): ``step`` (0-based gate index), ``reason``, ``by`` (user@host) and ``at``. None
    #: while it runs, and again once promoted or ended.
    paused: dict[str, Any] | None = None
    #: ``retry``: the id of the deployment this one runs again.
    retry_of: str | None = None
    #: The baseline's hour before the first traffic shift, as the judge used it
    #: (:class:`rfs_deploy.drive.history.BaselineHistory`); None: not read or no data.
    baseline_history: dict[str, Any] | None = None

    @property
    def progress(self) -> int:
        """Percent of plan steps finished; 100 once the deployment has ended."""
        if self.status.finished:
            return 100
        if self.total_steps == 0:
            return 0
        done = sum(1 for s in self.steps if s.outcome in ("passed", "skipped"))
        return min(99, round(100 * done / self.total_steps))

    @property
    def duration(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        """The record as JSON, its free text redacted (:func:`redact_free_text`):
        what is saved, printed with ``--json`` and reported. Texts quoting an exception (an AWS or
        Pulumi error with a URL's password, a hook's secret) never leave the process plain."""
        data = asdict(self)
        data["status"] = self.status.value
        data["progress"] = self.progress
        return redact_free_text(data)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentRecord:
        data = dict(data)
        data.pop("progress", None)
        data["status"] = DeploymentStatus(data["status"])
        data["steps"] = [StepRecord(**s) for s in data.get("steps", [])]
        data["verdicts"] = [VerdictRecord(**v) for v in data.get("verdicts", [])]
        data["samples"] = [Sample(**s) for s in data.get("samples", [])]
        return cls(**data)


#: The record fields that carry free text (reasons, errors quoting exceptions); identifiers
#: (ids, stack, service, versions) are validated names and are never rewritten.
FREE_TEXT = ("errors", "recovery", "decision")
STEP_TEXT = ("description", "reason")


def redact_free_text(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a record as JSON) with its free-text fields redacted."""
    for name in FREE_TEXT:
        if data.get(name) is not None:
            data[name] = redact_value(data[name])
    for step in data.get("steps") or []:
        for name in STEP_TEXT:
            if isinstance(step.get(name), str):
                step[name] = redact_value(step[name])
    for verdict in data.get("verdicts") or []:
        if isinstance(verdict.get("reason"), str):
            verdict["reason"] = redact_value(verdict["reason"])
    return data


class RecordStore:
    """Deployment records as JSON files in a directory (default ``.rfs-deploy/deployments``).

    A record holds detail only (stack history keeps where a deployment stands), but it is never
    silently dropped or replaced: a damaged one (cut short by a full disk, edited by hand) or a
    link in its place is DamagedState, one line naming the file and how to recover."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def save(self, record: DeploymentRecord) -> None:
        target = self._path(record.deployment_id)
        data = json.dumps(record.to_json(), indent=1, default=str).encode()
        statefiles.make_dirs(self.directory)
        # write-then-rename so a killed driver or a full disk never leaves half a record
        statefiles.write_atomic(target, data)

    def load(self, deployment_id: str) -> DeploymentRecord:
        path = self._path(deployment_id) if _plain_id(deployment_id) else None
        if path is None or not statefiles.exists(path):
            matches = (
                sorted(p for p in self._files() if p.name.startswith(deployment_id))
                if deployment_id and _plain_id(deployment_id)
                else []
            )
            if len(matches) != 1:
                raise InvalidInput(f"unknown deployment {deployment_id!r}")
            path = matches[0]
        return self._read(path)

    def all(self, stack: str | None = None) -> list[DeploymentRecord]:
        """Every record, newest first (optionally of one stack). Files that are not named like a
        record are not ours and are passed over; a damaged record is DamagedState."""
        records = [self._read(path) for path in self._files()]
        chosen = [r for r in records if stack is None or r.stack == stack]
        return sorted(chosen, key=lambda r: r.started_at, reverse=True)

    def _files(self) -> list[Path]:
        try:
            names = sorted(p for p in self.directory.iterdir() if RECORD_NAME.match(p.name))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise DamagedState(
                f"the deployment records in {self.directory} cannot be read: {exc.strerror}"
            ) from None
        return names

    def _path(self, deployment_id: str) -> Path:
        if not _plain_id(deployment_id):
            raise InvalidInput(f"{deployment_id!r} is not a deployment id")
        return self.directory / f"{deployment_id}.json"

    def _read(self, path: Path) -> DeploymentRecord:
        recover = f"move it away (rm {statefiles.shown(path)}) and run the command again"
        data = statefiles.read_bytes(path, recover)
        if data is None:
            raise InvalidInput(f"unknown deployment {path.stem!r}")
        try:
            return DeploymentRecord.from_json(json.loads(data.decode("utf-8")))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            what = "is empty" if not data.strip() else f"is not a complete record ({type(exc).__name__})"
            raise DamagedState(
                f"the deployment record {path} {what}; records hold detail only (stack history keeps "
                f"where the deployment stands), so rfs-deploy changed nothing: {recover}"
            ) from None


def _plain_id(deployment_id: str) -> bool:
    return RECORD_NAME.match(f"{deployment_id}.json") is not None
