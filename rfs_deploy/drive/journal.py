"""Stack history is the deployment journal (SPEC D4, D5): what it says about deployments.

Every stack update the driver runs starts its message with a journal tag (its format, and who owns
a deployment: :mod:`rfs_deploy.journal_tags`, whose names this module also exports, so
``journal.decode`` reads as before). This module reads a stack history through those tags: the
deployments in it, whether each is open or finished, and the checkpoints a rollback restores.

A deployment has *finished* when its newest update succeeded and was a ``done`` update, a
``rollback`` or ``abort`` update without ``wait`` (the ``restored`` confirmation, or a tag older
than confirmations), or a ``step`` update of the plan's last step (nothing follows it). A restore
killed between its update and the world showing it (a rolling fleet half-way through its refresh
back) is therefore still open: ``resume`` or ``abort`` finishes it. Anything else is *open*:
``resume`` continues it from :attr:`JournalDeployment.next_step`, ``abort`` restores
:attr:`JournalDeployment.checkpoint`. An open deployment whose newest update is a succeeded
``paused`` one (phase ``step``, kind ``paused``) is *paused* at a gate
(:attr:`JournalDeployment.paused_at`): ``promote`` continues it from the step after the gate
(see docs/gates.md).

A ``pause-request`` update (``rfs-deploy pause`` from another process) is a message to the
deployment's running driver, not a step of the deployment: it is kept apart
(:attr:`JournalDeployment.pause_requests`) and never counts as the deployment's newest update,
a completed step, a resting state or a foreign update, so open, finished, ``next_step`` and the
checkpoints read as if it were not there. A request is *pending*
(:attr:`JournalDeployment.pending_pause`) while the deployment runs and the request is newer than
the deployment's newest pause: the pause the driver records answers it, and so does the end of the
deployment (a resumed run answers only requests newer than its own start, see
:mod:`rfs_deploy.drive.runner`).

Backends differ in what a killed update leaves behind: the Pulumi Cloud backend records it as
``in-progress`` (until ``pulumi cancel``), the self-managed (DIY) backend writes history only when
an update ends, so a killed update leaves no entry at all, only the stack lock. Either way the
newest *succeeded* entry is where the stack last stood for sure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rfs_deploy.config.model import ReleaseState, SlotName
from rfs_deploy.drive.protocols import HistoryEntry
from rfs_deploy.errors import UnknownService, UnknownVersion
from rfs_deploy.journal_tags import (
    FINISHING_PHASES,
    PAUSE_REQUEST,
    PAUSED,
    PHASES,
    PREFIX,
    PROGRESS_PHASES,
    RESTORED,
    ROLLBACK_STRATEGY,
    JournalTag,
    Phase,
    decode,
    encode,
    live_other_owner,
    new_deployment_id,
    owner_alive,
    parse,
    process_exists,
    settings_digest,
    this_owner,
)

#: The tag codec is part of the journal's interface (``journal.decode``, ``journal.JournalTag``).
__all__ = [
    "FINISHING_PHASES",
    "PAUSED",
    "PAUSE_REQUEST",
    "PHASES",
    "PREFIX",
    "PROGRESS_PHASES",
    "RESTORED",
    "ROLLBACK_STRATEGY",
    "Checkpoint",
    "JournalDeployment",
    "JournalStatus",
    "JournalTag",
    "Phase",
    "checkpoint_at",
    "decode",
    "deployment_fleet",
    "deployment_image",
    "encode",
    "find_open_deployment",
    "last_good_checkpoint",
    "latest_deployment",
    "latest_release",
    "live_other_owner",
    "new_deployment_id",
    "open_deployments",
    "owner_alive",
    "parse",
    "process_exists",
    "settings_digest",
    "this_owner",
]


@dataclass(frozen=True)
class Checkpoint:
    """A stack history version and the release state (of every service) the stack ran with at it."""

    version: int
    release: Mapping[str, ReleaseState]

    def release_for(self, service: str) -> ReleaseState:
        """The release state of one service at this checkpoint."""
        try:
            return self.release[service]
        except KeyError:
            raise UnknownService(
                f"stack version {self.version} has no release state for service {service!r}"
            ) from None


#: A deployment's status as stack history shows it; a deployment record's status is the seed's
#: :class:`rfs_deploy.drive.records.DeploymentStatus`, which :mod:`rfs_deploy.cli.views` maps it to.
JournalStatus = Literal[
    "completed", "rolled-back", "aborted", "rolling-back", "aborting", "in-progress", "paused"
]


@dataclass(frozen=True)
class JournalDeployment:
    """One rfs-deploy deployment as stack history shows it (open or finished)."""

    deployment_id: str
    service: str
    #: The version being released, the strategy and the plan length (from the newest tag).
    version: str
    strategy: str
    total_steps: int
    status: JournalStatus
    #: 0-based index of the newest plan step whose update succeeded; None before the first.
    last_completed_step: int | None
    #: The pre-deployment checkpoint: the restore target of abort and rollback. None when history
    #: (as read) holds no good entry before the deployment, or lacks the tagged ``cp`` version.
    checkpoint: Checkpoint | None
    #: The newest succeeded update of this deployment: where the stack last stood for sure.
    progress: Checkpoint | None
    #: The deployment's updates, newest first.
    entries: tuple[HistoryEntry, ...]
    #: Versions of updates newer than this deployment's newest that are not part of it
    #: (a hand-run ``pulumi up``, another service's deployment); resuming may undo them.
    foreign_after: tuple[int, ...] = ()
    #: The settings digest its plan steps were tagged with (None: tags older than digests).
    settings: str | None = None
    #: The ``pause-request`` updates asking its driver to hold, newest first (not in ``entries``).
    pause_requests: tuple[HistoryEntry, ...] = ()

    @property
    def newest(self) -> HistoryEntry:
        return self.entries[0]

    @property
    def last_tag(self) -> JournalTag:
        tag = decode(self.newest.message)
        assert tag is not None  # entries are grouped by their tags
        return tag

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "rolled-back", "aborted")

    @property
    def open(self) -> bool:
        return not self.finished

    @property
    def awaiting_world(self) -> bool:
        """A restore whose update succeeded but was not confirmed: killed while the refresh back
        or the weight check ran. ``resume`` (or ``abort``) waits for the world and confirms it."""
        return self.newest.result == "succeeded" and self.last_tag.wait

    @property
    def interrupted(self) -> bool:
        """The newest update of the deployment did not succeed (failed, killed or still running)."""
        return self.newest.result != "succeeded"

    @property
    def paused_at(self) -> int | None:
        """The 0-based plan index of the gate the deployment holds at; None unless paused."""
        return self.last_tag.step if self.status == "paused" else None

    @property
    def paused_by(self) -> str | None:
        """Who paused it (``user@host``, else the owner ``host/pid``); None unless paused."""
        if self.status != "paused":
            return None
        return self.last_tag.by or self.last_tag.owner

    @property
    def pending_pause(self) -> tuple[HistoryEntry, JournalTag] | None:
        """The newest succeeded pause request newer than the deployment's newest pause, while it
        runs (open, not paused, not restoring): the driver has not answered it yet. A step update
        after it is no answer: a change under way when the request came is finished first."""
        if self.finished or self.status != "in-progress":
            return None
        answered = max((e.version for e in self.entries if _is_pause(e)), default=0)
        for entry in self.pause_requests:
            tag = decode(entry.message)
            if entry.result == "succeeded" and tag is not None and entry.version > answered:
                return entry, tag
        return None

    @property
    def next_step(self) -> int:
        """The plan index ``resume`` continues from."""
        return 0 if self.last_completed_step is None else self.last_completed_step + 1

    @property
    def started_at(self) -> float:
        """Start time of the deployment's oldest update in history (seconds since the epoch)."""
        return self.entries[-1].start_time


def latest_deployment(
    history: Sequence[HistoryEntry], service: str | None = None
) -> JournalDeployment | None:
    """The most recent rfs-deploy deployment in ``history`` (of ``service`` if given), open or not.

    Pass the whole history (``StackBackend.history()`` without a limit): the checkpoint is found
    before the deployment's first update.
    """
    return next(_deployments(history, service), None)


def latest_release(history: Sequence[HistoryEntry], service: str) -> JournalDeployment | None:
    """The most recent deployment of ``service`` that released a version (not a rollback asked
    for by ``rfs-deploy rollback``), open or not."""
    return next((d for d in _deployments(history, service) if d.strategy != ROLLBACK_STRATEGY), None)


def deployment_image(found: JournalDeployment) -> str | None:
    """The AMI a deployment brought for its version (``deploy --ami``, or found by tag), from
    the release states of its updates; None when they show none."""
    for entry in found.entries:
        state = (entry.release or {}).get(found.service)
        for slot in (state.blue, state.green) if state is not None else ():
            if slot.version == found.version and slot.image is not None:
                return slot.image
    return None


def deployment_fleet(found: JournalDeployment, live: SlotName) -> int | None:
    """The capacity slot ``live`` (the live slot when the deployment started) had in the release
    state of the deployment's first update: the size its plan was made for (an autoscaled
    fleet's size then, see :func:`rfs_deploy.drive.plans.common.adopt_fleet`); None when no
    update shows one."""
    for entry in reversed(found.entries):
        state = (entry.release or {}).get(found.service)
        if state is not None:
            return state.slot(live).capacity
    return None


def open_deployments(history: Sequence[HistoryEntry]) -> list[JournalDeployment]:
    """Every service's most recent deployment that has not finished, newest first."""
    services = dict.fromkeys(t.service for t in (decode(e.message) for e in history) if t is not None)
    found = [latest_deployment(history, name) for name in services]
    opened = [d for d in found if d is not None and d.open]
    return sorted(opened, key=lambda d: d.newest.version, reverse=True)


def _deployments(history: Sequence[HistoryEntry], service: str | None) -> Iterator[JournalDeployment]:
    """The deployments in ``history`` (of ``service``), newest first, without those that lost a
    race (:func:`_superseded`)."""
    ordered = sorted(history, key=lambda e: e.version, reverse=True)
    every = [(entry, decode(entry.message)) for entry in ordered]
    # pause requests are messages to a driver, not updates of its deployment (module docstring)
    tagged = [(e, t if t is None or not t.pause_request else None) for e, t in every]
    keys = dict.fromkeys(
        (t.deployment_id, t.service) for _, t in tagged if t is not None and service in (None, t.service)
    )
    for key in keys:
        mine = [e for e, t in tagged if t is not None and (t.deployment_id, t.service) == key]
        if not _superseded(tagged, mine):
            asked = tuple(
                e
                for e, t in every
                if t is not None and t.pause_request and (t.deployment_id, t.service) == key
            )
            yield _deployment(ordered, mine, asked)


def _superseded(
    tagged: Sequence[tuple[HistoryEntry, JournalTag | None]], mine: Sequence[HistoryEntry]
) -> bool:
    """A deployment lost a race: none of its updates succeeded, and another deployment of its
    service had an update succeed after the deployment's checkpoint and before its first update.
    The program's compare-and-swap (:mod:`rfs_deploy.releases`) then refused every update it
    tried, so it changed nothing: it is no open deployment, whether or not its process lives."""
    if any(e.result == "succeeded" for e in mine):
        return False
    tags = [t for t in (decode(e.message) for e in mine) if t is not None]
    cp = next((t.checkpoint for t in tags if t.checkpoint is not None), None)
    if cp is None or not tags:
        return False
    first = mine[-1].version
    me = (tags[0].deployment_id, tags[0].service)
    return any(
        t is not None
        and t.service == me[1]
        and t.deployment_id != me[0]
        and e.result == "succeeded"
        and cp < e.version < first
        for e, t in tagged
    )


def _deployment(
    ordered: Sequence[HistoryEntry], mine: list[HistoryEntry], asked: tuple[HistoryEntry, ...] = ()
) -> JournalDeployment:
    mine = _without_refused_takeovers(mine)
    last_tag = decode(mine[0].message)
    assert last_tag is not None
    return JournalDeployment(
        deployment_id=last_tag.deployment_id,
        service=last_tag.service,
        version=last_tag.version,
        strategy=last_tag.strategy,
        total_steps=_plan_length(mine),
        status=_status(mine[0], last_tag),
        last_completed_step=_last_completed(mine),
        checkpoint=_pre_deployment_checkpoint(ordered, mine),
        progress=_first_checkpoint(e for e in mine if e.result == "succeeded"),
        entries=tuple(mine),
        foreign_after=tuple(
            e.version for e in ordered if e.version > mine[0].version and not _is_pause_request(e)
        ),
        settings=_plan_settings(mine),
        pause_requests=asked,
    )


def _without_refused_takeovers(mine: list[HistoryEntry]) -> list[HistoryEntry]:
    """The deployment's updates without the failed ones another process ran after it finished:
    an ``abort`` or ``resume`` that decided while it was open and whose update the program's
    compare-and-swap refused once its owner had finished it. Such an update changed nothing and
    does not reopen the deployment. The finishing owner's own later updates (a rollback after a
    last step whose check failed) always count, and so does every update without an owner."""
    for position, entry in enumerate(mine):
        if entry.result != "succeeded":
            continue
        tag = decode(entry.message)
        if not position or tag is None or tag.owner is None:
            return mine
        if _status(entry, tag) not in ("completed", "rolled-back", "aborted"):
            return mine
        later = [decode(e.message) for e in mine[:position]]
        if all(t is not None and t.owner is not None and t.owner != tag.owner for t in later):
            return mine[position:]
        return mine
    return mine


def find_open_deployment(
    history: Sequence[HistoryEntry], service: str | None = None
) -> JournalDeployment | None:
    """The open deployment of ``service`` (its most recent, when it has not finished); without a
    service, the most recently active of every service's open deployment. None: nothing open."""
    if service is not None:
        found = latest_deployment(history, service)
        return found if found is not None and found.open else None
    opened = open_deployments(history)
    return opened[0] if opened else None


def last_good_checkpoint(
    history: Sequence[HistoryEntry], before_version: int | None = None
) -> Checkpoint | None:
    """The newest resting state: a succeeded update with release state that is not mid-deployment.

    Resting means the update was not tagged by rfs-deploy (a hand-run or initial ``pulumi up``), or
    ended a deployment (``done``, ``rollback``, ``abort``, or the plan's last step). With
    ``before_version`` only older updates count.
    """
    ordered = sorted(history, key=lambda e: e.version, reverse=True)
    return _first_checkpoint(
        e
        for e in ordered
        if (before_version is None or e.version < before_version) and e.result == "succeeded" and _resting(e)
    )


def checkpoint_at(history: Sequence[HistoryEntry], version: int) -> Checkpoint:
    """The checkpoint at history ``version`` (for a rollback asked for by version).

    Raises UnknownVersion when the version is not in history, did not succeed, ran without a
    release state, or is the middle of a deployment (not a resting state).
    """
    entry = next((e for e in history if e.version == version), None)
    if entry is None:
        newest = max((e.version for e in history), default=None)
        known = f"versions run up to {newest}" if newest is not None else "the stack has no history"
        raise UnknownVersion(f"stack history has no version {version} ({known})")
    if entry.result != "succeeded":
        raise UnknownVersion(f"stack version {version} did not succeed ({entry.result}); pick one that did")
    if entry.release is None:
        raise UnknownVersion(f"stack version {version} ran without an rfs-deploy release state")
    if not _resting(entry):
        # a mid-release state (a 20 % canary, a split A/B) restored as if it were a release
        # would leave a traffic split that no driver watches
        tag = decode(entry.message)
        assert tag is not None  # only tagged updates are mid-deployment
        resting = last_good_checkpoint(history, before_version=version)
        nearest = f"; the resting state before it is version {resting.version}" if resting else ""
        raise UnknownVersion(
            f"stack version {version} is step {tag.step + 1}/{tag.total} ({tag.kind}) of deployment "
            f"{tag.deployment_id}, not a resting state{nearest}"
        )
    return Checkpoint(entry.version, entry.release)


# --------------------------------------------------------------------------- helpers


def _status(newest: HistoryEntry, tag: JournalTag) -> JournalStatus:
    # a restoring update that still waits for its confirmation has not finished the restore
    ok = newest.result == "succeeded" and not tag.wait
    if tag.phase == "rollback":
        return "rolled-back" if ok else "rolling-back"
    if tag.phase == "abort":
        return "aborted" if ok else "aborting"
    if tag.paused:
        # the gate's step is done (resume and promote go on after it), the deployment is not
        return "paused" if ok else "in-progress"
    if ok and (tag.phase == "done" or tag.step == tag.total - 1):
        return "completed"
    return "in-progress"


def _last_completed(entries: Sequence[HistoryEntry]) -> int | None:
    for entry in entries:
        tag = decode(entry.message)
        if tag is not None and entry.result == "succeeded" and tag.phase in PROGRESS_PHASES:
            return tag.step
    return None


def _plan_length(entries: Sequence[HistoryEntry]) -> int:
    """The plan length from the newest tag that counts plan steps (rollback tags count attempts)."""
    tags = [t for t in (decode(e.message) for e in entries) if t is not None]
    return next((t.total for t in tags if t.phase in PROGRESS_PHASES), tags[0].total)


def _pre_deployment_checkpoint(
    ordered: Sequence[HistoryEntry], mine: Sequence[HistoryEntry]
) -> Checkpoint | None:
    cp = next(
        (t.checkpoint for t in (decode(e.message) for e in mine) if t and t.checkpoint is not None), None
    )
    if cp is not None:
        entry = next((e for e in ordered if e.version == cp), None)
        if entry is None or entry.release is None:
            return None
        return Checkpoint(entry.version, entry.release)
    return last_good_checkpoint(ordered, before_version=mine[-1].version)


def _plan_settings(entries: Sequence[HistoryEntry]) -> str | None:
    """The settings digest of the deployment's plan steps (its newest step or resume update)."""
    for entry in entries:
        tag = decode(entry.message)
        if tag is not None and tag.phase in PROGRESS_PHASES and tag.settings is not None:
            return tag.settings
    return None


def _is_pause(entry: HistoryEntry) -> bool:
    tag = decode(entry.message)
    return tag is not None and tag.paused


def _is_pause_request(entry: HistoryEntry) -> bool:
    tag = decode(entry.message)
    return tag is not None and tag.pause_request


def _resting(entry: HistoryEntry) -> bool:
    tag = decode(entry.message)
    if tag is None:
        return True
    if tag.paused or tag.pause_request:
        # the state of a deployment under way (a request changes nothing, so it is one too)
        return False
    return tag.phase in FINISHING_PHASES or (tag.phase in PROGRESS_PHASES and tag.step == tag.total - 1)


def _first_checkpoint(entries: Iterable[HistoryEntry]) -> Checkpoint | None:
    for entry in entries:
        if entry.release is not None:
            return Checkpoint(entry.version, entry.release)
    return None
