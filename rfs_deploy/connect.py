"""Choosing the world a command runs against: the local sandbox or Pulumi + AWS.

``RFS_DEPLOY_BACKEND=sim`` (or ``--backend sim``) selects the sandbox — moto plus simulated
traffic, with the real program under Pulumi's mock runtime — and ``RFS_DEPLOY_SCENARIO`` its
scenario. Anything that can reach a real AWS account needs ``--backend pulumi`` or
``RFS_DEPLOY_BACKEND=pulumi`` said explicitly; the sandbox forces fake credentials, so it never
can, even on a machine with credentials configured.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rfs_deploy.drive.context import Hooks, Seams
from rfs_deploy.drive.protocols import SystemClock
from rfs_deploy.drive.records import RecordStore
from rfs_deploy.errors import InvalidInput

if TYPE_CHECKING:
    from rfs_deploy.sim.scenario import Scenario

BACKENDS = ("sim", "pulumi")
DEFAULT_SCENARIO = "healthy"
#: Seconds a stack update waits for the lock another process holds (Seams.lock_wait).
LOCK_WAIT = 900
#: A stack name: Pulumi's rules, letters, digits, ``_``, ``.`` and ``-``, at most 100 of them,
#: optionally qualified by organisation and project (``acme/rfs-deploy/production``). A part
#: of dots only (``.``, ``..``) is refused: the short name becomes a path in the state directory.
STACK_NAME = re.compile(r"\A(?:[A-Za-z0-9_.-]{1,100}/){0,2}[A-Za-z0-9_.-]{1,100}\Z")


def check_stack_name(stack: str) -> str:
    """``stack`` when it is a stack name (:data:`STACK_NAME`); InvalidInput otherwise. Every
    command checks it before the name reaches a path (a session, a stack file)."""
    if (
        not isinstance(stack, str)
        or STACK_NAME.match(stack) is None
        or any(set(part) == {"."} for part in stack.split("/"))
    ):
        shown = repr(stack) if len(stack) <= 120 else f"{stack[:60]!r}... ({len(stack)} characters)"
        raise InvalidInput(
            f"{shown} is not a stack name: use letters, digits, '_', '.' and '-' (at most 100), "
            "optionally as org/project/stack"
        )
    return stack


#: Where the project is when the driver does not run inside it (``--project DIR`` sets it too).
PROJECT_ENV = "RFS_DEPLOY_PROJECT"


def check_project(directory: str | Path) -> Path:
    """``directory`` resolved, when it holds a Pulumi project (Pulumi.yaml); InvalidInput otherwise."""
    where = Path(directory).expanduser().resolve()
    if not where.is_dir():
        raise InvalidInput(f"project {directory}: no such directory")
    if not any((where / f"Pulumi{ext}").is_file() for ext in (".yaml", ".yml")):
        raise InvalidInput(f"project {directory}: no Pulumi.yaml there (a Pulumi project's directory)")
    return where


def project_dir() -> Path:
    """The project directory: ``RFS_DEPLOY_PROJECT`` (``--project``) or the nearest parent with
    Pulumi.yaml."""
    env = os.environ.get(PROJECT_ENV)
    if env:
        return check_project(env)
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if any((candidate / f"Pulumi{ext}").is_file() for ext in (".yaml", ".yml")):
            return candidate
    # the installed package sits beside its project in a development checkout
    packaged = Path(__file__).resolve().parent.parent
    if (packaged / "Pulumi.yaml").is_file():
        return packaged
    raise InvalidInput(
        "no Pulumi.yaml here or above; run inside the project, or name it with --project DIR "
        "(or RFS_DEPLOY_PROJECT)"
    )


def backend_kind(explicit: str | None = None) -> str:
    kind = explicit or os.environ.get("RFS_DEPLOY_BACKEND") or "pulumi"
    if kind not in BACKENDS:
        raise InvalidInput(f"unknown backend {kind!r}; use one of {', '.join(BACKENDS)} (RFS_DEPLOY_BACKEND)")
    return kind


def state_dir(base: Path | None = None) -> Path:
    """Where the driver keeps deployment records and the sandbox its state. InvalidInput when
    ``RFS_DEPLOY_STATE`` (or the default) names a file, or lies under one."""
    env = os.environ.get("RFS_DEPLOY_STATE")
    where = Path(env).resolve() if env else (base or project_dir()) / ".rfs-deploy"
    what = f"RFS_DEPLOY_STATE={env}" if env else str(where)
    check_directory(where, f"the state directory {what}")
    return where


def check_directory(path: Path, what: str) -> None:
    """InvalidInput unless ``path`` is a directory or can be made one: it, or the nearest part
    of it that exists, must be a directory (``/dev/null/x`` and a file are refused)."""
    if "\0" in str(path):
        raise InvalidInput(f"{what}: a path cannot hold a NUL character")
    here = Path(path)
    while True:
        try:
            if here.is_dir():
                break
            if here.exists() or here.is_symlink():
                problem = (
                    "is not a directory" if here == Path(path) else f"lies under {here}, not a directory"
                )
                raise InvalidInput(f"{what} {problem}")
        except OSError as exc:  # a name too long, a part not searchable
            raise InvalidInput(f"{what}: {exc.strerror or exc}") from None
        if here.parent == here:
            break
        here = here.parent
    if not os.access(here, os.W_OK | os.X_OK):
        raise InvalidInput(f"{what}: {here} is not writable")


def open_seams(
    stack: str,
    *,
    backend: str | None = None,
    scenario: str | None = None,
    hooks: Hooks | None = None,
    listeners: Sequence[Callable[[Any], None]] | None = None,
    seed: int | None = None,
    fresh: bool = False,
    engine: str = "sim",
    readonly: bool = False,
    refuse_open: bool = False,
) -> Seams:
    """Seams for ``stack`` on the chosen backend (see the module docstring). ``readonly`` is
    for commands that change nothing (status, history, plan): in the sandbox they neither wait
    for nor save the session. ``refuse_open`` (with ``fresh``): refuse, instead of replacing, a
    sandbox session another command holds or that has an open deployment. With the sandbox,
    ``engine="pulumi"`` runs its stack updates through the real Pulumi engine (`make engine`)."""
    from rfs_deploy import statefiles

    check_stack_name(stack)
    kind = backend_kind(backend)
    root = project_dir()
    base = state_dir(root)
    records = RecordStore(base / "deployments" / kind)
    statefiles.check_no_links(base, records.directory)
    if kind == "sim" and engine == "pulumi":
        chosen = scenario or os.environ.get("RFS_DEPLOY_SCENARIO")
        seams = open_engine_sandbox_seams(stack, root, chosen, fresh=fresh, seed=seed)
    elif kind == "sim":
        chosen = scenario or os.environ.get("RFS_DEPLOY_SCENARIO")
        seams = open_sandbox(
            stack, root, chosen, fresh=fresh, seed=seed, readonly=readonly, refuse_open=refuse_open
        )
    else:
        seams = _pulumi_seams(stack, root)
    seams.records = records
    seams.lock_wait = LOCK_WAIT
    seams.hooks = hooks or Hooks()
    seams.listeners = list(listeners or [])
    return seams


def short_stack_name(stack: str) -> str:
    """``production`` for ``production`` and for ``acme/rfs-deploy/production`` (an org-qualified
    name, usual with Pulumi Cloud): the name of the stack's config file. InvalidInput for
    anything that is not a stack name (see :func:`check_stack_name`)."""
    return check_stack_name(stack).rsplit("/", 1)[-1]


def open_sandbox(
    stack: str,
    root: Path,
    scenario: str | None,
    *,
    fresh: bool = False,
    seed: int | None = None,
    readonly: bool = False,
    refuse_open: bool = False,
) -> Seams:
    """Seams over the sandbox session of ``stack`` (kept in ``.rfs-deploy/sandbox/<stack>``).

    A session lives on between commands and processes, so ``resume`` and ``abort`` work from a new
    process; ``fresh`` starts a new one from ``stacks/Pulumi.<stack>.yaml``. A command that may
    change the stack holds the session while it runs (a second one waits, see
    :mod:`rfs_deploy.sim.session_lock`); ``readonly`` reads the last saved state and never saves
    (nor makes the session directory). ``refuse_open`` (``simulate``): a fresh session does not
    replace one another process holds (StackBusy at once, no wait) or one with an open
    deployment (PreconditionFailed naming resume, abort and sandbox-reset).
    """
    from rfs_deploy.sim.session_lock import SessionLock

    stack = short_stack_name(stack)
    session = _session_dir(root, stack)
    session_lock = SessionLock(session, stack)
    if not readonly:
        if fresh and refuse_open:
            _hold_for_a_fresh_start(session_lock, stack)
        else:
            session_lock.acquire(LOCK_WAIT)
    try:
        if fresh and refuse_open:
            _refuse_if_open(stack, root, session)
        return _open_sandbox(stack, root, scenario, fresh, seed, readonly, session_lock)
    except BaseException:
        session_lock.release()
        raise


def _hold_for_a_fresh_start(session_lock: Any, stack: str) -> None:
    """Hold the session without waiting: a fresh start would discard the work of its holder."""
    from rfs_deploy.errors import StackBusy

    try:
        session_lock.acquire(0)
    except StackBusy:
        raise StackBusy(
            f"the sandbox session of stack {stack!r} is in use by {session_lock.holder()}; a fresh "
            "start would discard its work: wait for that command to end (or stop it and run "
            f"`rfs-deploy abort --stack {stack}`), then run this again"
        ) from None


def _refuse_if_open(stack: str, root: Path, session: Path) -> None:
    """PreconditionFailed when the kept session of ``stack`` has an open deployment (DamagedState
    when it cannot be read): replacing it would lose the journal ``resume`` and ``abort`` need."""
    from rfs_deploy import statefiles
    from rfs_deploy.drive import journal
    from rfs_deploy.errors import PreconditionFailed
    from rfs_deploy.sim import Sandbox
    from rfs_deploy.sim.sandbox import STATE_FILE

    if not statefiles.exists(session / STATE_FILE):
        return
    box = Sandbox.open(stack_config_file(stack, root), session_dir=session, readonly=True)
    try:
        history = box.backend.history()
    finally:
        box.close()
    opened = journal.open_deployments(history)
    if not opened:
        return
    found = opened[0]
    where = f"--stack {stack} --service {found.service}"
    raise PreconditionFailed(
        f"stack {stack} has an open deployment ({found.deployment_id}: {found.service} → "
        f"{found.version}, {found.status}) that a fresh sandbox session would discard: finish it "
        f"with `rfs-deploy resume {where}` or `rfs-deploy abort {where}`, or discard it with "
        f"`rfs-deploy sandbox-reset --stack {stack}`"
    )


def stack_config_file(stack: str, root: Path | None = None) -> Path:
    """The stack's config file: ``Pulumi.<stack>.yaml`` where the project keeps them
    (:func:`rfs_deploy.config.loading.stack_config_dir`)."""
    from rfs_deploy.config.loading import stack_config_dir

    return stack_config_dir(root or project_dir()) / f"Pulumi.{short_stack_name(stack)}.yaml"


def _session_dir(root: Path, stack: str) -> Path:
    from rfs_deploy import statefiles
    from rfs_deploy.sim import session_directory

    base = state_dir(root)
    session = session_directory(base, stack)
    statefiles.check_no_links(base, session)
    return session


def _open_sandbox(
    stack: str,
    root: Path,
    scenario: str | None,
    fresh: bool,
    seed: int | None,
    readonly: bool,
    session_lock: Any,
) -> Seams:
    import shutil

    from rfs_deploy import statefiles
    from rfs_deploy.metrics.cloudwatch import CloudWatchProvider
    from rfs_deploy.sim import Sandbox
    from rfs_deploy.sim.sandbox import STATE_FILE

    session = _session_dir(root, stack)
    stack_file = stack_config_file(stack, root)
    kept = not fresh and statefiles.exists(session / STATE_FILE)
    if not kept and not stack_file.is_file():
        from rfs_deploy.config.loading import stack_config_dir
        from rfs_deploy.errors import UnknownStack

        config_dir = stack_config_dir(root)
        files = config_dir.glob("Pulumi.*.yaml")
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in files)
        inside = config_dir != root and config_dir.is_relative_to(root)
        shown = f"{config_dir.relative_to(root)}/" if inside else "the project"
        raise UnknownStack(f"unknown stack {stack!r} ({shown} has: {', '.join(known) or 'none'})")
    # bad input is refused before the old session is touched: a typo in --scenario must not
    # cost the user the session they may still want to resume or inspect
    chosen = _scenario(scenario, fresh, seed)
    if fresh and statefiles.exists(session):
        shutil.rmtree(session)
    # a read-only command on a stack without a session changes nothing on disk: its sandbox
    # lives in memory only
    directory = session if kept or not readonly else None
    box = Sandbox.open(stack_file, scenario=chosen, session_dir=directory, readonly=readonly)
    box.provision()
    hold = SandboxHold(box, session_lock)
    return Seams(
        backend=box.backend,
        metrics=CloudWatchProvider.from_session(box.adapters.session),
        traffic=box.adapters.traffic,
        fleet=box.adapters.fleet,
        images=box.adapters.images,
        alarms=box.adapters.alarms,
        clock=box.clock,
        http_transport=box.http_transport(),
        closer=hold.close,
    )


class SandboxHold:
    """A sandbox opened for a command and its hold on the session; ``close`` ends both."""

    def __init__(self, box: Any, session_lock: Any) -> None:
        self.box = box
        self.session_lock = session_lock

    def close(self) -> None:
        try:
            self.box.close()
        finally:
            self.session_lock.release()


def _scenario(scenario: str | None, fresh: bool, seed: int | None) -> Scenario | None:
    """The scenario a (fresh) session starts with; None keeps a session's own. Raises
    ScenarioError for a bad name or file."""
    from rfs_deploy.sim import load_scenario

    if seed is not None:
        check_seed(seed)
    if scenario is None and not fresh:
        return None
    chosen = load_scenario(scenario or DEFAULT_SCENARIO)
    return chosen if seed is None else chosen.model_copy(update={"seed": seed})


#: Seeds are what numpy's generators take whole: 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1


def check_seed(seed: int) -> int:
    """``seed`` when it is a scenario seed (0 to :data:`MAX_SEED`); InvalidInput otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidInput(f"--seed must be a whole number from 0 to {MAX_SEED}, not {seed!r}")
    return seed


def open_engine_sandbox_seams(
    stack: str, root: Path, scenario: str | None, *, fresh: bool = False, seed: int | None = None
) -> Seams:
    """Seams over the sandbox of ``stack`` with its updates run by the real Pulumi engine (the
    CLI built into ``bin/`` by `make engine`), kept in ``.rfs-deploy/engine/<stack>``."""
    import shutil

    from rfs_deploy import statefiles
    from rfs_deploy.sim.engine import open_engine_sandbox
    from rfs_deploy.sim.session_lock import SessionLock

    base = state_dir(root)
    short = short_stack_name(stack)
    work = base / "engine" / short
    statefiles.check_no_links(base, work)
    chosen = _scenario(scenario, fresh, seed)
    # as a sandbox session: held for the whole command; a fresh start (``simulate``) does not
    # wait for, and never wipes, a work directory another command is using
    session_lock = SessionLock(work, short)
    if fresh:
        _hold_for_a_fresh_start(session_lock, short)
    else:
        session_lock.acquire(LOCK_WAIT)
    try:
        if fresh and work.exists():
            shutil.rmtree(work)
        sandbox = open_engine_sandbox(stack_config_file(stack, root), work, scenario=chosen, project=root)
    except BaseException:
        session_lock.release()
        raise
    try:
        sandbox.provision()
    except BaseException:
        try:
            sandbox.close()
        finally:
            session_lock.release()
        raise
    seams = sandbox.seams()
    close = seams.closer

    def closer() -> None:
        try:
            if close is not None:
                close()
        finally:
            session_lock.release()

    seams.closer = closer
    return seams


def _pulumi_seams(stack: str, root: Path) -> Seams:
    from rfs_deploy.aws import connect
    from rfs_deploy.config import read_namespace
    from rfs_deploy.config.loading import stack_region
    from rfs_deploy.drive.pulumi_backend import PulumiBackend
    from rfs_deploy.metrics.cloudwatch import CloudWatchProvider

    stack_file = stack_config_file(stack, root)
    region = None
    if stack_file.is_file():
        # a broken stack file fails here, before any AWS call; its secrets stay encrypted (the
        # Pulumi CLI decrypts them for the driver, with any secrets provider)
        read_namespace(stack_file, decrypt=False)
        region = stack_region(stack_file)
    backend = PulumiBackend(stack, root)
    aws = connect(region=region)
    aws.session.require_credentials()
    return Seams(
        backend=backend,
        metrics=CloudWatchProvider.from_session(aws.session),
        traffic=aws.traffic,
        fleet=aws.fleet,
        images=aws.images,
        alarms=aws.alarms,
        clock=SystemClock(),
    )
