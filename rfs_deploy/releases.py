"""Where the release state comes from: the stack's last update, never a checkout of the stack file.

The release state (``rfs-deploy:release``) changes many times a day from CI runners that check
the repository out fresh and never commit back, so the copy in ``stacks/Pulumi.<stack>.yaml`` is
usually stale. The source of truth is the backend:

* The program exports the release state it applied as the stack output ``release``. On every run
  it reads the previous value of that output from its own stack (the engine's built-in
  ``pulumi:pulumi:readStackOutputs``, inside the update and so under Pulumi's stack lock).
* Which services' release state the *config* may set is said by the update's **owner**
  (:data:`OWNER_ENV`): the driver names the one service its update releases; ``*`` (the first
  update of a stack, ``rfs-deploy up --release-from-config``) takes the config for all; nobody
  (a plain ``pulumi up``) takes none. Every other service keeps its live release state, and the
  program warns when the checkout's copy differs. So a ``pulumi up`` from a stale checkout (to
  change an instance type, say) changes no weight and no version, and two deployments of
  different services of one stack never write over each other's state, whatever their
  checkouts hold.
* The driver also says which live release state it expects for its service
  (:data:`EXPECT_ENV`, a digest). When another process changed that service in between, the
  program stops before registering any resource (:data:`CONFLICT_MARK`), so the update changes
  nothing: compare-and-swap under the stack lock.

History entries carry the config each update ran with; :func:`effective_history` rewrites their
release states into the ones the program really applied, by the same rule, so checkpoints taken
from history are the states the stack really had.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from rfs_deploy.config.model import ReleaseState
from rfs_deploy.errors import RfsDeployError
from rfs_deploy.outputs import whole_numbers

#: The stack output holding the release state the program applied (``{service: state}``).
RELEASE_OUTPUT = "release"
#: Environment of an update: which services' release state the config sets (``*``: all).
OWNER_ENV = "RFS_DEPLOY_RELEASE_OWNER"
#: Environment of an update: ``{service: digest}`` of the live release state the driver expects.
EXPECT_ENV = "RFS_DEPLOY_RELEASE_EXPECT"
ALL = "*"
#: Start of the update message of an update that takes every release state from the config.
TAKE_ALL_MESSAGE = "rfs-deploy[release=config]"
#: Marks the program's error when the expected live state does not hold (the driver looks for it).
CONFLICT_MARK = "release-state conflict"
#: The digest of "this service has no live release state".
ABSENT = "none"


class ReleaseConflict(RfsDeployError):
    """Another process changed the service's live release state; this update changed nothing."""

    exit_code = 2


def digest(state: ReleaseState | None) -> str:
    """12 hex characters naming a release state (``none`` for no state)."""
    if state is None:
        return ABSENT
    text = json.dumps(state.to_config(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def owner_of(message: str) -> str | None:
    """The owner of an update, from its message: the service of a journal tag, ``*`` for a
    take-all update, None for anything else (a plain ``pulumi up``)."""
    from rfs_deploy.journal_tags import decode

    if message.startswith(TAKE_ALL_MESSAGE):
        return ALL
    tag = decode(message)
    return tag.service if tag is not None else None


def owned_message(message: str, wrote_release: bool) -> tuple[str, str | None]:
    """(message, owner) of an update a backend runs: a message that names no owner, after the
    caller set the release state itself (``write_release``), takes every release state from the
    config, and its message says so (so that history tells the same)."""
    owner = owner_of(message)
    if owner is None and wrote_release:
        return f"{TAKE_ALL_MESSAGE} {message}", ALL
    return message, owner


def update_environment(owner: str | None, live: Mapping[str, ReleaseState] | None) -> dict[str, str]:
    """The environment the driver gives an update run by ``owner`` (see the module docstring)."""
    if owner is None:
        return {OWNER_ENV: ""}
    env = {OWNER_ENV: owner}
    if owner != ALL:
        env[EXPECT_ENV] = json.dumps({owner: digest((live or {}).get(owner))})
    return env


@dataclasses.dataclass(frozen=True)
class Resolution:
    """What the program applies: the release states, and one warning per stale checkout value."""

    release: dict[str, ReleaseState]
    warnings: tuple[str, ...] = ()


def resolve(
    config: Mapping[str, ReleaseState],
    live: Mapping[str, ReleaseState] | None,
    owner: str | None,
    expect: Mapping[str, str] | None = None,
    stack: str = "",
) -> Resolution:
    """The release state a program run applies (the rule of the module docstring).

    Raises ReleaseConflict (message with :data:`CONFLICT_MARK`) when ``expect`` names a live
    state that does not hold.
    """
    live = live or {}
    for service, wanted in (expect or {}).items():
        actual = digest(live.get(service))
        if actual != wanted:
            raise ReleaseConflict(
                f"{CONFLICT_MARK}: the live release state of {service} changed since this deployment "
                f"read it (another deployment, rollback or abort of {service} ran); nothing was changed"
            )
    release: dict[str, ReleaseState] = {}
    warnings: list[str] = []
    for service, state in config.items():
        if owner in (ALL, service) or service not in live:
            release[service] = state
            continue
        release[service] = live[service]
        if state != live[service]:
            where = f" --stack {stack}" if stack else ""
            warnings.append(
                f"rfs-deploy:release.{service} in this checkout differs from the live release state "
                f"({describe(live[service])}); keeping the live one. Releases change it "
                f"(rfs-deploy deploy / rollback{where}); to apply the checkout's release state as "
                f"it is: rfs-deploy up{where} --release-from-config"
            )
    return Resolution(release, tuple(warnings))


def describe(state: ReleaseState) -> str:
    """A short account of a release state: ``v2.0.0 on green, weights blue 0 / green 100``."""
    live = state.slot(state.live)
    return (
        f"{live.version or 'no version'} on {state.live}, "
        f"weights blue {state.weights['blue']} / green {state.weights['green']}"
    )


def parse_release_output(value: Any) -> dict[str, ReleaseState] | None:
    """The ``release`` output read back (a mapping of config-shaped states); None when absent
    or unreadable (a stack last updated by a version without the output)."""
    from rfs_deploy.config.loading import parse_release
    from rfs_deploy.errors import ConfigError

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, Mapping):
        return None
    try:
        return {str(name): parse_release(str(name), whole_numbers(state)) for name, state in value.items()}
    except ConfigError:
        return None


def environment_owner(env: Mapping[str, str] | None = None) -> tuple[str | None, dict[str, str]]:
    """(owner, expected digests) of the update this program runs in, from its environment."""
    env = os.environ if env is None else env
    owner = env.get(OWNER_ENV) or None
    try:
        expect = json.loads(env.get(EXPECT_ENV) or "{}")
    except json.JSONDecodeError:
        expect = {}
    if not isinstance(expect, dict):
        expect = {}
    return owner, {str(k): str(v) for k, v in expect.items()}


# --------------------------------------------------------------------------- history


def effective_history(entries: Sequence[Any]) -> list[Any]:
    """History entries (newest first) with each release state replaced by the one the program
    applied: the owner's services from the update's config, every other service from the last
    successful update before it (from the config only for a service it did not have yet).

    Entries are :class:`~rfs_deploy.drive.protocols.HistoryEntry` objects. A history read with a
    limit starts from its oldest entry as though that entry had set every service.
    """
    live: dict[str, ReleaseState] | None = None
    rewritten: list[Any] = []
    for entry in sorted(entries, key=lambda e: e.version):
        release = entry.release
        if release is not None and live is not None:
            applied = resolve(release, live, owner_of(entry.message)).release
            entry = dataclasses.replace(entry, release=applied)
        if entry.result == "succeeded" and entry.release is not None:
            live = dict(entry.release)
        rewritten.append(entry)
    return sorted(rewritten, key=lambda e: e.version, reverse=True)
