"""``rfs-deploy``: the command line (see docs/cli.md for the contract pipelines rely on).

Exit codes:

===  =======================================================================================
0    completed; also a requested ``abort`` or ``rollback`` that restored its checkpoint
2    invalid input or a refused precondition (one error line; nothing was changed)
3    rolled back by the judge: the release failed its analysis, the stack is back at its checkpoint
4    failed and not safely rolled back (the message names the command that finishes the job),
     or an internal error (one line; ``--debug`` shows the traceback)
5    paused at a gate: the deployment holds, open, until ``promote`` (or ``abort``); see
     docs/gates.md
6    ``wait`` (or ``pause``) timed out: the deployment is still running (see docs/gates.md)
130  interrupted (run ``resume`` or ``abort``); a stack-changing command cancelled by SIGINT
143  a stack-changing command cancelled by SIGTERM (see docs/cancellation.md)
141  stdout was closed by the reader (``rfs-deploy history ... | head -1``): 128 + SIGPIPE
===  =======================================================================================

Global flags (``--json``, ``--quiet``, ``--debug``, ``--backend``) go before or after the
subcommand. With ``--json`` stdout carries exactly one JSON document whatever the outcome (usage
errors included) and progress stays on stderr; times in it are ISO-8601 UTC strings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from rfs_deploy.config.secrets import redact
from rfs_deploy.config.strategies import STRATEGY_NAMES
from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.errors import InvalidInput, RfsDeployError

EXIT_CODES = {DeploymentStatus.COMPLETED: 0, DeploymentStatus.ROLLED_BACK: 3, DeploymentStatus.FAILED: 4}
#: A requested abort or rollback that restored the checkpoint.
EXIT_RESTORED_ON_REQUEST = 0
EXIT_USAGE = 2
EXIT_INTERNAL = 4
#: Held at a gate until ``rfs-deploy promote`` (docs/gates.md): the job ends, the deployment stays open.
EXIT_PAUSED = 5
#: ``wait --timeout`` (or ``pause --timeout``) ran out while the deployment still runs.
EXIT_TIMEOUT = 6
EXIT_INTERRUPTED = 130
#: 128 + SIGPIPE, what a shell reports for a writer whose reader went away.
EXIT_BROKEN_PIPE = 141
SANDBOX_STACK = "production"
SANDBOX_SERVICE = "api-service"
#: ``--strategy`` choices: every registered strategy.
STRATEGIES = STRATEGY_NAMES
#: Keys whose numeric values are times (seconds since the epoch) in records and history.
TIME_KEYS = frozenset({"at", "started_at", "ended_at", "start_time", "end_time", "since", "deadline"})


class _Output:
    """Where this invocation's output goes: one JSON document (``--json``) or text lines."""

    def __init__(self, json_mode: bool, stdout: TextIO) -> None:
        self.json = json_mode
        self.stdout = stdout
        self.document: dict[str, Any] | None = None
        self.raw = False
        self.printed = False

    def print_document(self, document: dict[str, Any], raw: bool = False) -> None:
        if self.printed:
            return  # one document per invocation, whatever happens after the first
        self.printed = True
        data = document if raw else isoformat_times(document)
        self.stdout.write(json.dumps(data, indent=1, default=str) + "\n")
        self.stdout.flush()


_out = _Output(False, sys.stdout)


def _wants_json(argv: Sequence[str]) -> bool:
    """``--json`` anywhere before a ``--`` (needed before parsing: usage errors are JSON too)."""
    for token in argv:
        if token == "--":
            return False
        if token == "--json":
            return True
    return False


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line and exit 2 (no usage dump); with
    ``--json`` also as the one JSON document on stdout."""

    def error(self, message: str) -> NoReturn:
        line = f"{message} (see --help)"
        if _out.json:
            _out.print_document({"error": line, "error_type": "usage", "exit_code": EXIT_USAGE})
        _say(f"rfs-deploy: error: {line}")
        raise SystemExit(EXIT_USAGE)


def package_version() -> str:
    """The installed distribution's version; the package's own when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("rfs-deploy")
    except metadata.PackageNotFoundError:
        import rfs_deploy

        return str(getattr(rfs_deploy, "__version__", "unknown"))


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        version = package_version()
        if _out.json:
            _out.print_document({"version": version, "exit_code": 0})
        else:
            _out.stdout.write(f"rfs-deploy {version}\n")
            _out.stdout.flush()
        raise SystemExit(0)


def release_version(text: str) -> str:
    """argparse type of every ``--version VERSION``: the release version pattern of the config
    model (rfs_deploy.config.model.VERSION_PATTERN), so a bad version is a usage error."""
    from rfs_deploy.config.model import check_version

    try:
        return check_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ami_id(text: str) -> str:
    """argparse type of ``--ami``: ``ami-`` and 8 or 17 hex digits."""
    from rfs_deploy.config.model import check_ami

    try:
        return check_ami(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _global_flags(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The flags every subcommand takes, before or after it. On the subcommands they default to
    SUPPRESS, so a flag given before the subcommand is not reset by the subparser's default."""

    def d(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--backend",
        choices=("sim", "pulumi"),
        default=d(None),
        help="sandbox or Pulumi+AWS (env RFS_DEPLOY_BACKEND)",
    )
    parser.add_argument(
        "--json", action="store_true", default=d(False), help="print one JSON document on stdout"
    )
    parser.add_argument("--quiet", action="store_true", default=d(False), help="no progress lines")
    parser.add_argument("--debug", action="store_true", default=d(False), help="show tracebacks")
    parser.add_argument(
        "--project",
        metavar="DIR",
        default=d(None),
        help="the Pulumi project (a directory with Pulumi.yaml); default: here or above (RFS_DEPLOY_PROJECT)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="rfs-deploy",
        description="Progressive delivery for AWS: blue-green, canary, rolling, A/B.",
        allow_abbrev=False,
    )
    p.add_argument("--version", action=_VersionAction, help="print the version and exit")
    _global_flags(p, defaults=True)
    common = _Parser(add_help=False, allow_abbrev=False)
    _global_flags(common, defaults=False)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=text, description=text, parents=[common], allow_abbrev=False
        )
        return parser

    def stack_args(sp: argparse.ArgumentParser, service: bool = True, required: bool = True) -> None:
        sp.add_argument(
            "--stack", required=True, type=stack_name, help="stack (environment), e.g. production"
        )
        if service:
            sp.add_argument("--service", required=required, help="service name in the stack")

    from rfs_deploy.cli.signals import add_arguments as cancel_args  # --on-cancel, --cancel-grace

    def override_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a setting for this deployment only, e.g. analysis.maxErrorRate=0.02 "
            "(sections strategy, analysis, deploy, validation; repeatable)",
        )
        sp.add_argument(
            "--steps", metavar="W1,W2,...", help="canary traffic weights in percent, e.g. 5,25,50"
        )
        sp.add_argument(
            "--ami",
            metavar="AMI_ID",
            type=ami_id,
            help="the version's machine image, for a version the stack file names no AMI for "
            "(kept in the release state; without it, artifact.lookupTag finds one by tag)",
        )

    d = command("deploy", "release a version with a strategy")
    stack_args(d)
    d.add_argument("--version", required=True, type=release_version, help="version to release, e.g. v2.0.0")
    d.add_argument("--strategy", choices=STRATEGIES, help="default: the service's")
    override_args(d)
    d.add_argument("--scenario", help="sandbox scenario (env RFS_DEPLOY_SCENARIO)")
    d.add_argument("--report", metavar="DIR", help="write the timeline report (PNG and HTML) into DIR")
    cancel_args(d)

    pl = command("plan", "print the steps a deployment would run; changes nothing")
    stack_args(pl)
    pl.add_argument("--version", required=True, type=release_version)
    pl.add_argument("--strategy", choices=STRATEGIES)
    override_args(pl)

    up = command("up", "run one stack update with the stack's settings (keeps the live release state)")
    stack_args(up, service=False)
    up.add_argument(
        "--release-from-config",
        action="store_true",
        help="apply the release state of the checkout's stack file as it is, for every service "
        "(the first update of a stack does anyway)",
    )

    iam = command("iam-policy", "print the least-privilege IAM policy the driver needs")
    iam.add_argument(
        "--stack", type=stack_name, help="scope alarms and Auto Scaling groups to this stack's services"
    )
    iam.add_argument("--account", default="*", help="AWS account id for the ARNs (default *)")
    iam.add_argument("--for", dest="principal", choices=("driver", "pulumi"), default="driver")
    iam.set_defaults(command="iam_policy")  # the handler is cmd_iam_policy

    rb = command("rollback", "restore a service to an earlier stack history version")
    stack_args(rb)
    rb.add_argument(
        "--to", type=int, metavar="VERSION", help="history version (default: before the last deployment)"
    )

    for name, text in (
        ("resume", "continue an interrupted deployment"),
        ("abort", "roll an open deployment back"),
    ):
        sp = command(name, text)
        stack_args(sp, required=False)
        sp.add_argument(
            "--force",
            action="store_true",
            help="even while the journal says the deployment's owner may still run it (only when "
            "its machine is known to be gone)",
        )
        if name == "resume":
            cancel_args(sp)

    pr = command("promote", "continue a deployment paused at a gate (from any machine)")
    stack_args(pr, required=False)
    pr.add_argument(
        "--full",
        action="store_true",
        help="skip the remaining weight steps and gates: straight to 100 %% (its analysis still runs)",
    )
    pr.add_argument(
        "--skip-analysis",
        action="store_true",
        help="with --full: skip the analyses after the switch to 100 %% too",
    )
    cancel_args(pr)

    rt = command("retry", "run a rolled-back or failed deployment again from the start")
    stack_args(rt)
    cancel_args(rt)

    pa = command("pause", "hold a running deployment at its current weight (from any machine)")
    stack_args(pa, required=False)
    pa.add_argument(
        "--timeout",
        type=duration,
        default=600,
        metavar="D",
        help="how long to wait for the driver to hold (90, 90s, 5m, 1h; default 10m)",
    )
    pa.add_argument("--interval", type=duration, default=2, metavar="D", help="poll interval (default 2s)")

    wa = command("wait", "block until a deployment completes, rolls back, fails or pauses")
    stack_args(wa, required=False)
    wa.add_argument(
        "--timeout", type=duration, metavar="D", help="give up after D (90, 90s, 5m, 1h; default: never)"
    )
    wa.add_argument("--interval", type=duration, default=2, metavar="D", help="poll interval (default 2s)")

    st = command("status", "a deployment's status and progress (from stack history)")
    stack_args(st, required=False)
    st.add_argument("deployment_id", nargs="?", help="default: the newest")
    st.add_argument(
        "--watch", action="store_true", help="follow the deployment live until it ends (exit: its code)"
    )
    st.add_argument(
        "--interval", type=duration, default=2, metavar="D", help="--watch poll interval (default 2s)"
    )

    hi = command("history", "deployments and the stack history journal")
    stack_args(hi, required=False)
    hi.add_argument("--limit", type=int, default=10)

    si = command("simulate", "a full deployment in the local sandbox (no AWS account needed)")
    si.add_argument(
        "--scenario", default=None, help="healthy, error-spike, latency-regression, slow-start, ..."
    )
    si.add_argument("--strategy", choices=STRATEGIES, default="canary")
    si.add_argument("--version", default="v2.0.0", type=release_version)
    si.add_argument("--seed", type=int, default=None)
    si.add_argument(
        "--engine",
        choices=("sim", "pulumi"),
        default="sim",
        help="stack updates under Pulumi's mock runtime (sim) or the real engine from `make engine` (pulumi)",
    )
    si.add_argument(
        "--report", metavar="DIR", default="out", help="where the timeline report goes (default out/)"
    )

    db = command("dashboard", "a local web page of the stack's deployments, with promote / pause / abort")
    stack_args(db, service=False)
    db.add_argument("--port", type=int, default=0, help="port on the host (default: a free one)")
    db.add_argument("--host", default="127.0.0.1", help="a loopback address only (default 127.0.0.1)")
    db.add_argument("--no-open", action="store_true", help="print the URL only; do not open a browser")

    rs = command(
        "sandbox-reset", "delete the local sandbox: its sessions and its deployment records (no AWS)"
    )
    rs.add_argument("--stack", type=stack_name, help="only this stack's sandbox (default: every stack)")
    rs.set_defaults(command="sandbox_reset")
    return p


def duration(text: str) -> int:
    """argparse type of ``--timeout`` and ``--interval``: a duration as the config takes it
    (``90``, ``90s``, ``5m``, ``1h``), at least one second."""
    from rfs_deploy.config.base import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not isinstance(seconds, int) or seconds < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration of at least 1 second")
    return seconds


def stack_name(text: str) -> str:
    """argparse type of every ``--stack``: a stack name (rfs_deploy.connect.STACK_NAME), so a
    path-like or overlong name is a usage error before it reaches a path."""
    from rfs_deploy.connect import check_stack_name

    try:
        return check_stack_name(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    global _out
    argv = list(sys.argv[1:] if argv is None else argv)
    _out = _Output(_wants_json(argv), sys.stdout)
    try:
        args = build_parser().parse_args(argv)
        try:
            code = _run(args)
        except RfsDeployError as exc:
            _fail(args, str(exc), exc.exit_code, exc)
        except KeyboardInterrupt:
            _fail(args, "interrupted; run `rfs-deploy resume` or `rfs-deploy abort` for the stack", 130, None)
        except BrokenPipeError:
            raise
        except Exception as exc:
            _unexpected(args, exc)
        if _out.document is not None:
            if not _out.raw:
                _out.document.setdefault("exit_code", code)
            _out.print_document(_out.document, raw=_out.raw)
        return code
    except BrokenPipeError:
        _stdout_gone()
        raise SystemExit(EXIT_BROKEN_PIPE) from None


def _run(args: argparse.Namespace) -> int:
    """The subcommand; with ``--json`` stray prints go to stderr so stdout holds one document."""
    if getattr(args, "project", None):
        from rfs_deploy.connect import PROJECT_ENV, check_project

        # through the environment, so the processes a command starts (hooks, the dashboard's
        # buttons, the Pulumi CLI's program) work on the same project
        os.environ[PROJECT_ENV] = str(check_project(args.project))
    if args.command == "dashboard":  # a blocking server outside the event loop: Ctrl-C stops it
        from rfs_deploy.cli.dashboard import cmd_dashboard

        return cmd_dashboard(args)
    if not args.json:
        return asyncio.run(_dispatch(args))
    with contextlib.redirect_stdout(sys.stderr):
        return asyncio.run(_dispatch(args))


def _stdout_gone() -> None:
    """The reader closed stdout: point it at /dev/null so the interpreter's final flush cannot
    fail again (the way the Python docs recommend for SIGPIPE), and say nothing."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _say(line: str) -> None:
    """One line on stderr; a closed stderr is not worth a traceback."""
    with contextlib.suppress(OSError, ValueError):
        print(redact(line), file=sys.stderr, flush=True)


def _fail(
    args: argparse.Namespace, message: str, code: int, exc: BaseException | None, kind: str | None = None
) -> NoReturn:
    """One error line on stderr (and the JSON document with --json), then exit ``code``.
    ``error_type`` in the document: ``kind``, else the exception's class name."""
    if args.debug and exc is not None:
        import traceback

        traceback.print_exception(exc)
    if args.json:
        if kind is None:
            kind = "interrupted" if code == EXIT_INTERRUPTED else type(exc).__name__ if exc else "error"
        _out.print_document({"error": redact(message), "error_type": kind, "exit_code": code})
    _say(f"rfs-deploy: error: {message}")
    raise SystemExit(code)


#: Modules only an optional part needs (pyproject.toml's extras): (what needs it, the extra).
OPTIONAL_MODULES = {
    "moto": ("the local sandbox", "sandbox"),
    "numpy": ("the local sandbox", "sandbox"),
    "matplotlib": ("the deployment report's charts (--report)", "report"),
}


def _unexpected(args: argparse.Namespace, exc: Exception) -> NoReturn:
    """Anything not raised on purpose: bad YAML is bad input (2), the rest an internal error (4)."""
    import yaml

    if isinstance(exc, yaml.YAMLError):
        _fail(args, f"a YAML file is not valid YAML: {yaml_problem(exc)}", EXIT_USAGE, exc, "InvalidInput")
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    extra = OPTIONAL_MODULES.get((missing or "").split(".")[0])
    if extra:
        _fail(
            args,
            f"{extra[0]} needs {missing}, which this install does not have: "
            f"pip install 'rfs-deploy[{extra[1]}]'",
            EXIT_USAGE,
            exc,
            "MissingExtra",
        )
    text = " ".join(str(exc).split()) or "(no message)"
    _fail(
        args,
        f"internal error: {type(exc).__name__}: {text} (run with --debug for the traceback)",
        EXIT_INTERNAL,
        exc,
        "internal",
    )


def yaml_problem(exc: Exception) -> str:
    """What a YAML parser error says is wrong, and where (one line)."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    problem = getattr(exc, "problem", None) or first
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{problem}{where}" + (f" ({context})" if context else "")


async def _dispatch(args: argparse.Namespace) -> int:
    from rfs_deploy.cli import commands, signals

    handler = getattr(commands, f"cmd_{args.command}")
    with signals.installed(args):  # SIGINT/SIGTERM: stop safely (docs/cancellation.md)
        try:
            result: int = await handler(args)
        finally:
            commands.close_all()
        return signals.finish(result)


def emit(args: argparse.Namespace, payload: dict[str, Any], text: str, raw: bool = False) -> None:
    """The command's result: ``payload`` as the JSON document with --json (printed once the exit
    code is known, which it gains as ``exit_code`` unless ``raw``), ``text`` otherwise."""
    if args.json:
        _out.document, _out.raw = payload, raw
    else:
        print(redact(text), flush=True)


def iso(timestamp: float | None) -> str | None:
    """Seconds since the epoch as ISO-8601 UTC (``2026-12-01T10:15:54Z``; milliseconds when the
    time has a fraction of a second)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(float(timestamp), UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def isoformat_times(value: Any) -> Any:
    """``value`` with every number under a time key (:data:`TIME_KEYS`) as an ISO-8601 string."""
    if isinstance(value, dict):
        return {
            k: (
                iso(v)
                if k in TIME_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
                else isoformat_times(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [isoformat_times(v) for v in value]
    return value


def exit_code(record: DeploymentRecord) -> int:
    """The exit code a command ending with ``record`` returns."""
    from rfs_deploy.cli.signals import adjust  # a cancelled command: 130/143 or 4

    if record.status is DeploymentStatus.ROLLED_BACK and record.on_request:
        return adjust(EXIT_RESTORED_ON_REQUEST)
    if record.status is DeploymentStatus.IN_PROGRESS and record.paused is not None:
        return adjust(EXIT_PAUSED)
    return adjust(EXIT_CODES.get(record.status, 4))


__all__ = ["InvalidInput", "build_parser", "emit", "exit_code", "iso", "isoformat_times", "main"]
