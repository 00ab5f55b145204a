"""Choosing the world a command runs against: the local sandbox or Pulumi + AWS.

``RFS_DEPLOY_BACKEND=sim`` (or ``--backend sim``) selects the sandbox — moto plus simulated
traffic, with the real program under Pulumi's mock runtime — and ``RFS_DEPLOY_SCENARIO`` its
scenario. Anything that can reach a real AWS account needs ``--backend pulumi`` or
``RFS_DEPLOY_BACKEND=pulumi`` said explicitly; the sandbox forces fake credentials, so it never
can, even on a machine with credentials configured.
"""

from __future__ import annotations

import os
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


def project_dir() -> Path:
    """The project directory: ``RFS_DEPLOY_PROJECT`` or the nearest parent with Pulumi.yaml."""
    env = os.environ.get("RFS_DEPLOY_PROJECT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    # the installed package sits beside its project in a development checkout
    packaged = Path(__file__).resolve().parent.parent
    if (packaged / "Pulumi.yaml").is_file():
        return packaged
    raise InvalidInput("no Pulumi.yaml here or above; run inside the project or set RFS_DEPLOY_PROJECT")


def backend_kind(explicit: str | None = None) -> str:
    kind = explicit or os.environ.get("RFS_DEPLOY_BACKEND") or "pulumi"
    if kind not in BACKENDS:
        raise InvalidInput(f"unknown backend {kind!r}; use one of {', '.join(BACKENDS)} (RFS_DEPLOY_BACKEND)")
    return kind


def state_dir(base: Path | None = None) -> Path:
    """Where the driver keeps deployment records and the sandbox its state."""
    env = os.environ.get("RFS_DEPLOY_STATE")
    if env:
        return Path(env).resolve()
    return (base or project_dir()) / ".rfs-deploy"


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
) -> Seams:
    """Seams for ``stack`` on the chosen backend (see the module docstring). ``readonly`` is
    for commands that change nothing (status, history, plan): in the sandbox they neither wait
    for nor save the session. With the sandbox,
    ``engine="pulumi"`` runs its stack updates through the real Pulumi engine (`make engine`)."""
    kind = backend_kind(backend)
    root = project_dir()
    records = RecordStore(state_dir(root) / "deployments" / kind)
    if kind == "sim" and engine == "pulumi":
        chosen = scenario or os.environ.get("RFS_DEPLOY_SCENARIO")
        seams = open_engine_sandbox_seams(stack, root, chosen, fresh=fresh, seed=seed)
    elif kind == "sim":
        chosen = scenario or os.environ.get("RFS_DEPLOY_SCENARIO")
        seams = open_sandbox(stack, root, chosen, fresh=fresh, seed=seed, readonly=readonly)
    else:
        seams = _pulumi_seams(stack, root)
    seams.records = records
    seams.lock_wait = LOCK_WAIT
    seams.hooks = hooks or Hooks()
    seams.listeners = list(listeners or [])
    return seams


def short_stack_name(stack: str) -> str:
    """``production`` for ``production`` and for ``acme/rfs-deploy/production`` (an org-qualified
    name, usual with Pulumi Cloud): the name of the stack's config file."""
    return stack.rstrip("/").rsplit("/", 1)[-1]


def open_sandbox(
    stack: str,
    root: Path,
    scenario: str | None,
    *,
    fresh: bool = False,
    seed: int | None = None,
    readonly: bool = False,
) -> Seams:
    """Seams over the sandbox session of ``stack`` (kept in ``.rfs-deploy/sandbox/<stack>``).

    A session lives on between commands and processes, so ``resume`` and ``abort`` work from a new
    process; ``fresh`` starts a new one from ``stacks/Pulumi.<stack>.yaml``. A command that may
    change the stack holds the session while it runs (a second one waits, see
    :mod:`rfs_deploy.sim.session_lock`); ``readonly`` reads the last saved state and never saves.
    """
    from rfs_deploy.sim.session_lock import SessionLock

    stack = short_stack_name(stack)
    session_lock = SessionLock(_session_dir(root, stack), stack)
    if not readonly:
        session_lock.acquire(LOCK_WAIT)
    try:
        return _open_sandbox(stack, root, scenario, fresh, seed, readonly, session_lock)
    except BaseException:
        session_lock.release()
        raise


def _session_dir(root: Path, stack: str) -> Path:
    from rfs_deploy.sim import session_directory

    return session_directory(state_dir(root), stack)


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

    from rfs_deploy.sim import Sandbox

    session = _session_dir(root, stack)
    stack_file = root / "stacks" / f"Pulumi.{stack}.yaml"
    kept = not fresh and (session / "state.json").exists()
    if not kept and not stack_file.is_file():
        from rfs_deploy.errors import UnknownStack

        files = (root / "stacks").glob("Pulumi.*.yaml")
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in files)
        raise UnknownStack(f"unknown stack {stack!r} (stacks/ has: {', '.join(known) or 'none'})")
    # bad input is refused before the old session is touched: a typo in --scenario must not
    # cost the user the session they may still want to resume or inspect
    chosen = _scenario(scenario, fresh, seed)
    if fresh and session.exists():
        shutil.rmtree(session)
    box = Sandbox.open(stack_file, scenario=chosen, session_dir=session, readonly=readonly)
    box.provision()
    hold = SandboxHold(box, session_lock)
    return Seams(
        backend=box.backend,
        metrics=box.adapters.metrics,
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

    if scenario is None and not fresh:
        return None
    chosen = load_scenario(scenario or DEFAULT_SCENARIO)
    return chosen if seed is None else chosen.model_copy(update={"seed": seed})


def open_engine_sandbox_seams(
    stack: str, root: Path, scenario: str | None, *, fresh: bool = False, seed: int | None = None
) -> Seams:
    """Seams over the sandbox of ``stack`` with its updates run by the real Pulumi engine (the
    CLI built into ``bin/`` by `make engine`), kept in ``.rfs-deploy/engine/<stack>``."""
    import shutil

    from rfs_deploy.sim.engine import open_engine_sandbox

    work = state_dir(root) / "engine" / short_stack_name(stack)
    chosen = _scenario(scenario, fresh, seed)
    if fresh and work.exists():
        shutil.rmtree(work)
    sandbox = open_engine_sandbox(
        root / "stacks" / f"Pulumi.{short_stack_name(stack)}.yaml", work, scenario=chosen, project=root
    )
    try:
        sandbox.provision()
    except BaseException:
        sandbox.close()
        raise
    return sandbox.seams()


def _pulumi_seams(stack: str, root: Path) -> Seams:
    from rfs_deploy.aws import connect
    from rfs_deploy.config import read_namespace, read_other_config
    from rfs_deploy.drive.pulumi_backend import PulumiBackend

    stack_file = root / "stacks" / f"Pulumi.{short_stack_name(stack)}.yaml"
    region = None
    if stack_file.is_file():
        # a broken stack file fails here, before any AWS call; its secrets stay encrypted (the
        # Pulumi CLI decrypts them for the driver, with any secrets provider)
        read_namespace(stack_file, decrypt=False)
        region = read_other_config(stack_file, decrypt=False).get("aws:region")
    backend = PulumiBackend(stack, root)
    aws = connect(region=region)
    aws.session.require_credentials()
    return Seams(
        backend=backend,
        metrics=aws.metrics,
        traffic=aws.traffic,
        fleet=aws.fleet,
        images=aws.images,
        alarms=aws.alarms,
        clock=SystemClock(),
    )
