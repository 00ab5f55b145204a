"""One handler per ``rfs-deploy`` subcommand; each returns the process exit code."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rfs_deploy.cli import SANDBOX_SERVICE, SANDBOX_STACK, emit, exit_code, views
from rfs_deploy.cli.progress import WATCHDOG_SECONDS, ProgressPrinter
from rfs_deploy.connect import (
    backend_kind,
    open_seams,
    project_dir,
    short_stack_name,
    stack_config_file,
    state_dir,
)
from rfs_deploy.drive import journal
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.plans import describe
from rfs_deploy.drive.plans.common import fleet_line
from rfs_deploy.drive.protocols import HistoryEntry
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus, RecordStore
from rfs_deploy.drive.summary import summarize
from rfs_deploy.errors import InvalidInput, StackBusy

_opened: list[Seams] = []
_printers: list[ProgressPrinter] = []


def _check_stack_file(stack: str, backend: str | None = None) -> None:
    """A stack file that is not valid YAML: one line naming it and where, before any backend
    opens it (read_namespace reads it with the bounded YAML reader: not UTF-8, too large, too
    deep, aliases and values JSON cannot carry are one ConfigError line too). A sandbox stack
    without a session yet starts from the file's settings: those are validated here too, so a
    refused file leaves the state directory as it was (no lock file, no session)."""
    from rfs_deploy.config.loading import load_stack_config, read_namespace, require_network
    from rfs_deploy.connect import backend_kind, state_dir
    from rfs_deploy.sim import session_directory

    short = short_stack_name(stack)
    path = stack_config_file(short)
    if not path.is_file():
        return
    namespace = read_namespace(path)
    if backend_kind(backend) == "sim" and not (session_directory(state_dir(), short) / "state.json").exists():
        require_network(load_stack_config(namespace))


def _seams(args: argparse.Namespace, stack: str, backend: str | None = None, **kw: Any) -> Seams:
    _check_stack_file(stack, backend or args.backend)
    listeners: list[Callable[[Any], None]] = []
    if not args.quiet:
        printer = ProgressPrinter(watchdog=WATCHDOG_SECONDS)
        _printers.append(printer)
        listeners.append(printer)
    seams = open_seams(stack, backend=backend or args.backend, listeners=listeners, **kw)
    _opened.append(seams)
    return seams


def close_all() -> None:
    """Release every seams a command opened (the sandbox saves its session) and stop the
    progress watchdogs."""
    while _printers:
        _printers.pop().close()
    while _opened:
        _opened.pop().close()


# --------------------------------------------------------------------------- overrides

SECTIONS = ("strategy", "analysis", "deploy", "validation")
_SNAKE = re.compile(r"\A[a-z][a-z0-9]*(?:_[a-z0-9]+)+\Z")
_KEY_PART = re.compile(r"\A[A-Za-z][A-Za-z0-9_]*\Z")


def _camel(key: str) -> str:
    from pydantic.alias_generators import to_camel

    return to_camel(key) if _SNAKE.match(key) else key


def parse_overrides(
    pairs: list[str], steps: str | None, current: Callable[[], dict[str, Any]]
) -> dict[str, Any] | None:
    """``--set KEY=VALUE`` (dotted keys, camelCase or snake_case, values parsed as YAML) and
    ``--steps W1,W2,...`` as the ``overrides`` of Driver.plan / Driver.deploy, which validate them
    as the stack file is validated. ``current`` gives the service's settings (``by_alias``) so a
    key nested deeper than a section's own keys (``validation.probe.requests``) changes only
    itself. None when there is nothing to override."""
    import yaml

    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"--set expects KEY=VALUE (e.g. analysis.maxErrorRate=0.02), got {pair!r}")
        parts = key.split(".")
        if parts[0] not in SECTIONS or len(parts) < 2:
            raise InvalidInput(
                f"--set {key}: the key must be SECTION.NAME with SECTION one of {', '.join(SECTIONS)}"
            )
        if parts[0] == "validation" and _camel(parts[1]) == "headers":
            raise InvalidInput(
                f"--set {key}: validation headers are secrets; set them in the stack config "
                "(pulumi config set --secret), not on a command line"
            )
        if not all(_KEY_PART.match(p) for p in parts[1:]):
            raise InvalidInput(f"--set {key}: not a setting name")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise InvalidInput(f"--set {key}: {text!r} is not a YAML value") from None
        _put(overrides, [_camel(p) for p in parts], value, current)
    if steps is not None:
        try:
            weights = [int(w) for w in steps.split(",")]
        except ValueError:
            raise InvalidInput(f"--steps {steps!r}: give canary weights in percent, e.g. 5,25,50") from None
        overrides.setdefault("strategy", {})["steps"] = weights
    return overrides or None


def _put(target: dict[str, Any], path: list[str], value: Any, current: Callable[[], dict[str, Any]]) -> None:
    section, *rest = path
    node = target.setdefault(section, {})
    for depth, part in enumerate(rest[:-1]):
        if part not in node:
            # a nested block is replaced as a whole by the deployment's settings: start from the
            # service's own, so the other keys of the block keep their values
            here: Any = current().get(section, {})
            for name in rest[: depth + 1]:
                here = here.get(name) if isinstance(here, dict) else None
            node[part] = dict(here) if isinstance(here, dict) else {}
        if not isinstance(node[part], dict):
            raise InvalidInput(f"--set {'.'.join(path)}: {part} is not a block of settings")
        node = node[part]
    node[rest[-1]] = value


def _service_settings(seams: Seams, service: str) -> Callable[[], dict[str, Any]]:
    def current() -> dict[str, Any]:
        settings: dict[str, Any] = (
            seams.backend.read_config().service(service).model_dump(mode="json", by_alias=True)
        )
        return settings

    return current


# --------------------------------------------------------------------------- results


def _record_payload(record: DeploymentRecord) -> dict[str, Any]:
    data = record.to_json()
    data.pop("samples", None)
    s = summarize(record)
    data["summary"] = views.summary_payload(s)
    data["exit_code"] = exit_code(record)
    return data


def _finish(args: argparse.Namespace, record: DeploymentRecord, report_dir: str | None = None) -> int:
    paths: list[str] = []
    report_error = None
    if report_dir:
        from rfs_deploy.report import ReportError, write_report

        try:
            paths = [str(p) for p in write_report(record, report_dir)]
        except ReportError as exc:  # checked before the deployment: only a race gets here
            report_error = str(exc)
    payload = _record_payload(record)
    payload["report"] = paths
    if report_error:
        payload["report_error"] = report_error
    status = record.status.value
    if record.status is DeploymentStatus.ROLLED_BACK and record.on_request:
        status += " (on request)"
    paused = record.paused if record.status is DeploymentStatus.IN_PROGRESS else None
    if paused is not None:
        status = payload["status"] = views.PAUSED
    lines = [f"deployment {record.deployment_id}: {status} ({record.service} → {record.version})"]
    if paused is not None:
        where = f"--stack {record.stack} --service {record.service}"
        lines.append(
            f"paused at step {paused['step'] + 1}/{record.total_steps} ({paused['reason']}) by "
            f"{paused['by']}; continue: rfs-deploy promote {where} (roll back: rfs-deploy abort {where})"
        )
    if record.rolled_back_to is not None:
        lines.append(f"restored stack version {record.rolled_back_to}")
    if record.decision:
        lines.append(f"A/B decision: {record.decision}")
    if record.retry_of:
        lines.append(f"retry of deployment {record.retry_of}")
    lines += [f"  {e}" for e in record.errors[-3:]]
    if record.recovery:
        lines.append(f"the stack is NOT back at its checkpoint; to finish: {record.recovery}")
    if paths:
        lines.append(f"report: {paths[1]} (picture: {paths[0]})")
    if report_error:
        lines.append(f"no report: {report_error}")
    emit(args, payload, "\n".join(lines))
    return exit_code(record)


def _mark_requested(seams: Seams, record: DeploymentRecord, asked: bool) -> DeploymentRecord:
    """A restore that was asked for (``abort``, ``rollback``, or ``resume`` finishing an
    interrupted abort) and succeeded: its command succeeded (exit 0), see DeploymentRecord."""
    if record.status is not DeploymentStatus.ROLLED_BACK or record.on_request:
        return record
    if not asked:
        found = journal.latest_deployment(seams.backend.history(), record.service)
        asked = (
            found is not None and found.deployment_id == record.deployment_id and found.status == "aborted"
        )
    if asked:
        record.on_request = True
        if seams.records is not None:
            seams.records.save(record)
    return record


# --------------------------------------------------------------------------- commands


def _check_report(args: argparse.Namespace) -> None:
    """``--report DIR`` usable, checked before anything runs (rfs_deploy.report.check_report_dir)."""
    if getattr(args, "report", None) is not None:
        from rfs_deploy.report import check_report_dir

        check_report_dir(args.report)


def _reach_warning(args: argparse.Namespace, seams: Seams) -> str | None:
    """A warning when the stack file alone shows the driver may not reach the test listener
    (docs/listeners.md). Not in the sandbox, which enforces no security group; not for a program
    of your own without ``rfs-deploy:network``, whose network the driver cannot see."""
    from rfs_deploy.connect import backend_kind

    if backend_kind(args.backend) == "sim":
        return None
    network = seams.backend.read_config().network
    if network is None:
        return None
    from rfs_deploy.infra.reach import idle_listener_reach

    return idle_listener_reach(network)


async def cmd_deploy(args: argparse.Namespace) -> int:
    _check_report(args)
    await _precheck(args, "deploy")
    seams = _seams(args, args.stack, scenario=args.scenario)
    warning = _reach_warning(args, seams)
    if warning is not None:
        print(f"rfs-deploy: warning: {warning}", file=sys.stderr)
    overrides = parse_overrides(args.overrides, args.steps, _service_settings(seams, args.service))
    record = await Driver(seams).deploy(args.service, args.version, args.strategy, overrides, image=args.ami)
    return _finish(args, record, args.report)


async def cmd_plan(args: argparse.Namespace) -> int:
    seams = _seams(args, args.stack, readonly=True)
    overrides = parse_overrides(args.overrides, args.steps, _service_settings(seams, args.service))
    driver = Driver(seams)
    config = seams.backend.read_config()
    image = driver._image(config.service(args.service), args.version, args.ami)
    svc, strategy, release, steps = driver.plan(args.service, args.version, args.strategy, overrides, image)
    lines = describe(steps)
    recorded = config.release[args.service]
    if release.slot(release.live).capacity != recorded.slot(recorded.live).capacity:
        lines.insert(0, fleet_line(svc, recorded))
    payload = {
        "service": args.service,
        "version": args.version,
        "strategy": strategy.model_dump(by_alias=True),
        "overrides": overrides or {},
        "from": release.to_config(),
        "steps": [{"kind": s.kind, "description": s.describe()} for s in steps],
        "instances": svc.instance_count,
    }
    warning = _reach_warning(args, seams)
    if warning is not None:
        payload["warnings"] = [warning]
        lines.append(f"warning: {warning}")
    emit(args, payload, f"{args.service}: {strategy.type} to {args.version}\n" + "\n".join(lines))
    return 0


async def cmd_up(args: argparse.Namespace) -> int:
    seams = _seams(args, args.stack)
    if args.release_from_config:
        from rfs_deploy.config.loading import load_stack_file
        from rfs_deploy.releases import TAKE_ALL_MESSAGE

        path = stack_config_file(args.stack)
        seams.backend.write_release(load_stack_file(path).release)
        result = seams.backend.up(f"{TAKE_ALL_MESSAGE} rfs-deploy up: apply the checkout's release state")
    else:
        # every service keeps its live release state (rfs_deploy.releases)
        result = seams.backend.up("rfs-deploy up: apply the stack's settings")
    emit(
        args, {"version": result.version, "changes": dict(result.changes)}, f"stack version {result.version}"
    )
    return 0


async def cmd_iam_policy(args: argparse.Namespace) -> int:
    """The driver's least-privilege IAM policy (or Pulumi's, ``--for pulumi``) as JSON; no AWS call.
    The policy document itself is the output, with or without --json (it pipes into the AWS CLI)."""
    from rfs_deploy import iam

    if args.principal == "pulumi":
        policy = iam.pulumi_policy()
        emit(args, policy, json.dumps(policy, indent=2), raw=True)
        return 0
    services, region, lookup, scaled = None, "*", False, False
    if args.stack:
        _check_stack_file(args.stack)
        from rfs_deploy.config.loading import load_stack_file, stack_region
        from rfs_deploy.errors import UnknownStack

        path = stack_config_file(args.stack)
        if not path.is_file():
            raise UnknownStack(f"unknown stack {args.stack!r}: no {path.name} in {path.parent}")
        config = load_stack_file(path)
        services = list(config.services)
        lookup = any(service.artifact.lookup_tag for service in config.services.values())
        scaled = any(service.autoscaling is not None for service in config.services.values())
        region = stack_region(path) or "*"
    policy = iam.driver_policy(
        services, region=region, account=args.account, image_lookup=lookup, autoscaling=scaled
    )
    emit(args, policy, json.dumps(policy, indent=2), raw=True)
    return 0


async def cmd_rollback(args: argparse.Namespace) -> int:
    await _precheck(args, "rollback")
    seams = _seams(args, args.stack)
    record = await Driver(seams).rollback(args.service, args.to)
    return _finish(args, _mark_requested(seams, record, asked=True))


async def _precheck(args: argparse.Namespace, verb: str) -> None:
    """In the sandbox a running deployment holds the session (rfs_deploy.sim.session_lock), so a
    second command would wait for all of it: the journal's refusals come first, read from the
    saved state — a deployment of the same service still open, its owner still alive. (On a
    real backend the driver asks the journal itself.)"""
    if getattr(args, "force", False) or backend_kind(args.backend) != "sim":
        return
    from rfs_deploy import statefiles
    from rfs_deploy.sim import session_directory

    session = session_directory(state_dir(), short_stack_name(args.stack))
    if not statefiles.exists(session / "state.json"):
        return  # no session yet: nothing can be open (a link or damage is found when opened)
    seams = open_seams(args.stack, backend="sim", readonly=True)
    try:
        driver = Driver(seams)
        if verb in ("resume", "abort", "promote"):
            driver.refuse_if_owned(args.service, "resume" if verb == "promote" else verb)
        else:
            driver.refuse_if_open(args.service, hint="abort" if verb == "rollback" else "resume")
    finally:
        seams.close()


async def cmd_resume(args: argparse.Namespace) -> int:
    await _precheck(args, "resume")
    seams = _seams(args, args.stack)
    record = await Driver(seams).resume(args.service, force=args.force)
    return _finish(args, _mark_requested(seams, record, asked=False))


async def cmd_promote(args: argparse.Namespace) -> int:
    await _precheck(args, "promote")
    seams = _seams(args, args.stack)
    record = await Driver(seams).promote(args.service, full=args.full, skip_analysis=args.skip_analysis)
    return _finish(args, record)


async def cmd_retry(args: argparse.Namespace) -> int:
    await _precheck(args, "retry")
    seams = _seams(args, args.stack)
    record = await Driver(seams).retry(args.service)
    return _finish(args, record)


async def cmd_abort(args: argparse.Namespace) -> int:
    await _precheck(args, "abort")
    seams = _seams(args, args.stack)
    record = await Driver(seams).abort(args.service, force=args.force)
    return _finish(args, _mark_requested(seams, record, asked=True))


# --------------------------------------------------------------------------- read-only commands


def _read_history(args: argparse.Namespace) -> tuple[list[HistoryEntry], list[DeploymentRecord]]:
    """Stack history and this machine's records (maybe none), opening nothing that writes: a
    sandbox stack without a session has no history (``status`` does not create one), and the
    Pulumi backend is opened without AWS credentials (history needs only the state backend)."""
    _check_stack_file(args.stack)
    kind = backend_kind(args.backend)
    root = project_dir()
    records = RecordStore(state_dir(root) / "deployments" / kind).all(stack=args.stack)
    if kind == "sim":
        from rfs_deploy import statefiles
        from rfs_deploy.sim import session_directory

        short = short_stack_name(args.stack)  # org/project/stack: the session of stack
        if not statefiles.exists(session_directory(state_dir(root), short) / "state.json"):
            return [], records  # (a link or a damaged file is found, and named, when opened)
        # readonly: no wait for the session a running deployment holds, and nothing saved
        seams = open_seams(args.stack, backend="sim", readonly=True)
        _opened.append(seams)
        return seams.backend.history(), records
    from rfs_deploy.drive.pulumi_backend import PulumiBackend

    return PulumiBackend(args.stack, root).history(), records


async def cmd_status(args: argparse.Namespace) -> int:
    if args.watch:
        return await _watch(args)
    history, records = _read_history(args)
    found = views.deployments(history, records, args.stack, args.service)
    if args.deployment_id:
        view = views.find(found, args.deployment_id)
    elif found:
        view = found[0]
    else:
        whose = f" of {args.service}" if args.service else ""
        raise InvalidInput(f"no deployments{whose} on stack {args.stack} (stack history has none)")
    emit(args, view, views.status_line(view))
    return 0


async def cmd_history(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise InvalidInput(f"--limit must be at least 1, not {args.limit}")
    history, records = _read_history(args)
    found = views.deployments(history, records, args.stack, args.service)[: args.limit]
    entries = sorted(history, key=lambda e: e.version, reverse=True)[: args.limit]
    payload = {
        "deployments": [views.brief(v) for v in found],
        "stack_history": [
            {
                "version": e.version,
                "result": e.result,
                "message": e.message,
                "start_time": e.start_time,
                "end_time": e.end_time,
                "deployment_id": tag.deployment_id if (tag := journal.decode(e.message)) else None,
            }
            for e in entries
        ],
    }
    lines = ["deployments:"] + [views.history_line(v) for v in found]
    lines += ["stack history:"] + [f"  {e.version:>4} {e.result:<10} {e.message}" for e in entries]
    emit(args, payload, "\n".join(lines))
    return 0


async def cmd_simulate(args: argparse.Namespace) -> int:
    """The sandbox with defaults: a fresh world, api-service v1.0.0 → v2.0.0 on stack production.

    Every input is checked before the old session is touched: the seed, the scenario, the
    report directory and the plan (the version's image, the strategy) against the stack file.
    A session another command holds, or one with an open deployment, is not replaced (exit 2,
    naming resume, abort and sandbox-reset)."""
    _simulate_preflight(args)
    seams = _seams(
        args,
        SANDBOX_STACK,
        backend="sim",
        scenario=args.scenario,
        seed=args.seed,
        fresh=True,
        engine=args.engine,
        refuse_open=True,
    )
    record = await Driver(seams).deploy(SANDBOX_SERVICE, args.version, args.strategy)
    return _finish(args, record, args.report)


def _simulate_preflight(args: argparse.Namespace) -> None:
    """What ``simulate`` would refuse once it runs, refused before it replaces anything."""
    from rfs_deploy.config.loading import load_stack_file
    from rfs_deploy.connect import DEFAULT_SCENARIO, check_seed
    from rfs_deploy.drive.driver import resolve, with_image
    from rfs_deploy.drive.plans import plan
    from rfs_deploy.sim import load_scenario

    if args.seed is not None:
        check_seed(args.seed)
    _check_report(args)
    load_scenario(args.scenario or DEFAULT_SCENARIO)
    _check_stack_file(SANDBOX_STACK)
    config = load_stack_file(stack_config_file(SANDBOX_STACK))
    svc, strategy = resolve(config.service(SANDBOX_SERVICE), args.strategy)
    if not svc.artifact.has_image(args.version) and svc.artifact.lookup_tag is not None:
        svc = with_image(svc, args.version, "ami-00000000")  # found by tag in the fresh sandbox
    plan(svc, strategy, config.release[SANDBOX_SERVICE], args.version)


async def cmd_sandbox_reset(args: argparse.Namespace) -> int:
    """Delete the sandbox's sessions (``.rfs-deploy/sandbox``, ``.rfs-deploy/engine``) and its
    deployment records (``.rfs-deploy/deployments/sim``), of one stack or all; nothing else."""
    from rfs_deploy.errors import DamagedState
    from rfs_deploy.sim.session_lock import SessionLock

    base = state_dir()
    removed: list[Path] = []
    kept: list[str] = []
    if args.stack:
        stack = short_stack_name(args.stack)
        if stack != args.stack:
            raise InvalidInput(f"--stack {args.stack!r}: not a sandbox stack name (give the short name)")
        targets = [base / "sandbox" / stack, base / "engine" / stack]
        sessions = [(directory, stack) for directory in targets if directory.is_dir()]
    else:
        targets = [base / "sandbox", base / "engine"]
        sessions = [
            (directory, directory.name)
            for kind in targets
            if kind.is_dir() and not kind.is_symlink()
            for directory in sorted(kind.iterdir())
            if directory.is_dir() and not directory.is_symlink()
        ]
    # a command running on a stack keeps its session (sandbox or engine): it would go on with
    # a world it lost
    holds: list[SessionLock] = []
    try:
        for directory, name in sessions:
            hold = SessionLock(directory, name)
            try:
                hold.acquire(0)
            except StackBusy:
                raise StackBusy(
                    f"the sandbox session of stack {name!r} is in use by {hold.holder()}; wait for it "
                    f"to end (or stop it), then run `rfs-deploy sandbox-reset` again"
                ) from None
            holds.append(hold)
        for target in targets:
            if _remove(target):
                removed.append(target)
    finally:
        for hold in holds:
            hold.release()
    store = RecordStore(base / "deployments" / "sim")
    if args.stack:
        for path in store._files():
            try:
                record = store._read(path)
            except DamagedState:
                kept.append(f"kept {path}: damaged, so not known to be of stack {args.stack}")
                continue
            if record.stack == args.stack:
                path.unlink(missing_ok=True)
                removed.append(path)
    elif _remove(store.directory):
        removed.append(store.directory)
    what = f"the sandbox of stack {args.stack}" if args.stack else "the sandbox"
    text = "\n".join(f"removed {p}" for p in removed) if removed else f"nothing to remove: {what} is empty"
    emit(
        args,
        {"stack": args.stack, "removed": [str(p) for p in removed], "kept": kept},
        "\n".join([text, *kept]),
    )
    return 0


def _remove(target: Path) -> bool:
    """Delete ``target`` (a tree); a link there is removed itself, never followed."""
    import shutil

    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink()
        return True
    if target.exists():
        shutil.rmtree(target)
        return True
    return False


# --------------------------------------------------------------------------- pause, wait, watch

#: Statuses a watched deployment ends in (``PAUSED`` too: the job that runs it has ended).
_ENDED = frozenset({"COMPLETED", "ROLLED_BACK", "FAILED", views.PAUSED})


class _Poller:
    """Where a deployment stands, read again and again from another process than the one
    running it: stack history (the sandbox's saved session file, or ``pulumi stack history``)
    and this machine's records. Nothing is opened that writes or waits for a lock."""

    def __init__(self, args: argparse.Namespace) -> None:
        _check_stack_file(args.stack)
        self.args = args
        self.kind = backend_kind(args.backend)
        root = project_dir()
        self.records = RecordStore(state_dir(root) / "deployments" / self.kind)
        if self.kind == "sim":
            from rfs_deploy.sim import session_directory

            self.session = session_directory(state_dir(root), short_stack_name(args.stack))
        else:
            from rfs_deploy.drive.pulumi_backend import PulumiBackend

            self.pulumi = PulumiBackend(args.stack, root)

    def history(self) -> list[HistoryEntry]:
        if self.kind == "sim":
            from rfs_deploy.sim.sandbox import read_saved_history

            return read_saved_history(self.session)
        return self.pulumi.history()

    def views(self) -> list[dict[str, Any]]:
        history = self.history()
        return views.deployments(
            history, self.records.all(stack=self.args.stack), self.args.stack, self.args.service
        )

    def view(self, deployment_id: str | None = None) -> dict[str, Any] | None:
        found = self.views()
        if deployment_id is not None:
            return views.find(found, deployment_id)
        return found[0] if found else None


class _Stop:
    """Ctrl-C (SIGINT) ends a watch, a wait or a pause's wait: the flag is set, the loop ends
    with exit 130 and one line; the deployment, run by another process, is not touched."""

    def __init__(self) -> None:
        import asyncio

        self.event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._installed = False

    def __enter__(self) -> _Stop:
        import contextlib
        import signal

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            self._loop.add_signal_handler(signal.SIGINT, self.event.set)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._installed:
            self._loop.remove_signal_handler(signal.SIGINT)

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; True when Ctrl-C came meanwhile."""
        import asyncio

        try:
            await asyncio.wait_for(self.event.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True


def _interrupted(args: argparse.Namespace, what: str, view: dict[str, Any] | None, then: str = "") -> int:
    from rfs_deploy.cli import EXIT_INTERRUPTED, _say

    where = f" (deployment {view['deployment_id']} {view['status']})" if view else ""
    then = then or "the deployment itself goes on unaffected"
    _say(f"rfs-deploy: {what} stopped (SIGINT){where}; {then}")
    if args.json:
        emit(args, {"interrupted": True, "deployment": view and views.brief(view)}, "")
    return EXIT_INTERRUPTED


def _ended(view: dict[str, Any]) -> bool:
    return view["status"] in _ENDED


def _code(view: dict[str, Any]) -> int:
    code = view.get("deployment_exit_code")
    return 4 if code is None else int(code)


def _where(view: dict[str, Any]) -> str:
    step = f"step {view['step']}/{view['total_steps']}" if view["step"] and view["total_steps"] else ""
    return (
        f"deployment {view['deployment_id']} of {view['service']} ({view['version']}): {view['status']}"
        + (f" at {step}" if step else "")
    )


async def cmd_pause(args: argparse.Namespace) -> int:
    """Ask the driver running the service's deployment to hold at its current weight (one stack
    update that changes nothing, see docs/gates.md), then wait until it holds (exit 0), ends
    first (exit 2) or ``--timeout`` passes (exit 6)."""
    with _Stop() as stop:
        return await _pausing(args, stop)


async def _pausing(args: argparse.Namespace, stop: _Stop) -> int:
    from rfs_deploy.cli import EXIT_TIMEOUT

    if backend_kind(args.backend) == "sim":
        from rfs_deploy import statefiles
        from rfs_deploy.sim import session_directory
        from rfs_deploy.sim.backend import REQUESTS_FILE, post_request

        session = session_directory(state_dir(), short_stack_name(args.stack))
        if not statefiles.exists(session / "state.json"):
            raise InvalidInput(
                f"no deployments on stack {args.stack} (stack history has none); nothing to pause"
            )
        # the running deployment holds the session: read it, and post the request to its holder
        seams = open_seams(args.stack, backend="sim", readonly=True)
        _opened.append(seams)
        found, message = Driver(seams).request_message(args.service)
        post_request(session / REQUESTS_FILE, message)
    else:
        seams = _seams(args, args.stack)
        driver = Driver(seams)
        found, message = driver.request_message(args.service)
        await driver.post_request(message)
    poller = _Poller(args)
    import time

    began = time.monotonic()
    view = None
    while True:
        view = poller.view(found.deployment_id)
        if view is not None and _ended(view):
            break
        if time.monotonic() - began >= args.timeout:
            text = (
                f"pause requested, but {_where(view or {})} has not held after {args.timeout}s; it holds "
                f"at its next safe point (follow it: rfs-deploy wait --stack {args.stack} --service "
                f"{found.service})"
                if view
                else f"pause requested for deployment {found.deployment_id}; it has not held yet"
            )
            emit(args, {"requested": True, "held": False, "deployment": view and views.brief(view)}, text)
            return EXIT_TIMEOUT
        if await stop.sleep(args.interval):
            stands = "the pause request stands: the driver holds at its next safe point"
            return _interrupted(args, "waiting for the pause", view, stands)
    assert view is not None
    if view["status"] != views.PAUSED:
        # its last step raced the request: the request is void, nothing holds
        ended = view["status"].lower().replace("_", " ")
        raise InvalidInput(
            f"deployment {found.deployment_id} of {found.service} ({found.version}) already {ended} "
            "before it could pause; nothing is held"
        )
    pause = view["paused"] or {}
    where = f"--stack {args.stack} --service {found.service}"
    text = (
        f"deployment {found.deployment_id}: PAUSED at step {pause.get('step')}/{view['total_steps']} by "
        f"{pause.get('by')}; continue: rfs-deploy promote {where} (roll back: rfs-deploy abort {where})"
    )
    emit(args, {"requested": True, "held": True, "deployment": views.brief(view)}, text)
    return 0


async def cmd_wait(args: argparse.Namespace) -> int:
    """Block until the service's latest deployment completes, rolls back, fails or pauses; its
    exit code (0/3/4/5), 6 on ``--timeout``; a deployment that already ended is reported at once,
    and none at all is exit 2."""
    with _Stop() as stop:
        return await _waiting(args, stop)


async def _waiting(args: argparse.Namespace, stop: _Stop) -> int:
    import time

    from rfs_deploy.cli import EXIT_TIMEOUT

    poller = _Poller(args)
    view = poller.view()
    if view is None:
        whose = f" of {args.service}" if args.service else ""
        raise InvalidInput(
            f"no deployments{whose} on stack {args.stack} (stack history has none); nothing to wait for"
        )
    began = time.monotonic()
    while not _ended(view):
        if args.timeout is not None and time.monotonic() - began >= args.timeout:
            payload = {**views.brief(view), "timed_out": True, "waited": round(time.monotonic() - began)}
            emit(args, payload, f"timed out after {args.timeout}s: {_where(view)} (still running)")
            return EXIT_TIMEOUT
        if await stop.sleep(args.interval):
            return _interrupted(args, "wait", view)
        view = poller.view(view["deployment_id"])
        assert view is not None
    payload = {**views.brief(view), "timed_out": False, "waited": round(time.monotonic() - began)}
    emit(args, payload, views.status_line(view))
    return _code(view)


async def _watch(args: argparse.Namespace) -> int:
    """``status --watch``: print what happens to the deployment as it happens (see docs/gates.md)."""
    with _Stop() as stop:  # from the start: a Ctrl-C during the first read ends the watch too
        return await _watching(args, stop)


async def _watching(args: argparse.Namespace, stop: _Stop) -> int:
    from rfs_deploy.cli import _out, iso, isoformat_times

    poller = _Poller(args)
    view = poller.view(args.deployment_id)
    if view is None:
        whose = f" of {args.service}" if args.service else ""
        raise InvalidInput(f"no deployments{whose} on stack {args.stack} (stack history has none)")
    seen: _Seen = _Seen()
    out = _out.stdout

    def say(event: dict[str, Any], text: str) -> None:
        if args.json:
            out.write(json.dumps(isoformat_times(event), default=str) + "\n")
        else:
            at = iso(event.get("at"))
            out.write(f"[{at}] {text}\n" if at else f"{text}\n")
        out.flush()

    history_of = view["deployment_id"]
    first = {
        "event": "watching",
        "deployment_id": history_of,
        "service": view["service"],
        "from_version": view["from_version"],
        "version": view["version"],
        "strategy": view["strategy"],
        "stack": args.stack,
    }
    say(
        first,
        f"watching deployment {history_of} of {view['service']} "
        f"({view['from_version'] or '?'} → {view['version']}, {view['strategy']}) on stack {args.stack}",
    )
    while True:
        for event, text in seen.news(view, poller.history()):
            say(event, text)
        if _ended(view):
            break
        if await stop.sleep(args.interval):
            return _interrupted(args, "watch", view)
        view = poller.view(history_of)
        assert view is not None
    code = _code(view)
    end = {
        "event": "end",
        "deployment_id": history_of,
        "status": view["status"],
        "exit_code": code,
        "paused": view.get("paused"),
    }
    say(end, f"{views.status_line(view)} (exit {code})")
    return code


class _Seen:
    """What a watch printed already, to print only what is new at each poll."""

    def __init__(self) -> None:
        self.updates: dict[int, str] = {}
        self.steps: dict[int, str] = {}
        self.verdicts = 0
        self.status: str | None = None
        self.requested: int | None = None

    def news(self, view: dict[str, Any], history: list[HistoryEntry]) -> list[tuple[dict[str, Any], str]]:
        out: list[tuple[dict[str, Any], str]] = []
        dep = view["deployment_id"]
        for entry in sorted(history, key=lambda e: e.version):
            parsed = journal.parse(entry.message)
            if parsed is None or parsed[0].deployment_id != dep:
                continue
            tag, text = parsed
            if self.updates.get(entry.version) == entry.result or tag.pause_request:
                continue
            self.updates[entry.version] = entry.result
            state = (entry.release or {}).get(view["service"])
            weights = dict(state.weights) if state is not None else None
            event = {
                "event": "update",
                "at": entry.end_time or entry.start_time,
                "stack_version": entry.version,
                "result": entry.result,
                "phase": tag.phase,
                "kind": tag.kind,
                "step": tag.step + 1,
                "total_steps": tag.total,
                "text": text,
                "weights": weights,
            }
            shown = (
                " weights " + " / ".join(f"{slot} {w} %" for slot, w in weights.items())
                if weights and entry.result == "succeeded"
                else ""
            )
            out.append((event, f"stack version {entry.version} {entry.result}: {text};{shown}".rstrip(";")))
        for step in view.get("steps") or []:
            key = step["outcome"]
            if self.steps.get(step["index"]) == key:
                continue
            self.steps[step["index"]] = key
            number = f"{step['index'] + 1}/{view['total_steps']}"
            event = {"event": "step", **step, "step": step["index"] + 1, "total_steps": view["total_steps"]}
            event["at"] = step["ended_at"] if key != "running" else step["started_at"]
            if key == "running":
                out.append((event, f"step {number} started: {step['description']}"))
            else:
                out.append((event, f"step {number} {key}: {step['description']}: {step['reason']}"))
        for verdict in (view.get("verdicts") or [])[self.verdicts :]:
            got = verdict["numbers"]
            numbers = ", ".join(f"{k} {_number(got[k])}" for k in _SHOWN if got.get(k) is not None)
            out.append(
                (
                    {"event": "verdict", **verdict, "step": verdict["step"] + 1},
                    f"verdict at step {verdict['step'] + 1}: {verdict['outcome']} "
                    f"({verdict['reason']}); {numbers}",
                )
            )
        self.verdicts = len(view.get("verdicts") or [])
        asked = view.get("pause_requested")
        if asked and asked["version"] != self.requested:
            self.requested = asked["version"]
            out.append(({"event": "pause-requested", **asked}, f"pause requested by {asked['by']}"))
        if view["status"] != self.status:
            self.status = view["status"]
            event = {"event": "status", "at": None, "status": view["status"], "step": view["step"]}
            out.append((event, f"status {view['status']} ({view['progress']}%)"))
        # in the order they happened; a status change (no time of its own) after what led to it
        out.sort(key=lambda item: item[0]["at"] if item[0].get("at") is not None else float("inf"))
        return out


#: The verdict numbers a text watch prints (``--json`` has every number).
_SHOWN = (
    "requests",
    "errors",
    "error_rate",
    "p99",
    "cpu",
    "baseline_error_rate",
    "baseline_p99",
    "p_value",
    "alarm",
    "metric",
    "threshold",
)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
