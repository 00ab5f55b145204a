"""Deployments as ``status`` and ``history`` show them: from the stack-history journal alone, with
the local records' detail (verdicts, numbers, errors) added when this machine has them.

Stack history is the authority on where a deployment stands: a local record that still says
IN_PROGRESS while history shows the deployment finished (its driver was killed and another
machine resumed or aborted it) shows what history says. A finished local record keeps its own
status (FAILED with auto rollback off, a rollback that failed: history can only say "open").
Deployments history does not know (refused by a pre-deployment hook, nothing changed) come from
the records alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rfs_deploy.config.secrets import redact
from rfs_deploy.drive import journal
from rfs_deploy.drive.journal import JournalDeployment
from rfs_deploy.drive.protocols import HistoryEntry
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus, redact_free_text
from rfs_deploy.drive.summary import summarize
from rfs_deploy.errors import InvalidInput

_FROM_JOURNAL = {
    "completed": DeploymentStatus.COMPLETED,
    "rolled-back": DeploymentStatus.ROLLED_BACK,
    "aborted": DeploymentStatus.ROLLED_BACK,
    "in-progress": DeploymentStatus.IN_PROGRESS,
    # the record's status while held at a gate; the view shows PAUSED (see _paused)
    "paused": DeploymentStatus.IN_PROGRESS,
}
#: The status a view shows for a deployment held at a gate (no record status: the seed's are fixed).
PAUSED = "PAUSED"


def journal_deployments(history: Sequence[HistoryEntry]) -> list[tuple[JournalDeployment, str | None]]:
    """Every rfs-deploy deployment in ``history``, newest first (each read as the journal reads
    the latest one, from the history up to its newest update), with the version of its service
    that was live just before its first update (None when history does not show it)."""
    ordered = sorted(history, key=lambda e: e.version, reverse=True)
    found: list[tuple[JournalDeployment, str | None]] = []
    seen: set[tuple[str, str]] = set()
    for position, entry in enumerate(ordered):
        tag = journal.decode(entry.message)
        if tag is None or tag.pause_request or (tag.deployment_id, tag.service) in seen:
            continue  # (a pause request is no update of its deployment: journal.py)
        seen.add((tag.deployment_id, tag.service))
        deployment = journal.latest_deployment(ordered[position:], tag.service)
        if deployment is not None:
            found.append((deployment, _live_before(ordered, deployment)))
    return found


def _live_before(ordered: Sequence[HistoryEntry], found: JournalDeployment) -> str | None:
    first = found.entries[-1].version
    for entry in ordered:
        if entry.version < first and entry.result == "succeeded" and entry.release is not None:
            state = entry.release.get(found.service)
            return None if state is None else state.slot(state.live).version
    return None


def _journal_status(found: JournalDeployment) -> DeploymentStatus:
    if found.status in _FROM_JOURNAL:
        return _FROM_JOURNAL[found.status]
    # rolling-back / aborting: the restore's newest update is running, or it failed, or it
    # succeeded and its process waits (or, killed, waited) for the world to show it
    running = found.newest.result == "in-progress" or (
        found.awaiting_world and journal.owner_alive(found.last_tag)
    )
    return DeploymentStatus.IN_PROGRESS if running else DeploymentStatus.FAILED


def _requested(found: JournalDeployment) -> bool:
    """An abort, or a ``rollback`` command's restore (its tags name the strategy ``rollback``)."""
    return found.status == "aborted" or (found.status == "rolled-back" and found.strategy == "rollback")


def _exit_code(status: DeploymentStatus, requested: bool) -> int | None:
    """The exit code of the command that ran (or runs) the deployment; None while it is open."""
    if status is DeploymentStatus.COMPLETED:
        return 0
    if status is DeploymentStatus.ROLLED_BACK:
        return 0 if requested else 3
    if status is DeploymentStatus.FAILED:
        return 4
    return None


def _plan_step(found: JournalDeployment) -> tuple[int | None, int]:
    """(1-based plan step the deployment reached, plan length); (None, 0) for a bare rollback."""
    tags = [t for t in (journal.decode(e.message) for e in found.entries) if t is not None]
    if not any(t.phase in journal.PROGRESS_PHASES for t in tags):
        return None, 0
    total = found.total_steps
    if found.status == "completed":
        return total, total
    if found.paused_at is not None:
        return found.paused_at + 1, total
    if found.open and found.status == "in-progress":
        return min(found.next_step + 1, total), total
    return (0 if found.last_completed_step is None else found.last_completed_step + 1), total


def _journal_fields(found: JournalDeployment, stack: str, live_before: str | None) -> dict[str, Any]:
    step, total = _plan_step(found)
    status = _journal_status(found)
    requested = _requested(found)
    parsed = journal.parse(found.newest.message)
    tag, text = parsed if parsed is not None else (found.last_tag, "")
    restored = None
    if found.status in ("rolled-back", "aborted") and found.checkpoint is not None:
        restored = found.checkpoint.version
    partial = min(99, round(100 * (step or 0) / total)) if total else 0
    progress = 100 if found.finished else partial
    return {
        "deployment_id": found.deployment_id,
        "stack": stack,
        "service": found.service,
        "from_version": live_before,
        "version": found.version,
        "strategy": found.strategy,
        "status": status.value,
        "journal": found.status,
        "phase": tag.phase,
        "step": step,
        "total_steps": total,
        "current_step": None if step is None else max(step - 1, 0),
        "progress": progress,
        "started_at": found.started_at,
        "ended_at": found.newest.end_time if found.finished else None,
        "checkpoint": None if found.checkpoint is None else found.checkpoint.version,
        "rolled_back_to": restored,
        "requested": requested,
        "deployment_exit_code": _exit_code(status, requested),
        "last_update": {
            "version": found.newest.version,
            "result": found.newest.result,
            "phase": tag.phase,
            "text": redact(text),
            "start_time": found.newest.start_time,
            "end_time": found.newest.end_time,
        },
        "stack_versions": sorted(e.version for e in found.entries),
        "paused": _paused(found),
        "pause_requested": _pause_requested(found),
    }


def _pause_requested(found: JournalDeployment) -> dict[str, Any] | None:
    """A pause asked of the running driver (``rfs-deploy pause``) that it has not answered yet."""
    pending = found.pending_pause
    if pending is None:
        return None
    entry, tag = pending
    return {"by": tag.by, "at": entry.start_time, "version": entry.version}


def _paused(found: JournalDeployment) -> dict[str, Any] | None:
    """Who paused the deployment at which gate, since when (the pause update's start)."""
    if found.paused_at is None:
        return None
    parsed = journal.parse(found.newest.message)
    return {
        "step": found.paused_at + 1,
        "by": found.paused_by,
        "since": found.newest.start_time,
        "text": redact(parsed[1]) if parsed is not None else "",
    }


def _record_fields(record: DeploymentRecord) -> dict[str, Any]:
    return redact_free_text(_record_view(record))


def _record_view(record: DeploymentRecord) -> dict[str, Any]:
    from rfs_deploy.cli import exit_code

    status = record.status
    done = [s for s in record.steps if s.outcome != "running"]
    s = summarize(record)
    return {
        "deployment_id": record.deployment_id,
        "stack": record.stack,
        "service": record.service,
        "from_version": record.previous_version,
        "version": record.version,
        "strategy": record.strategy,
        "status": status.value,
        "journal": None,
        "phase": None,
        "step": record.current_step + 1 if record.current_step >= 0 else (len(done) or None),
        "total_steps": record.total_steps,
        "current_step": record.current_step,
        "progress": record.progress,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "checkpoint": None,
        "rolled_back_to": record.rolled_back_to,
        "requested": record.on_request,
        "deployment_exit_code": exit_code(record) if status.finished else None,
        "last_update": None,
        "stack_versions": sorted(x.stack_version for x in record.steps if x.stack_version is not None),
        "summary": summary_payload(s),
        "steps": [_step(x) for x in record.steps],
        "verdicts": [
            {"at": v.at, "step": v.step, "outcome": v.outcome, "reason": v.reason, "numbers": v.numbers}
            for v in record.verdicts
        ],
        "errors": list(record.errors),
        "decision": record.decision,
        "baseline_history": record.baseline_history,
        "recovery": record.recovery,
        "rollback_attempts": record.rollback_attempts,
        "paused": _record_paused(record),
    }


def _record_paused(record: DeploymentRecord) -> dict[str, Any] | None:
    if record.paused is None or record.status is not DeploymentStatus.IN_PROGRESS:
        return None
    pause = record.paused
    shown = {"step": pause["step"] + 1, "by": pause["by"], "since": pause["at"], "text": pause["reason"]}
    if pause.get("deadline") is not None:
        shown["deadline"] = pause["deadline"]
    return shown


def _step(step: Any) -> dict[str, Any]:
    return {
        "index": step.index,
        "kind": step.kind,
        "description": step.description,
        "started_at": step.started_at,
        "ended_at": step.ended_at,
        "outcome": step.outcome,
        "reason": step.reason,
        "stack_version": step.stack_version,
    }


#: What a view holds when no local record adds detail.
_NO_DETAIL: dict[str, Any] = {
    "summary": None,
    "steps": [],
    "verdicts": [],
    "errors": [],
    "decision": None,
    "baseline_history": None,
    "recovery": None,
    "rollback_attempts": None,
}


def view(
    found: JournalDeployment | None,
    record: DeploymentRecord | None,
    stack: str,
    live_before: str | None = None,
) -> dict[str, Any]:
    """One deployment for ``status`` / ``history`` (see the module docstring for who wins)."""
    assert found is not None or record is not None
    if found is None:
        assert record is not None
        return _shown_paused({**_record_fields(record), "source": "record"})
    fields = _journal_fields(found, stack, live_before)
    if record is None:
        return _shown_paused({**fields, **_NO_DETAIL, "source": "journal"})
    detail = _record_fields(record)
    merged = {**detail, **fields, "source": "journal+record"}
    for key in _NO_DETAIL:
        merged[key] = detail[key]
    merged["from_version"] = fields["from_version"] or detail["from_version"]
    merged["requested"] = fields["requested"] or record.on_request
    deadline = (record.paused or {}).get("deadline")
    if merged.get("paused") is not None and deadline is not None:
        # deploy.pauseCountsTowardsDeadline: only the record knows the budget's end
        merged["paused"] = {**merged["paused"], "deadline": deadline}
    if record.status.finished:
        # history cannot tell a FAILED restore or an auto-rollback that was off from "open"
        merged["status"] = record.status.value
        merged["current_step"] = record.current_step
        merged["step"] = record.current_step + 1 if record.current_step >= 0 else fields["step"]
        merged["rolled_back_to"] = record.rolled_back_to
        merged["ended_at"] = record.ended_at or fields["ended_at"]
    status = DeploymentStatus(merged["status"])
    merged["deployment_exit_code"] = _exit_code(status, merged["requested"])
    if status.finished:
        merged["progress"] = 100
    return _shown_paused(merged)


def _shown_paused(v: dict[str, Any]) -> dict[str, Any]:
    """A deployment held at a gate shows status PAUSED, and the exit code its command ended with."""
    if v.get("paused") is not None and v["status"] == DeploymentStatus.IN_PROGRESS.value:
        from rfs_deploy.cli import EXIT_PAUSED

        v["status"], v["deployment_exit_code"] = PAUSED, EXIT_PAUSED
    return v


def deployments(
    history: Sequence[HistoryEntry],
    records: Sequence[DeploymentRecord],
    stack: str,
    service: str | None = None,
) -> list[dict[str, Any]]:
    """Every deployment history or the records know, newest first (of ``service`` if given)."""
    by_id = {r.deployment_id: r for r in records}
    views: list[dict[str, Any]] = []
    for found, live_before in journal_deployments(history):
        views.append(view(found, by_id.pop(found.deployment_id, None), stack, live_before))
    views += [view(None, r, stack) for r in by_id.values()]
    if service is not None:
        views = [v for v in views if v["service"] == service]
    return sorted(views, key=lambda v: v["started_at"] or 0.0, reverse=True)


def find(views: Sequence[dict[str, Any]], deployment_id: str) -> dict[str, Any]:
    """The view whose id is ``deployment_id`` or starts with it (a unique prefix)."""
    exact = [v for v in views if v["deployment_id"] == deployment_id]
    if exact:
        return exact[0]
    matches = [v for v in views if deployment_id and v["deployment_id"].startswith(deployment_id)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(v["deployment_id"] for v in matches)
        raise InvalidInput(f"deployment id {deployment_id!r} is ambiguous ({ids}); give more characters")
    raise InvalidInput(f"unknown deployment {deployment_id!r}")


def status_line(v: dict[str, Any]) -> str:
    """``status`` as text: one line."""
    versions = f"{v['from_version']} → {v['version']}" if v["from_version"] else f"→ {v['version']}"
    step = f"step {v['step']}/{v['total_steps']}" if v["step"] is not None and v["total_steps"] else ""
    doing = ""
    if v["steps"]:
        doing = v["steps"][-1]["description"]
    elif v["last_update"] is not None:
        doing = v["last_update"]["text"]
    if step and doing:
        step = f"{step}: {doing}"
    parts = [f"{v['service']} {versions} ({v['strategy']})"]
    if step:
        parts.append(step)
    if v["journal"]:
        parts.append(f"journal: {v['journal']}")
    from rfs_deploy.cli import iso

    times = f"started {iso(v['started_at'])}"
    if v["ended_at"] is not None:
        times += f", ended {iso(v['ended_at'])}"
    parts.append(times)
    if v.get("paused"):
        pause = v["paused"]
        parts.append(f"paused at step {pause['step']} by {pause['by']} since {iso(pause['since'])}")
        parts += _budget_line(pause)
    if v.get("pause_requested"):
        asked = v["pause_requested"]
        parts.append(f"pause requested by {asked['by']} at {iso(asked['at'])}: holds at its next safe point")
    if v.get("baseline_history"):
        from rfs_deploy.drive.history import history_text

        parts.append(f"baseline before the release: {history_text(v['baseline_history'])}")
    if v["recovery"]:
        parts.append(f"to finish: {v['recovery']}")
    return f"{v['deployment_id']}: {v['status']} {v['progress']}% — " + "; ".join(parts)


def _budget_line(pause: dict[str, Any]) -> list[str]:
    """With deploy.pauseCountsTowardsDeadline, when the paused deployment's time budget ends."""
    import time

    from rfs_deploy.cli import iso

    deadline = pause.get("deadline")
    if deadline is None:
        return []
    if time.time() > deadline:
        return [f"its time budget ran out at {iso(deadline)} (the pause counts): promote rolls it back"]
    return [f"its time budget runs out at {iso(deadline)} (the pause counts); promote after it rolls back"]


def history_line(v: dict[str, Any]) -> str:
    """One deployment in ``history`` as text."""
    from rfs_deploy.cli import iso

    versions = f"{v['from_version'] or '?'} → {v['version']}"
    step = f" step {v['step']}/{v['total_steps']}" if v["step"] is not None and v["total_steps"] else ""
    return (
        f"  {v['deployment_id']} {v['status']:<11} {v['service']} {versions} ({v['strategy']}){step} "
        f"{iso(v['started_at'])}"
    )


BRIEF_KEYS = (
    "deployment_id",
    "service",
    "from_version",
    "version",
    "strategy",
    "status",
    "journal",
    "phase",
    "step",
    "total_steps",
    "progress",
    "started_at",
    "ended_at",
    "rolled_back_to",
    "requested",
    "deployment_exit_code",
    "paused",
    "source",
)


def brief(v: dict[str, Any]) -> dict[str, Any]:
    return {k: v[k] for k in BRIEF_KEYS}


def summary_payload(s: Any) -> dict[str, Any]:
    """The ``summary`` of a deployment in JSON output (a :class:`~rfs_deploy.drive.summary.Summary`)."""
    return {
        "requests": s.requests,
        "errors": s.errors,
        "error_rate": s.error_rate,
        "p99_latency": s.p99_latency,
        "healthy_instances": s.healthy_instances,
        "instance_count": s.instance_count,
    }
