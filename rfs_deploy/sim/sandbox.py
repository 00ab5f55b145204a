"""The sandbox in one object: simulated AWS, physics, virtual clock, a stack backend and adapters.

::

    with Sandbox.open("stacks/Pulumi.production.yaml", scenario="error-spike") as box:
        box.provision()                      # the stack's first update: v1.0.0 running, warm
        runner = Runner(box.backend, box.adapters.metrics, box.adapters.traffic, ...,
                        clock=box.clock)     # the production adapters, over the sandbox
        ...

The driver gets the **production** adapters of :mod:`rfs_deploy.aws` built on a boto3 session
whose clients carry the sandbox's gap handlers (:mod:`rfs_deploy.sim.gaps`); the physics fills
in what moto cannot. With ``session_dir`` the sandbox keeps its state in ``state.json`` there
(stack config, history, outputs, applied resources, physics), so a new process can ``resume``:
it rebuilds moto by re-creating the recorded resources with the same ids.

Secret config values (the services' validation headers, and every Pulumi secret of the stack
file, decrypted in memory when the passphrase is at hand: :mod:`rfs_deploy.config.secrets`) are
never written to ``state.json``: the session keeps a placeholder and a new process reads them
from the stack file again.

A session read by one process is never overwritten with a stale copy by another: each save
bumps a generation number (``state.gen``), a process writes only over the generation it read
(else StackBusy: someone else changed the stack meanwhile), and :meth:`Sandbox.close` writes only
when this process changed something (a read-only ``status`` during a deployment writes nothing).

``RFS_DEPLOY_SIM_KILL=STAGE:N`` (STAGE one of start, mid, end, after) makes the process SIGKILL itself
inside the N-th stack update it runs (see :meth:`SandboxBackend.kill_during`): crash tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

import httpx

from rfs_deploy import statefiles
from rfs_deploy.aws import AwsAdapters, AwsSession
from rfs_deploy.config.loading import (
    REGION_KEY,
    load_stack_config,
    read_namespace,
    read_other_config,
    require_network,
)
from rfs_deploy.config.secrets import revealed_values, scrub
from rfs_deploy.drive.protocols import HistoryEntry, UpdateResult
from rfs_deploy.errors import ConfigError, DamagedState, InvalidInput, RfsDeployError, StackBusy
from rfs_deploy.outputs import OUTPUT_NAME, ServiceOutputs, parse_service_outputs
from rfs_deploy.sim.applier import Applied, MotoApplier
from rfs_deploy.sim.aws import DEFAULT_REGION, SimulatedAws, seed_ids, unseed_ids
from rfs_deploy.sim.backend import REQUESTS_FILE, SandboxBackend, restore_secrets
from rfs_deploy.sim.clock import VirtualClock
from rfs_deploy.sim.gaps import GapHandlers
from rfs_deploy.sim.http import sandbox_transport
from rfs_deploy.sim.network import NetworkMap
from rfs_deploy.sim.scenario import Scenario, load_scenario, parse_scenario
from rfs_deploy.sim.world import World

STATE_FILE = "state.json"
LOCK_FILE = "update.lock"
GENERATION_FILE = "state.gen"
SAVE_LOCK_FILE = ".save.lock"
#: Decrypted secrets at least this long are kept out of everything the session saves (shorter
#: ones would match unrelated text; validation headers are kept out whatever their length).
MIN_SCRUBBED = 4
#: ``STAGE:N``: SIGKILL the process inside its N-th stack update (crash tests; see module docstring).
KILL_ENV = "RFS_DEPLOY_SIM_KILL"


def recover_command(directory: Path | None) -> str:
    """The command that starts the session in ``directory`` afresh (losing its history)."""
    stack = directory.name if directory is not None else "STACK"
    return f"rfs-deploy sandbox-reset --stack {stack}"


def damaged(directory: Path | None, what: str) -> DamagedState:
    """The one-line error for a session that cannot be read back: what is wrong and the command
    that recovers. Nothing is replaced: the user decides to lose the session."""
    where = directory if directory is not None else "the sandbox session"
    return DamagedState(
        f"the sandbox session in {where} is damaged: {what}; rfs-deploy changed nothing. To start "
        f"the stack afresh (its sandbox history is lost): {recover_command(directory)}"
    )


class Sandbox:
    """Simulated AWS + physics + backend for one stack (see the module docstring)."""

    def __init__(
        self,
        stack_name: str,
        namespace: dict[str, Any],
        *,
        scenario: Scenario,
        extra_config: dict[str, Any] | None = None,
        session_dir: Path | None = None,
        start: float | None = None,
    ) -> None:
        extra = dict(extra_config or {})
        self.stack_name = stack_name
        self.scenario = scenario
        self.session_dir = session_dir
        self.aws = SimulatedAws(str(extra.get(REGION_KEY) or DEFAULT_REGION))
        self.clock = VirtualClock(start)
        self._namespace, self._extra = namespace, extra
        self._started = False
        #: The session generation this process read or last wrote (see the module docstring).
        self._generation = _read_generation(session_dir) if session_dir is not None else 0
        #: The stack file's namespace, to put back the secrets a saved session leaves out.
        self._secret_source: dict[str, Any] | None = None
        #: Something changed since the last save (time passed, a refresh was started or cancelled).
        self._dirty = False
        #: Never save (see :meth:`open`).
        self.readonly = False

    # ----------------------------------------------------------------- construction

    @classmethod
    def open(
        cls,
        stack_file: str | Path | None = None,
        *,
        scenario: str | Path | Scenario | None = None,
        session_dir: str | Path | None = None,
        start: float | None = None,
        readonly: bool = False,
    ) -> Sandbox:
        """A started sandbox for ``stack_file`` (``stacks/Pulumi.<stack>.yaml``), or for the session
        kept in ``session_dir`` when it holds one (then ``stack_file`` may be omitted; a given
        ``scenario`` replaces the recorded one). ``readonly``: never save the session (a command
        that only reads it, while another process may be changing it)."""
        box = cls._open(stack_file, scenario, session_dir, start, readonly)
        box.readonly = readonly
        return box

    @classmethod
    def _open(
        cls,
        stack_file: str | Path | None,
        scenario: str | Path | Scenario | None,
        session_dir: str | Path | None,
        start: float | None,
        readonly: bool = False,
    ) -> Sandbox:
        directory = Path(session_dir) if session_dir is not None else None
        if directory is not None:
            check_session_files(directory)
        # the generation first: a save landing between the two reads then shows as a conflict
        generation = _read_generation(directory) if directory is not None else 0
        saved = _read_state(directory) if directory is not None else None
        if saved is not None:
            if scenario is not None:
                chosen = _scenario(scenario)  # the user's choice: its errors are the user's
            else:
                try:
                    chosen = parse_scenario(saved["scenario"], "session")
                except InvalidInput as exc:
                    raise damaged(directory, f"its scenario does not load ({exc})") from None
            source = None
            if stack_file is not None and Path(stack_file).is_file():
                # secrets are never saved in the session: they are read from the stack file again
                source = read_namespace(stack_file)
            try:
                if source is not None:
                    restore_secrets(saved["backend"]["namespace"], source)
                box = cls(
                    saved["backend"]["stack"],
                    saved["backend"]["namespace"],
                    scenario=chosen,
                    extra_config=saved["backend"].get("extraConfig"),
                    session_dir=directory,
                    start=start,
                )
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                why = f"its stack config does not load ({type(exc).__name__}: {exc})"
                raise damaged(directory, why) from None
            box._generation = generation
            box._secret_source = source
            box.readonly = readonly
            return box._start(saved)
        if stack_file is None:
            raise ConfigError(
                "", "the sandbox needs a stack file (stacks/Pulumi.<stack>.yaml) or a saved session"
            )
        path = Path(stack_file)
        stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        namespace = read_namespace(path)
        # the session keeps these as they are: a secret of another namespace is left out
        extra = read_other_config(path, keep_secrets=False)
        # a broken stack file: one ConfigError line before moto starts (the sandbox runs the
        # shipped program, which needs the network)
        require_network(load_stack_config(namespace))
        box = cls(
            stack,
            namespace,
            scenario=_scenario(scenario or "healthy"),
            extra_config=extra,
            session_dir=directory,
            start=start,
        )
        box.readonly = readonly
        return box._start(None)

    def _start(self, saved: dict[str, Any] | None) -> Sandbox:
        self.aws.start()
        try:
            self.world = World(self.aws, self.clock, self.scenario, self.topology)
            self.gaps = GapHandlers(self.world, on_change=self._mark_dirty)
            self.gaps.install(self.aws)
            self.clock.subscribe(lambda _start, _end: self._mark_dirty())
            self.network = NetworkMap()
            self.applier = MotoApplier(self.aws, self.world, self.network)
            # a read-only sandbox runs no update another process must wait for: no lock file
            keeps = self.session_dir is not None and not self.readonly
            lock = self.session_dir / LOCK_FILE if keeps and self.session_dir is not None else None
            self.backend = SandboxBackend(
                self.stack_name,
                self._namespace,
                self.applier,
                extra_config=self._extra,
                lock_file=lock,
                save=self.save,
                now=self.clock.now,
                # other processes' requests reach the process that holds the session
                inbox=self.session_dir / REQUESTS_FILE if keeps and self.session_dir is not None else None,
            )
            self.adapters = AwsAdapters.from_session(
                AwsSession(self.aws.region, boto_session=self.aws.boto_session())
            )
            self.clock.subscribe(lambda _start, _end: self.backend.time_passed())
            self._started = True
            if saved is not None:
                self._restore(saved)
            self._dirty = saved is None
            _arm_kill(self.backend, os.environ.get(KILL_ENV))
        except BaseException as exc:
            self.aws.stop()
            self._started = False
            if saved is None or isinstance(exc, RfsDeployError) or not isinstance(exc, Exception):
                raise
            # a damaged session, or one an older sandbox wrote: one line, not a moto traceback
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise damaged(self.session_dir, f"it cannot be restored ({type(exc).__name__}: {first})") from exc
        return self

    def close(self) -> None:
        """Save the session (when kept in a directory and changed here) and stop moto."""
        if not self._started:
            return
        if self._dirty:
            # another process changed the session meanwhile: its state wins, ours is stale
            with contextlib.suppress(StackBusy):
                self.save()
        self.world.close()
        self.aws.stop()
        self._started = False

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- use

    def provision(self, message: str = "sandbox: create the stack") -> UpdateResult | None:
        """Run the stack's first update when it has none (instances start warm); None otherwise."""
        if any(entry.result == "succeeded" for entry in self.backend.history()):
            return None
        return self.backend.up(message)

    def topology(self) -> dict[str, ServiceOutputs]:
        """Each service's outputs from the last successful update ({} before the first)."""
        services = self.backend.outputs().get(OUTPUT_NAME) if self._started else None
        if not isinstance(services, dict):
            return {}
        return {name: parse_service_outputs(value) for name, value in services.items()}

    def http_transport(self) -> httpx.MockTransport:
        """An httpx transport answering the services' URLs (validation: /health, /version, ...)."""
        return sandbox_transport(self.world)

    # ----------------------------------------------------------------- persistence

    def _mark_dirty(self) -> None:
        self._dirty = True

    def save(self) -> None:
        """Write the session to ``session_dir/state.json`` (atomically); no-op without a directory.

        Raises StackBusy when another process saved the session since this one read it."""
        if self.session_dir is None or not self._started or self.readonly:
            return
        state = {
            "scenario": self.scenario.model_dump(by_alias=True),
            "backend": self.backend.to_json(),
            "network": self.network.ids,
            "resources": self.applier.to_json(),
            "world": self.world.to_json(),
            # a group's size is the program's desired capacity, unless a scaling policy (or a
            # test standing in for one) moved it: a restore keeps what it was
            "sizes": {
                group["AutoScalingGroupName"]: group["DesiredCapacity"]
                for group in self.aws.raw("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
            },
        }
        # a decrypted secret the program used (a secret tag, say) is in resource inputs too
        state = scrub(state, self._secret_texts())
        directory = self.session_dir
        statefiles.make_dirs(directory)
        # serialised before the save lock is taken: a value that cannot be saved fails here
        data = json.dumps(state, default=_jsonable).encode()
        guard = statefiles.open_lock_file(directory / SAVE_LOCK_FILE)
        try:
            fcntl.flock(guard, fcntl.LOCK_EX)
            on_disk = _read_generation(directory)
            if on_disk != self._generation:
                raise StackBusy(
                    f"stack {self.stack_name!r} was changed by another rfs-deploy process while this "
                    f"one ran (sandbox session generation {on_disk}, read {self._generation}); "
                    f"see `rfs-deploy status --stack {self.stack_name}`"
                )
            statefiles.write_atomic(directory / STATE_FILE, data)
            self._generation = on_disk + 1
            _write_generation(directory, self._generation)
        finally:
            os.close(guard)  # closing the descriptor releases the flock
        self._dirty = False

    def _secret_texts(self) -> set[str]:
        """The decrypted secret values this process holds (never saved); too short ones aside."""
        found = revealed_values(self.backend.namespace) | revealed_values(self._secret_source or {})
        return {text for text in found if len(text) >= MIN_SCRUBBED}

    def _restore(self, saved: dict[str, Any]) -> None:
        """Rebuild moto from the recorded resources (same seeded ids), then the physics."""
        self.backend.load_json(saved["backend"])
        if self._secret_source is not None:
            restore_secrets(self.backend.namespace, self._secret_source)
        previous = self.world.load_json(saved["world"])
        config = self.backend.read_config()
        if config.network is not None:
            self.network.ensure(self.aws, config.network)
        for data in saved.get("resources", []):
            res = Applied(**data)
            seed_ids(res.key, res.generation)
            try:
                self.applier.kinds[res.type].create(res)
                if res.type == "aws:ec2/launchTemplate:LaunchTemplate":
                    self._recreate_versions(res, int(Applied(**data).computed.get("latestVersion", 1)))
            finally:
                unseed_ids()
            res.computed = {
                **data["computed"],
                **{k: v for k, v in res.computed.items() if k != "latestVersion"},
            }
            self.applier.resources[res.key] = res
        self._resize(saved.get("sizes") or {})
        renamed = self.world.fleet.adopt(previous)
        self.world.refreshes.rename(renamed)
        self.world.record.republish(self.clock.now())
        self.world.alarms.evaluate_all(self.clock.now())

    def _resize(self, sizes: dict[str, int]) -> None:
        """Give each rebuilt group the desired capacity it had when the session was saved (the
        program's inputs rebuild it at the one on record)."""
        asg = self.aws.raw("autoscaling")
        resized = False
        for name, size in sizes.items():
            group = self.world.fleet.describe_group(name)
            if group is None or group["DesiredCapacity"] == size:
                continue
            if group["MinSize"] <= size <= group["MaxSize"]:
                asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=int(size))
                resized = True
        if resized:  # record the instances moto launched or ended for it
            self.world.after_apply(warm=self.applier.warm)

    def _recreate_versions(self, res: Applied, latest: int) -> None:
        from rfs_deploy.sim import convert

        ec2 = self.aws.raw("ec2")
        for _ in range(1, latest):
            ec2.create_launch_template_version(
                LaunchTemplateId=res.id, LaunchTemplateData=convert.launch_template_data(res.inputs)
            )
        if res.inputs.get("updateDefaultVersion") and latest > 1:
            ec2.modify_launch_template(LaunchTemplateId=res.id, DefaultVersion=str(latest))


def _scenario(value: str | Path | Scenario) -> Scenario:
    return value if isinstance(value, Scenario) else load_scenario(value)


def check_session_files(directory: Path) -> None:
    """DamagedState when a file the session keeps is a link (or not a regular file): found when
    the session is opened, before anything runs, not at the first save half-way through."""
    for name in (STATE_FILE, GENERATION_FILE, SAVE_LOCK_FILE, LOCK_FILE):
        path = directory / name
        if statefiles.exists(path) and (path.is_symlink() or not path.is_file()):
            raise statefiles.link_found(path)


def _read_generation(directory: Path) -> int:
    """The session's generation (0 before its first save); DamagedState for a link or garbage."""
    path = directory / GENERATION_FILE
    data = statefiles.read_bytes(path, f"remove it or start afresh: {recover_command(directory)}", limit=64)
    if data is None:
        return 0
    text = data.decode("ascii", "replace").strip()
    if not text:
        return 0  # a crash between creating and filling it (older sandboxes): nothing saved since
    if not text.isdigit():
        raise damaged(directory, f"{GENERATION_FILE} holds {text[:20]!r}, not a generation number")
    return int(text)


def _write_generation(directory: Path, generation: int) -> None:
    statefiles.write_atomic(directory / GENERATION_FILE, str(generation).encode())


def _arm_kill(backend: SandboxBackend, spec: str | None) -> None:
    """Apply ``RFS_DEPLOY_SIM_KILL`` (``STAGE:N``) to the backend; a malformed value is an error."""
    if not spec:
        return
    stage, _, count = spec.partition(":")
    try:
        backend.kill_during(int(count or "1"), stage)
    except ValueError:
        raise ConfigError(
            KILL_ENV, f"expected STAGE:N with STAGE start, mid, end or after, got {spec!r}"
        ) from None


def read_saved_history(directory: Path) -> list[HistoryEntry]:
    """The stack history of the session saved in ``directory`` (newest first; [] when there is
    none), read from its file alone: no moto, no lock, nothing written (a poller's read)."""
    from rfs_deploy.sim.backend import saved_history

    saved = _read_state(directory)
    if saved is None:
        return []
    try:
        return saved_history(saved["backend"].get("history", []))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise damaged(directory, f"its history does not load ({type(exc).__name__}: {exc})") from None


def _read_state(directory: Path) -> dict[str, Any] | None:
    """The saved session in ``directory``; None when it has none. DamagedState (one line naming
    ``sandbox-reset``) for anything else: a link, an empty, truncated or non-UTF-8 file, JSON that
    is not a session. A damaged session is never taken for a missing one: that would make a new
    stack over the old one's history."""
    path = directory / STATE_FILE
    data = statefiles.read_bytes(path, f"remove it or start afresh: {recover_command(directory)}")
    if data is None:
        return None
    if not data.strip():
        raise damaged(directory, f"{STATE_FILE} is empty")
    try:
        saved = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise damaged(directory, f"{STATE_FILE} is not UTF-8 text (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise damaged(directory, f"{STATE_FILE} is not complete JSON ({exc})") from None
    backend = saved.get("backend") if isinstance(saved, dict) else None
    if not (
        isinstance(saved, dict)
        and isinstance(saved.get("scenario"), dict)
        and isinstance(backend, dict)
        and isinstance(backend.get("stack"), str)
        and isinstance(backend.get("namespace"), dict)
        and isinstance(backend.get("history", []), list)
        and isinstance(saved.get("world"), dict)
        and isinstance(saved.get("resources", []), list)
    ):
        kind = "null" if saved is None else type(saved).__name__
        raise damaged(directory, f"{STATE_FILE} holds JSON ({kind}) that is not a sandbox session")
    return saved


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"cannot save {type(value).__name__} in a sandbox session")
