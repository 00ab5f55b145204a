"""``rfs-deploy``: the command line.

Exit codes: 0 completed, 3 rolled back cleanly (the stack is back at its checkpoint), 4 failed and
not safely rolled back (the message names the command that finishes the job), 2 invalid input
(nothing was changed), 130 interrupted (run ``resume`` or ``abort``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus
from rfs_deploy.errors import InvalidInput, RfsDeployError

EXIT_CODES = {DeploymentStatus.COMPLETED: 0, DeploymentStatus.ROLLED_BACK: 3, DeploymentStatus.FAILED: 4}
SANDBOX_STACK = "production"
SANDBOX_SERVICE = "api-service"


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line and exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        print(f"rfs-deploy: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="rfs-deploy", description="Progressive delivery for AWS: blue-green, canary, rolling, A/B."
    )
    p.add_argument(
        "--backend", choices=("sim", "pulumi"), help="sandbox or Pulumi+AWS (env RFS_DEPLOY_BACKEND)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def stack_args(sp: argparse.ArgumentParser, service: bool = True, required: bool = True) -> None:
        sp.add_argument("--stack", required=True, help="stack (environment), e.g. production")
        if service:
            sp.add_argument("--service", required=required, help="service name in the stack")

    d = sub.add_parser("deploy", help="release a version with a strategy")
    stack_args(d)
    d.add_argument("--version", required=True, help="version to release, e.g. v2.0.0")
    d.add_argument(
        "--strategy", choices=("blue-green", "canary", "rolling", "ab-test"), help="default: the service's"
    )
    d.add_argument("--scenario", help="sandbox scenario (env RFS_DEPLOY_SCENARIO)")
    d.add_argument("--report", metavar="DIR", help="write the timeline report (PNG and HTML) into DIR")

    pl = sub.add_parser("plan", help="print the steps a deployment would run; changes nothing")
    stack_args(pl)
    pl.add_argument("--version", required=True)
    pl.add_argument("--strategy", choices=("blue-green", "canary", "rolling", "ab-test"))

    up = sub.add_parser("up", help="apply the stack config as it is (the first update of a stack)")
    stack_args(up, service=False)

    iam = sub.add_parser("iam-policy", help="print the least-privilege IAM policy the driver needs")
    iam.add_argument("--stack", help="scope alarms and Auto Scaling groups to this stack's services")
    iam.add_argument("--account", default="*", help="AWS account id for the ARNs (default *)")
    iam.add_argument("--for", dest="principal", choices=("driver", "pulumi"), default="driver")
    iam.set_defaults(command="iam_policy")  # the handler is cmd_iam_policy

    rb = sub.add_parser("rollback", help="restore a service to an earlier stack history version")
    stack_args(rb)
    rb.add_argument(
        "--to", type=int, metavar="VERSION", help="history version (default: before the last deployment)"
    )

    for name, text in (
        ("resume", "continue an interrupted deployment"),
        ("abort", "roll an open deployment back"),
    ):
        sp = sub.add_parser(name, help=text)
        stack_args(sp, required=False)

    st = sub.add_parser("status", help="a deployment's status and progress")
    stack_args(st, service=False)
    st.add_argument("deployment_id", nargs="?", help="default: the newest")

    hi = sub.add_parser("history", help="deployments and the stack history journal")
    stack_args(hi, service=False)
    hi.add_argument("--limit", type=int, default=10)

    si = sub.add_parser("simulate", help="a full deployment in the local sandbox (no AWS account needed)")
    si.add_argument(
        "--scenario", default=None, help="healthy, error-spike, latency-regression, slow-start, ..."
    )
    si.add_argument("--strategy", choices=("blue-green", "canary", "rolling", "ab-test"), default="canary")
    si.add_argument("--version", default="v2.0.0")
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_dispatch(args))
    except RfsDeployError as exc:
        _fail(args, str(exc), exc.exit_code, exc)
    except KeyboardInterrupt:
        _fail(args, "interrupted; run `rfs-deploy resume` or `rfs-deploy abort` for the stack", 130, None)
    return 0


def _fail(args: argparse.Namespace, message: str, code: int, exc: BaseException | None) -> NoReturn:
    if args.debug and exc is not None:
        import traceback

        traceback.print_exception(exc)
    if args.json:
        print(json.dumps({"error": message, "exit_code": code}))
    print(f"rfs-deploy: error: {message}", file=sys.stderr)
    raise SystemExit(code)


async def _dispatch(args: argparse.Namespace) -> int:
    from rfs_deploy.cli import commands

    handler = getattr(commands, f"cmd_{args.command}")
    try:
        result: int = await handler(args)
    finally:
        commands.close_all()
    return result


def emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    """Print ``payload`` as JSON with --json, ``text`` otherwise."""
    if args.json:
        print(json.dumps(payload, indent=1, default=str))
    else:
        print(text)


def exit_code(record: DeploymentRecord) -> int:
    return EXIT_CODES.get(record.status, 4)


__all__ = ["InvalidInput", "build_parser", "emit", "exit_code", "main"]
