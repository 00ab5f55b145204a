"""Least privilege and secrets.

* ``rfs-deploy iam-policy`` prints the driver's policy; every AWS call the driver makes in full
  sandbox deployments of each strategy (and a rolling rollback, the one write) is recorded with
  botocore event hooks on the adapters' clients and must be allowed by the policy — and every
  action the policy allows must have been used.
* A planted secret (a validation header in the stack config, ``DB_PASSWORD`` in the environment,
  the password of a ``DATABASE_URL``, a hook that prints them, a checkpoint's configuration and
  environment) never appears in logs,
  stderr, JSON output, reports, deployment records, checkpoints, history messages or the
  sandbox's saved session.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_reliability_input import run_cli

from rfs_deploy import iam
from rfs_deploy.cli import main
from rfs_deploy.connect import open_seams
from rfs_deploy.drive.command_hook import CommandHook
from rfs_deploy.drive.context import Hooks
from rfs_deploy.drive.driver import Driver

REPO = Path(__file__).resolve().parents[2]
SECRET = "planted-secret-123"
#: A password known only by its place in a URL (the variable's name does not look secret).
URL_SECRET = "url-pa55word"


# --------------------------------------------------------------------------- the policy


def test_iam_policy_prints_the_driver_actions_scoped_to_the_stack(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["iam-policy", "--stack", "production", "--account", "123456789012"])
    policy = json.loads(capsys.readouterr().out)

    assert code == 0 and policy["Version"] == "2012-10-17"
    assert iam.policy_actions(policy) == set(iam.DRIVER_ACTIONS)
    scoped = {s["Sid"]: s["Resource"] for s in policy["Statement"] if s["Resource"] != "*"}
    assert scoped == {
        "ReadServiceAlarms": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:api-service-*",
        "ControlInstanceRefresh": "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:"
        "autoScalingGroupName/api-service-asg-*",
    }


def test_pulumi_needs_are_listed_for_every_resource_type_the_program_creates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["iam-policy", "--for", "pulumi"]) == 0
    policy = json.loads(capsys.readouterr().out)
    assert {s["Sid"] for s in policy["Statement"]} == {t.split(":")[-1] for t in iam.PULUMI_ACTIONS}
    assert "autoscaling:StartInstanceRefresh" in iam.policy_actions(policy)  # pulumi up starts refreshes
    assert "autoscaling:RollbackInstanceRefresh" not in iam.DRIVER_ACTIONS  # AWS's guard, never the driver


RUNS = [
    ("blue-green", "healthy"),
    ("canary", "healthy"),
    ("rolling", "healthy"),
    ("ab-test", "healthy"),
    # a rollback that cancels the refresh still rolling the bad version out (its CPU alarm is not
    # one the refresh itself watches, so AWS does not roll the refresh back first)
    ("rolling", "seed: 3\nnew: {cpu: 97}\n"),
    # a quiet service: the refresh is held at a checkpoint (cancelled) while its windows are thin,
    # and started again once one passes
    ("rolling", "seed: 11\ntraffic: {requestsPerMinute: 40, noise: 0.1}\nnew: {}\n"),
]


def record_calls(seams: Any, calls: list[tuple[str, dict[str, Any]]]) -> None:
    """Record every API call made through the adapters' boto3 clients (botocore event hooks)."""

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((iam.action_name(model.service_model.service_name, model.name), dict(params)))

    clients = {id(c): c for c in (seams.metrics._client, seams.alarms._client, seams.traffic._client)}
    clients[id(seams.fleet._client)] = seams.fleet._client
    for client in clients.values():
        # before-parameter-build is emitted to every handler (before-call stops at the first
        # answer, which may be the sandbox's own gap handler)
        client.meta.events.register("before-parameter-build", hook)


def test_every_aws_call_of_the_driver_is_allowed_and_every_allowed_action_is_used(
    state: Path, tmp_path: Path
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    outcomes = []
    for strategy, scenario in RUNS:
        if "\n" in scenario:
            written = tmp_path / f"scenario-{len(outcomes)}.yaml"
            written.write_text(scenario)
            scenario = str(written)
        seams = open_seams("production", backend="sim", scenario=scenario, fresh=True)
        try:
            record_calls(seams, calls)
            # a canary of two steps calls what one of ten does, in a fifth of the time
            short = {"strategy": {"steps": [10, 50]}} if strategy == "canary" else None
            record = asyncio.run(Driver(seams).deploy("api-service", "v2.0.0", strategy, short))
            outcomes.append(record.status.value)
        finally:
            seams.close()
    assert outcomes == ["COMPLETED"] * 4 + ["ROLLED_BACK", "COMPLETED"]

    policy = iam.driver_policy(["api-service"], region="us-east-1", account="123456789012")
    used = {action for action, _ in calls}
    assert used <= iam.policy_actions(policy), used - iam.policy_actions(policy)
    assert iam.policy_actions(policy) <= used, iam.policy_actions(policy) - used  # nothing unused
    for action, params in calls:  # the scoped statements cover the resources really named
        if action == "cloudwatch:DescribeAlarms":
            assert all(fnmatch.fnmatch(n, "api-service-*") for n in params["AlarmNames"])
        if action in ("autoscaling:CancelInstanceRefresh", "autoscaling:StartInstanceRefresh"):
            assert fnmatch.fnmatch(params["AutoScalingGroupName"], "api-service-asg-*")


# --------------------------------------------------------------------------- secrets


def project_with_secret_header(root: Path) -> Path:
    """The production stack with a secret validation header, in a project of its own."""
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.production.yaml").read_text())
    service = doc["config"]["rfs-deploy:services"]["api-service"]
    service["validation"] = {"headers": {"X-Api-Key": SECRET}}
    (root / "stacks").mkdir(parents=True)
    (root / "stacks" / "Pulumi.production.yaml").write_text(yaml.safe_dump(doc))
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    return root


def files_under(root: Path, *skip: Path) -> dict[Path, bytes]:
    return {
        p: p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not any(p.is_relative_to(s) for s in skip)
    }


def test_a_planted_secret_never_reaches_logs_output_reports_records_checkpoints_or_history(
    tmp_path: Path,
    state: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    project = project_with_secret_header(tmp_path / "project")
    monkeypatch.setenv("RFS_DEPLOY_PROJECT", str(project))
    monkeypatch.setenv("DB_PASSWORD", SECRET)
    monkeypatch.setenv("DATABASE_URL", f"postgres://billing:{URL_SECRET}@db.internal/billing")
    reports = tmp_path / "reports"

    # 1. the CLI: a deployment with --json and a report, then status and history
    code, _, deploy_out = run_cli(
        [
            "--backend",
            "sim",
            "--json",
            "deploy",
            "--stack",
            "production",
            "--service",
            "api-service",
            "--version",
            "v2.0.0",
            "--strategy",
            "blue-green",
            "--report",
            str(reports),
        ],
        capsys,
    )
    assert code == 0, deploy_out
    texts = [deploy_out]
    for argv in (["status", "--stack", "production"], ["history", "--stack", "production"]):
        code, err, out = run_cli(["--backend", "sim", *argv], capsys)
        assert code == 0
        texts += [out, *err]

    # 2. the API: hooks that print the secret, a bad version rolled back, a checkpoint taken
    echo = f'echo "db password is $DB_PASSWORD"; echo "{SECRET}" >&2; echo "db at $DATABASE_URL"'
    hooks = Hooks(pre_deployment=[CommandHook(echo)], post_deployment=[CommandHook(echo + "; exit 1")])
    seams = open_seams("production", backend="sim", scenario="error-spike", hooks=hooks, fresh=True)
    try:
        from rfs_deploy.rollback import RollbackManager

        asyncio.run(
            RollbackManager().create_checkpoint(
                "api-service", "v1.0.0", {"dbPassword": SECRET}, {"DB_PASSWORD": SECRET}
            )
        )
        record = asyncio.run(Driver(seams).deploy("api-service", "v2.0.0", "blue-green"))
        assert record.status.value == "ROLLED_BACK"
        texts += [m.message for m in seams.backend.history()]
        texts += record.errors + [s.reason for s in record.steps]
    finally:
        seams.close()
    out, err = capsys.readouterr()
    texts += [out, err, caplog.text]

    assert not [t for t in texts if SECRET in t or URL_SECRET in t]
    files = files_under(state) | files_under(reports)
    assert any(p.suffix == ".png" for p in files) and any(p.suffix == ".html" for p in files)
    assert any(p.parent.name == "checkpoints" for p in files)
    leaked = sorted(
        str(p.relative_to(tmp_path))
        for p, data in files.items()
        if SECRET.encode() in data or URL_SECRET.encode() in data
    )
    assert leaked == []


def test_the_sandbox_session_keeps_no_secret_and_a_new_process_reads_it_from_the_stack_file(
    tmp_path: Path,
) -> None:
    from rfs_deploy.sim.backend import SECRET_PLACEHOLDER
    from rfs_deploy.sim.sandbox import STATE_FILE, Sandbox

    stack_file = project_with_secret_header(tmp_path / "project") / "stacks" / "Pulumi.production.yaml"
    session = tmp_path / "session"
    with Sandbox.open(stack_file, session_dir=session) as box:
        box.provision()
    assert SECRET.encode() not in (session / STATE_FILE).read_bytes()

    def header(box: Sandbox) -> str:
        headers = box.backend.read_config().service("api-service").validation.headers
        return headers["X-Api-Key"].get_secret_value()

    with Sandbox.open(stack_file, session_dir=session) as box:
        assert header(box) == SECRET  # resume/abort in a new process still send the real header
    with Sandbox.open(session_dir=session) as box:
        assert header(box) == SECRET_PLACEHOLDER  # without the stack file it is simply not known
