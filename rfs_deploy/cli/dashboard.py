"""``rfs-deploy dashboard``: serve the stack's deployments as a local web page (docs/dashboard.md).

The page shows what ``status`` and ``history`` show (the same views, :mod:`rfs_deploy.cli.views`,
from the same read of stack history and this machine's records), plus each deployment's traffic
split from its newest journal checkpoint and the traffic samples of its local record. Its buttons
run ``rfs-deploy promote|pause|abort --stack S --service X`` as child processes with this
process's interpreter, backend, environment and working directory: exactly the commands.

A blocking server, run outside the event loop the other commands use, so Ctrl-C stops it at
once (exit 130) and SIGTERM too (exit 143).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from rfs_deploy.cli import commands, views
from rfs_deploy.connect import backend_kind, project_dir, short_stack_name, stack_config_file, state_dir
from rfs_deploy.errors import InvalidInput

#: Deployments the page lists (newest first).
LIMIT = 50
#: Traffic samples per deployment for the timeline (the newest).
SAMPLES = 500
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def cmd_dashboard(args: argparse.Namespace) -> int:
    from rfs_deploy.dashboard.server import Dashboard, loopback

    if not loopback(args.host):
        raise InvalidInput(
            f"--host {args.host}: the dashboard listens on a loopback address only "
            "(127.0.0.1, ::1 or localhost); reach it from elsewhere through an SSH tunnel"
        )
    if not 0 <= args.port <= 65535:
        raise InvalidInput(f"--port {args.port}: give a port from 1 to 65535 (0: a free one)")
    short = short_stack_name(args.stack)
    path = stack_config_file(short)
    if not path.is_file():
        raise InvalidInput(f"stack {args.stack}: the project has no stack file {path.name}")
    read = state_reader(args)
    read()  # a stack whose history cannot be read is one error line now, not a page of errors
    try:
        server = Dashboard((args.host, args.port), args.stack, read, action_argv(args))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InvalidInput(f"--port {args.port}: the port is in use on {args.host}") from None
        raise InvalidInput(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    stopped: list[int] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        stopped.append(EXIT_SIGTERM)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        _announce(args, server.url)
        if not args.no_open:
            threading.Thread(target=_open_browser, args=(server.url,), daemon=True).start()
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        running = server.actions.running()
        still = f"; {', '.join(a.action for a in running)} still running carries on" if running else ""
        _say(f"dashboard: stopped{still}")
        return stopped[0] if stopped else EXIT_SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    return 0  # serve_forever returns only when shut down from another thread


def state_reader(args: argparse.Namespace) -> Callable[[], dict[str, Any]]:
    """What the page polls: the stack's deployments as ``status --json`` shows each one, with
    ``weights`` and ``samples`` added."""
    where = argparse.Namespace(stack=args.stack, backend=args.backend)
    last: list[tuple[object, dict[str, Any]]] = []

    def read() -> dict[str, Any]:
        seen = _fingerprint(args)
        if seen is not None and last and last[0][0] == seen:
            return last[0][1]
        state = _read()
        last[:] = [(seen, state)]
        return state

    def _read() -> dict[str, Any]:
        try:
            history, records = commands._read_history(where)
        finally:
            commands.close_all()  # the read-only sandbox session: nothing is saved
        found = views.deployments(history, records, args.stack)[:LIMIT]
        journal = {j.deployment_id: j for j, _ in views.journal_deployments(history)}
        by_id = {r.deployment_id: r for r in records}
        for view in found:
            view["weights"] = _weights(journal.get(view["deployment_id"]), view)
            record = by_id.get(view["deployment_id"])
            view["samples"] = (
                [{"at": s.at, "weight": s.weights.get(s.new_slot, 0)} for s in record.samples[-SAMPLES:]]
                if record is not None
                else []
            )
        return {"deployments": found}

    return read


def _fingerprint(args: argparse.Namespace) -> tuple[tuple[str, int, int], ...] | None:
    """The sandbox's session and record files as they stand (opening the sandbox takes seconds,
    so it is read again only when one changed); None for Pulumi, whose history is read each time."""
    from rfs_deploy.sim import session_directory

    if backend_kind(args.backend) != "sim":
        return None
    root = state_dir(project_dir())
    files = [
        session_directory(root, short_stack_name(args.stack)) / "state.json",
        *sorted((root / "deployments" / "sim").glob("*.json")),
    ]
    seen = []
    for path in files:
        with contextlib.suppress(OSError):
            stat = path.stat()
            seen.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(seen)


def _weights(found: Any, view: dict[str, Any]) -> dict[str, Any] | None:
    """The traffic split where the deployment last stood for sure (its newest succeeded update),
    and the slot the released version runs on."""
    if found is None or found.progress is None:
        return None
    try:
        state = found.progress.release_for(view["service"])
    except Exception:  # a checkpoint without this service's state: nothing to show
        return None
    slots = sorted(state.weights, key=lambda slot: slot == state.live)  # the idle slot first
    new_slot = next((slot for slot in slots if state.slot(slot).version == view["version"]), None)
    return {**state.weights, "live": state.live, "new_slot": new_slot}


def action_argv(args: argparse.Namespace) -> Callable[[str, str], list[str]]:
    """The command a button runs: this interpreter's ``rfs-deploy`` with the dashboard's backend."""
    backend = ["--backend", args.backend] if args.backend else []

    def argv(action: str, service: str) -> list[str]:
        where = ["--stack", args.stack, "--service", service]
        return [sys.executable, "-m", "rfs_deploy", *backend, action, *where]

    return argv


def _announce(args: argparse.Namespace, url: str) -> None:
    """The one line that holds the token (``--json``: the one document)."""
    line = json.dumps({"dashboard": url, "stack": args.stack}) if args.json else f"dashboard: {url}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if not args.quiet:
        _say(f"dashboard: serving stack {args.stack}; Ctrl-C stops it")


def _open_browser(url: str) -> None:
    import webbrowser

    with contextlib.suppress(Exception):
        webbrowser.open(url)


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)
