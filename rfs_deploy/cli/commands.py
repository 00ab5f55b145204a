"""One handler per ``rfs-deploy`` subcommand; each returns the process exit code."""

from __future__ import annotations

import argparse
from typing import Any

from rfs_deploy.cli import SANDBOX_SERVICE, SANDBOX_STACK, emit, exit_code
from rfs_deploy.cli.progress import ProgressPrinter
from rfs_deploy.connect import open_seams
from rfs_deploy.drive import journal
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.plans import describe
from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.drive.summary import summarize
from rfs_deploy.errors import InvalidInput

_opened: list[Seams] = []


def _seams(args: argparse.Namespace, stack: str, backend: str | None = None, **kw: Any) -> Seams:
    listeners = [] if args.quiet or args.json else [ProgressPrinter()]
    seams = open_seams(stack, backend=backend or args.backend, listeners=listeners, **kw)
    _opened.append(seams)
    return seams


def close_all() -> None:
    """Release every seams a command opened (the sandbox saves its session)."""
    while _opened:
        _opened.pop().close()


def _record_payload(record: DeploymentRecord) -> dict[str, Any]:
    data = record.to_json()
    data.pop("samples", None)
    s = summarize(record)
    data["summary"] = {
        "requests": s.requests,
        "errors": s.errors,
        "error_rate": s.error_rate,
        "p99_latency": s.p99_latency,
        "healthy_instances": s.healthy_instances,
        "instance_count": s.instance_count,
    }
    data["exit_code"] = exit_code(record)
    return data


def _finish(args: argparse.Namespace, record: DeploymentRecord, report_dir: str | None = None) -> int:
    paths: list[str] = []
    if report_dir:
        from rfs_deploy.report import write_report

        paths = [str(p) for p in write_report(record, report_dir)]
    payload = _record_payload(record)
    payload["report"] = paths
    lines = [
        f"deployment {record.deployment_id}: {record.status.value} ({record.service} → {record.version})"
    ]
    if record.rolled_back_to is not None:
        lines.append(f"restored stack version {record.rolled_back_to}")
    if record.decision:
        lines.append(f"A/B decision: {record.decision}")
    lines += [f"  {e}" for e in record.errors[-3:]]
    if record.recovery:
        lines.append(f"the stack is NOT back at its checkpoint; to finish: {record.recovery}")
    if paths:
        lines.append(f"report: {paths[1]} (picture: {paths[0]})")
    emit(args, payload, "\n".join(lines))
    return exit_code(record)


async def cmd_deploy(args: argparse.Namespace) -> int:
    seams = _seams(args, args.stack, scenario=args.scenario)
    record = await Driver(seams).deploy(args.service, args.version, args.strategy)
    return _finish(args, record, args.report)


async def cmd_plan(args: argparse.Namespace) -> int:
    seams = _seams(args, args.stack)
    _, strategy, release, steps = Driver(seams).plan(args.service, args.version, args.strategy)
    lines = describe(steps)
    payload = {
        "service": args.service,
        "version": args.version,
        "strategy": strategy.model_dump(by_alias=True),
        "from": release.to_config(),
        "steps": [{"kind": s.kind, "description": s.describe()} for s in steps],
    }
    emit(args, payload, f"{args.service}: {strategy.type} to {args.version}\n" + "\n".join(lines))
    return 0


async def cmd_up(args: argparse.Namespace) -> int:
    seams = _seams(args, args.stack)
    result = seams.backend.up("rfs-deploy up: apply the stack config")
    emit(
        args, {"version": result.version, "changes": dict(result.changes)}, f"stack version {result.version}"
    )
    return 0


async def cmd_iam_policy(args: argparse.Namespace) -> int:
    """The driver's least-privilege IAM policy (or Pulumi's, ``--for pulumi``) as JSON; no AWS call."""
    import json

    from rfs_deploy import iam

    if args.principal == "pulumi":
        print(json.dumps(iam.pulumi_policy(), indent=2))
        return 0
    services, region = None, "*"
    if args.stack:
        from rfs_deploy.config.loading import load_stack_config, read_namespace, read_other_config
        from rfs_deploy.connect import project_dir
        from rfs_deploy.errors import UnknownStack

        path = project_dir() / "stacks" / f"Pulumi.{args.stack}.yaml"
        if not path.is_file():
            raise UnknownStack(f"unknown stack {args.stack!r}: no {path.name} in stacks/")
        # the policy needs no secret value: Pulumi secrets are masked, never decrypted, here
        config = load_stack_config(read_namespace(path, decrypt=False))
        services = list(config.services)
        region = str(read_other_config(path, decrypt=False).get("aws:region") or "*")
    print(json.dumps(iam.driver_policy(services, region=region, account=args.account), indent=2))
    return 0


async def cmd_rollback(args: argparse.Namespace) -> int:
    seams = _seams(args, args.stack)
    return _finish(args, await Driver(seams).rollback(args.service, args.to))


async def cmd_resume(args: argparse.Namespace) -> int:
    seams = _seams(args, args.stack)
    return _finish(args, await Driver(seams).resume(args.service))


async def cmd_abort(args: argparse.Namespace) -> int:
    seams = _seams(args, args.stack)
    return _finish(args, await Driver(seams).abort(args.service))


async def cmd_status(args: argparse.Namespace) -> int:
    seams = _seams(args, args.stack)
    assert seams.records is not None
    if args.deployment_id:
        record = seams.records.load(args.deployment_id)
    else:
        records = seams.records.all(stack=args.stack)
        if not records:
            raise InvalidInput(f"no deployments recorded for stack {args.stack}")
        record = records[0]
    found = journal.latest_deployment(seams.backend.history(), record.service)
    journal_state = (
        found.status if found is not None and found.deployment_id == record.deployment_id else None
    )
    payload = _record_payload(record)
    payload["journal"] = journal_state
    step = record.steps[-1].description if record.steps else "-"
    text = (
        f"{record.deployment_id}: {record.status.value} {record.progress}% — "
        f"{record.service} → {record.version} ({record.strategy}); "
        f"step {record.current_step + 1}/{record.total_steps}: {step}"
        + (f"; journal: {journal_state}" if journal_state else "")
    )
    emit(args, payload, text)
    return 0


async def cmd_history(args: argparse.Namespace) -> int:
    seams = _seams(args, args.stack)
    assert seams.records is not None
    entries = seams.backend.history(limit=args.limit)
    records = seams.records.all(stack=args.stack)[: args.limit]
    payload = {
        "deployments": [
            {"id": r.deployment_id, "service": r.service, "version": r.version, "status": r.status.value}
            for r in records
        ],
        "stack_history": [{"version": e.version, "result": e.result, "message": e.message} for e in entries],
    }
    lines = ["deployments:"] + [
        f"  {r.deployment_id} {r.status.value:<11} {r.service} "
        f"{r.previous_version} → {r.version} ({r.strategy})"
        for r in records
    ]
    lines += ["stack history:"] + [f"  {e.version:>4} {e.result:<10} {e.message}" for e in entries]
    emit(args, payload, "\n".join(lines))
    return 0


async def cmd_simulate(args: argparse.Namespace) -> int:
    """The sandbox with defaults: a fresh world, api-service v1.0.0 → v2.0.0 on stack production."""
    seams = _seams(
        args,
        SANDBOX_STACK,
        backend="sim",
        scenario=args.scenario,
        seed=args.seed,
        fresh=True,
        engine=args.engine,
    )
    record = await Driver(seams).deploy(SANDBOX_SERVICE, args.version, args.strategy)
    return _finish(args, record, args.report)
