"""The journal tag: the machine-readable head of every stack update message rfs-deploy runs
(SPEC D4, D5), and who owns a deployment.

The tag is the contract between the driver, which writes it (:mod:`rfs_deploy.drive.stack`) and
reads history through it (:mod:`rfs_deploy.drive.journal`), and the Pulumi program, which learns
from it which service an update belongs to (:mod:`rfs_deploy.releases`); so it lives beside both,
at the top of the package, and imports neither.

Every stack update the driver runs starts its message with a compact tag, so a new process on a
fresh CI runner can read ``pulumi stack history`` and find where a killed deployment stood::

 rfs-deploy[dep=ab12cd34 svc=api ver=v2 strat=canary step=3/9 kind=set-weight phase=step cp=41] set weight 30%

=========  =====================================================================================
``dep``    deployment id (:func:`new_deployment_id`: 8 hex characters)
``svc``    the service being released
``ver``    the version being released (the deployment's target)
``strat``  the strategy of this deployment (``blue-green``, ``canary``, ``rolling``, ``ab-test``)
``step``   ``k/n``: the plan step, **1-based** in the text, of ``n`` steps. :attr:`JournalTag.step`
           is the 0-based index into the plan (``step=3/9`` is ``JournalTag(step=2, total=9)``).
           For ``rollback`` and ``abort`` updates ``k/n`` counts the attempts instead.
``kind``   the plan step's ``kind`` (:mod:`rfs_deploy.drive.steps`), or the phase name, or
           ``restored`` (:data:`RESTORED`: the update confirming a finished restore), or
           ``paused`` (:data:`PAUSED`, phase ``step``: an update that changes nothing and records
           that the deployment holds at gate ``k`` until ``rfs-deploy promote``; its lease is
           released, ``until`` is its own time; see docs/gates.md), or ``pause-request``
           (:data:`PAUSE_REQUEST`, phase ``step``: an update that changes nothing, run by
           ``rfs-deploy pause`` from another process, asking the running driver to hold at its
           next safe point; ``k`` is the step the deployment was at when asked. It is a message
           to the owner, not a step of the deployment: the journal leaves it out of the
           deployment's own updates)
``phase``  ``step``: the update applying plan step ``k``; ``resume``: a new process re-applying the
           release state of the last completed step after a crash; ``rollback`` / ``abort``: an
           update restoring the pre-deployment checkpoint (automatic / asked for); ``done``: the
           update that finishes the deployment
``cp``     optional: the pre-deployment checkpoint (history version) that rollback restores
``cfg``    optional: :func:`settings_digest` of the service settings the plan was made from
           (config plus per-deployment overrides), so ``resume`` never continues a deployment
           with settings other than those it started with
``own``    optional: the driver run of the deployment, ``host/pid+run`` (its *owner*): the process,
           and a token of its own for each run in it, so two drivers of one process (the Python
           API, two stack objects) are two owners
``until``  optional: the owner's lease, seconds since the epoch: past it, a deployment whose owner
           runs on another host counts as abandoned (the runner's own time budget ends earlier)
``by``     optional, on ``paused`` and ``pause-request`` updates: who paused the deployment
           (who asked for the pause), ``user@host``
``wait``   optional, ``1`` on ``rollback`` / ``abort`` updates: the update restored the checkpoint's
           release state, but the restore is finished only by a later update of the same phase
           with ``kind=restored``, run once the world shows it (the refresh back ended, the
           listener weights verified)
=========  =====================================================================================

``abort`` and ``resume`` refuse while the owner is alive (:func:`owner_alive`): on its own host
that is its process id, elsewhere its lease.

Every tag carries every field, so any single history entry says what the deployment was; a
missing first entry (history read with a limit) loses nothing but the inferred checkpoint.
Values are percent-encoded when they hold a space, ``=``, ``[``, ``]`` or ``%``. The human text
after the tag is one line. Tags hold names, versions, numbers and a digest only, never config
values (the digest is taken with secret values masked), so no secret can reach stack history
through them.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote

from rfs_deploy.config.model import ServiceConfig

PREFIX = "rfs-deploy"
#: The ``strat`` of the updates of a rollback asked for on the command line (``rollback --to``).
ROLLBACK_STRATEGY = "rollback"
Phase = Literal["step", "resume", "rollback", "abort", "done"]
PHASES: tuple[Phase, ...] = ("step", "resume", "rollback", "abort", "done")
#: The ``kind`` of the update that records a deployment held at a gate (phase ``step``).
PAUSED = "paused"
#: The ``kind`` of the update ``rfs-deploy pause`` runs to ask a running driver to hold (phase
#: ``step``; it changes nothing and belongs to no step of the deployment).
PAUSE_REQUEST = "pause-request"
#: The ``kind`` of the update that confirms a restore: the world shows the checkpoint again.
RESTORED = "restored"
#: Phases whose successful update ends a deployment.
FINISHING_PHASES = frozenset({"done", "rollback", "abort"})
#: Phases whose successful update completes plan step ``step``.
PROGRESS_PHASES = frozenset({"step", "resume", "done"})

_TAG = re.compile(r"\A\s*rfs-deploy\[(?P<fields>[^\]\n]*)\](?: (?P<text>.*))?\Z", re.DOTALL)
_STEP = re.compile(r"\A(\d{1,6})/(\d{1,6})\Z")
_DIGEST = re.compile(r"\A[0-9a-f]{12}\Z")
_SAFE = "!$&'()*+,;:@/~"  # kept as is; everything else outside [A-Za-z0-9_.-] is percent-encoded


@dataclass(frozen=True)
class JournalTag:
    """The machine-readable part of one update message (see the module docstring)."""

    deployment_id: str
    service: str
    #: 0-based index into the plan (for rollback/abort: the 0-based attempt).
    step: int
    #: Number of plan steps (for rollback/abort: the number of attempts allowed).
    total: int
    kind: str
    phase: Phase
    #: The version being released.
    version: str
    strategy: str
    #: History version of the pre-deployment checkpoint, when the runner knows it.
    checkpoint: int | None = None
    #: :func:`settings_digest` of the settings the plan was made from (None in older tags).
    settings: str | None = None
    #: ``host/pid`` of the process running the deployment (None in older tags).
    owner: str | None = None
    #: The owner's lease: seconds since the epoch (None in older tags).
    lease: int | None = None
    #: A restoring update whose restore still waits for the world (see ``wait`` above).
    wait: bool = False
    #: ``user@host`` that paused the deployment (``paused`` updates only).
    by: str | None = None

    @property
    def paused(self) -> bool:
        """The update records a pause at a gate (kind :data:`PAUSED`)."""
        return self.kind == PAUSED and self.phase == "step"

    @property
    def pause_request(self) -> bool:
        """The update asks the deployment's running driver to hold (kind :data:`PAUSE_REQUEST`)."""
        return self.kind == PAUSE_REQUEST and self.phase == "step"

    def __post_init__(self) -> None:
        for name in ("deployment_id", "service", "kind", "version", "strategy"):
            if not getattr(self, name):
                raise ValueError(f"journal tag: {name} must not be empty")
        if self.phase not in PHASES:
            raise ValueError(f"journal tag: unknown phase {self.phase!r}; use one of {PHASES}")
        if not 0 <= self.step < self.total:
            raise ValueError(f"journal tag: step {self.step} outside a plan of {self.total} steps")
        if self.checkpoint is not None and self.checkpoint < 0:
            raise ValueError("journal tag: checkpoint must be a history version (>= 0)")
        if self.settings is not None and _DIGEST.match(self.settings) is None:
            raise ValueError("journal tag: settings must be a settings digest (12 hex characters)")
        if self.wait and self.phase not in ("rollback", "abort"):
            raise ValueError("journal tag: only rollback and abort updates wait for a confirmation")
        if self.by is not None and self.kind not in (PAUSED, PAUSE_REQUEST):
            raise ValueError("journal tag: only paused and pause-request updates say who paused")


#: Service settings that do not make the plan: who is told (webhooks) and what runs beside it
#: (command hooks). Editing them while a deployment is paused (a webhook URL that went stale)
#: does not lock ``promote`` and ``resume`` out, and the digest of a deployment opened before these
#: keys existed stays the same.
NOT_IN_PLAN = frozenset({"hooks", "webhooks"})


def settings_digest(service: ServiceConfig) -> str:
    """12 hex characters naming the settings a plan is made from (secret values masked; the
    keys of :data:`NOT_IN_PLAN` left out, and ``instanceCount`` of a service with ``autoscaling``:
    its release is made for the live fleet's size, which the journal keeps, docs/sizing.md)."""
    left_out = set(NOT_IN_PLAN) | ({"instance_count"} if service.autoscaling is not None else set())
    text = service.model_dump_json(by_alias=True, exclude=left_out)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def new_deployment_id() -> str:
    """A fresh deployment id: 8 random hex characters."""
    return secrets.token_hex(4)


def encode(tag: JournalTag, text: str) -> str:
    """The update message for ``tag``: the tag, a space and ``text`` squeezed onto one line."""
    fields = [
        ("dep", tag.deployment_id),
        ("svc", tag.service),
        ("ver", tag.version),
        ("strat", tag.strategy),
        ("step", f"{tag.step + 1}/{tag.total}"),
        ("kind", tag.kind),
        ("phase", tag.phase),
    ]
    if tag.checkpoint is not None:
        fields.append(("cp", str(tag.checkpoint)))
    if tag.settings is not None:
        fields.append(("cfg", tag.settings))
    if tag.owner is not None:
        fields.append(("own", tag.owner))
    if tag.lease is not None:
        fields.append(("until", str(tag.lease)))
    if tag.wait:
        fields.append(("wait", "1"))
    if tag.by is not None:
        fields.append(("by", tag.by))
    head = " ".join(f"{key}={quote(value, safe=_SAFE)}" for key, value in fields)
    line = " ".join(text.split())
    return f"{PREFIX}[{head}] {line}" if line else f"{PREFIX}[{head}]"


def parse(message: str) -> tuple[JournalTag, str] | None:
    """The tag and the human text of ``message``; None for any message rfs-deploy did not write."""
    match = _TAG.match(message)
    if match is None:
        return None
    fields: dict[str, str] = {}
    for part in match["fields"].split(" "):
        key, sep, value = part.partition("=")
        if not sep or not key or key in fields:
            return None
        fields[key] = unquote(value)
    try:
        tag = _tag_from_fields(fields)
    except (KeyError, ValueError):
        return None
    return tag, match["text"] or ""


def decode(message: str) -> JournalTag | None:
    """The tag of ``message``; None when the message is foreign or malformed."""
    parsed = parse(message)
    return None if parsed is None else parsed[0]


def _tag_from_fields(fields: Mapping[str, str]) -> JournalTag:
    step = _STEP.match(fields["step"])
    if step is None:
        raise ValueError("bad step")
    number, total = int(step[1]), int(step[2])
    cp = fields.get("cp")
    if cp is not None and not cp.isdigit():
        raise ValueError("bad checkpoint")
    phase = fields["phase"]
    if phase not in PHASES:
        raise ValueError("unknown phase")
    lease = fields.get("until")
    if lease is not None and not lease.isdigit():
        raise ValueError("bad lease")
    wait = fields.get("wait")
    if wait not in (None, "1"):
        raise ValueError("bad wait")
    return JournalTag(
        deployment_id=fields["dep"],
        service=fields["svc"],
        step=number - 1,
        total=total,
        kind=fields["kind"],
        phase=phase,  # checked against PHASES above
        version=fields["ver"],
        strategy=fields["strat"],
        checkpoint=None if cp is None else int(cp),
        settings=fields.get("cfg"),
        owner=fields.get("own"),
        lease=None if lease is None else int(lease),
        wait=wait == "1",
        by=fields.get("by") or None,
    )


def this_owner(run: str | None = None) -> str:
    """The ``own`` value of this process, ``host/pid``; with ``run``, of one driver run in it
    (``host/pid+run``, what updates are tagged with)."""
    process = f"{socket.gethostname()}/{os.getpid()}"
    return f"{process}+{run}" if run else process


def new_run() -> str:
    """A token naming one driver run within its process."""
    return secrets.token_hex(3)


def owner_process(owner: str) -> tuple[str, str]:
    """``(host, pid)`` of an ``own`` value (with or without its run token)."""
    host, _, rest = owner.rpartition("/")
    return host, rest.partition("+")[0]


def pauser() -> str:
    """The ``by`` value of a pause this process records: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container without a passwd entry)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def owner_alive(tag: JournalTag, now: float | None = None) -> bool:
    """Whether the process that wrote ``tag`` may still be running its deployment: on this host,
    its process exists (this process counts as alive); elsewhere, its lease has not run out.
    Tags without an owner (older versions) count as not alive, and so does a ``paused`` update:
    the process that paused released the deployment (a ``pause-request`` names no owner)."""
    if tag.owner is None or tag.paused:
        return False
    host, pid = owner_process(tag.owner)
    if host == socket.gethostname() and pid.isdigit():
        return process_exists(int(pid))
    return tag.lease is not None and (time.time() if now is None else now) < tag.lease


def live_other_owner(tag: JournalTag) -> tuple[str, str] | None:
    """``(host, pid)`` of the process that wrote ``tag`` when it is another process than this one
    and may still be running its deployment (:func:`owner_alive`); None otherwise."""
    if tag.owner is None or owner_process(tag.owner) == owner_process(this_owner()):
        return None
    if not owner_alive(tag):
        return None
    return owner_process(tag.owner)


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this host (one we may not signal counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
