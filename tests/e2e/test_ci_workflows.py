"""The shipped pipelines (``examples/ci/``), run the way a CI runner runs them, against the sandbox.

Every workflow run gets its own fresh ``git clone`` of the committed HEAD, as a runner's checkout
is. The GitHub workflow's ``run:`` steps are taken from the YAML in order and run with bash as the
runner runs them (``bash --noprofile --norc -eo pipefail``), with the workflow's and the step's
``env`` (their ``${{ }}`` expressions evaluated), step ``if:`` conditions, and ``$GITHUB_PATH``.
Action steps (``uses:``) need a real runner and are skipped: the clone stands in for checkout, a
``python`` on PATH for setup-python; OIDC credentials, the Pulumi CLI and the artifact upload are
skipped with them. The repository variable ``RFS_DEPLOY_BACKEND=sim`` selects the sandbox, as a
team can to dry-run the workflow; ``RFS_DEPLOY_STATE`` points every run at one directory, which
stands in for the state bucket the runners share.

Runs, in one shared state: (1) v2.0.0 from clone A; (2) v1.0.0 from clone B, whose stack file
still says what was committed; (3) v2.0.0 from clone A cleaned back to its commit (only its
``.venv`` kept, as a runner restoring a cached virtualenv), killed in the middle of its third
stack update (the sandbox's kill point stands in for the runner's kill of a cancelled step),
after which the workflow's abort step restores the checkpoint; (4) the GitLab job's before_script,
script and after_script lines, v2.0.0 again, in clone B.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_world import REPO

GITHUB = Path("examples/ci/github-actions.yml")
GITLAB = Path("examples/ci/gitlab-ci.yml")
STACK, SERVICE = "production", "api-service"
VARS = {"RFS_DEPLOY_BACKEND": "sim", "AWS_REGION": "us-east-1", "PULUMI_STATE_BUCKET": "not-used-by-sim"}
SECRETS = {"PULUMI_CONFIG_PASSPHRASE": "not-used-by-sim"}


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


# --------------------------------------------------------------------------- GitHub expressions

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _term(text: str, context: dict[str, Any], status: dict[str, bool]) -> Any:
    text = text.strip()
    functions = {
        "always()": True,
        "success()": not status["failed"] and not status["cancelled"],
        "failure()": status["failed"],
        "cancelled()": status["cancelled"],
    }
    if text in functions:
        return functions[text]
    if "==" in text:
        left, right = text.split("==", 1)
        return _term(left, context, status) == _term(right, context, status)
    if re.fullmatch(r"'[^']*'", text):
        return text[1:-1]
    if re.fullmatch(r"[a-z_]+(\.[A-Za-z_][A-Za-z0-9_-]*)+", text):
        value: Any = context
        for part in text.split("."):
            value = value.get(part, "") if isinstance(value, dict) else ""
        return value
    raise AssertionError(f"an expression this test does not know (keep the workflow simple): {text!r}")


def evaluate(expression: str, context: dict[str, Any], status: dict[str, bool]) -> Any:
    """``a || b || 'x'``, ``x == 'y'``, names and the status functions: all the workflow uses."""
    value: Any = ""
    for part in expression.split("||"):
        value = _term(part, context, status)
        if value:
            return value
    return value


def substitute(text: str, context: dict[str, Any], status: dict[str, bool]) -> str:
    return _EXPR.sub(lambda m: str(evaluate(m.group(1), context, status)), text)


# --------------------------------------------------------------------------- a runner


@dataclass
class StepRun:
    name: str
    skipped: str | None = None  # why it did not run
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


@dataclass
class WorkflowRun:
    clone: Path
    steps: list[StepRun] = field(default_factory=list)
    #: result.json as the run left it ("" when the deploy step wrote nothing, None without one)
    result_text: str | None = None
    #: ``git status --porcelain`` of the checkout's stack files after the run
    changes: str = ""
    #: the files the run left in out/
    reports: list[str] = field(default_factory=list)

    def step(self, name: str) -> StepRun:
        [found] = [s for s in self.steps if s.name == name]
        return found

    @property
    def result(self) -> dict[str, Any]:
        assert self.result_text, "the deploy step wrote no result.json"
        data: dict[str, Any] = json.loads(self.result_text)
        return data


def fresh_clone(base: Path, name: str) -> Path:
    """A clone of the committed HEAD; an existing one is cleaned back to its commit, keeping only
    ``.venv`` (a runner restoring a cached virtualenv into a fresh checkout)."""
    clone = base / name
    if clone.exists():
        subprocess.run(["git", "-C", str(clone), "clean", "-ffdqx", "-e", ".venv"], check=True, timeout=300)
        subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", "."], check=True, timeout=300)
        return clone
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300)
    return clone


def runner_env(base: Path, state: Path) -> dict[str, str]:
    """What every step sees from the runner: a python on PATH (setup-python), HOME, and the state."""
    tools = base / "toolcache"
    tools.mkdir(exist_ok=True)
    python = tools / "python"
    if not python.exists():
        python.symlink_to(getattr(sys, "_base_executable", sys.executable))
    return {
        "PATH": f"{tools}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(base)),
        "LANG": "C.UTF-8",
        "CI": "true",
        "RFS_DEPLOY_STATE": str(state),
    }


def run_github(
    base: Path, state: Path, name: str, inputs: dict[str, str], kill: tuple[str, str] | None = None
) -> WorkflowRun:
    """The workflow's run steps in a fresh clone. ``kill=(step, spec)`` arms the sandbox's kill point
    ``spec`` in that step; the job then counts as cancelled, as when the runner kills a step."""
    clone = fresh_clone(base, name)
    workflow = load(clone / GITHUB)
    context: dict[str, Any] = {
        "inputs": inputs,
        "vars": VARS,
        "secrets": SECRETS,
        "github": {"run_id": "4242"},
        "env": {},
    }
    status = {"failed": False, "cancelled": False}
    env_base = runner_env(base, state)
    github_path = base / f"{name}.path"
    github_path.write_text("")
    workflow_env = {k: substitute(str(v), context, status) for k, v in workflow.get("env", {}).items()}
    context["env"] = workflow_env
    run = WorkflowRun(clone)
    for index, step in enumerate(workflow["jobs"]["deploy"]["steps"]):
        label = step.get("name") or step.get("uses") or f"step {index}"
        condition = str(step.get("if", "success()"))
        if not evaluate(_EXPR.sub(lambda m: m.group(1), condition), context, status):
            run.steps.append(StepRun(label, skipped=f"if: {condition}"))
            continue
        if "uses" in step:
            run.steps.append(StepRun(label, skipped=f"action {step['uses']} needs a real runner"))
            continue
        env = {**env_base, **workflow_env}
        env.update({k: substitute(str(v), context, status) for k, v in step.get("env", {}).items()})
        added = [line for line in github_path.read_text().splitlines() if line]
        env["PATH"] = ":".join([*reversed(added), env["PATH"]])
        env["GITHUB_PATH"] = str(github_path)
        if kill is not None and kill[0] == label:
            env["RFS_DEPLOY_SIM_KILL"] = kill[1]
        script = base / f"{name}-step-{index}.sh"
        script.write_text(substitute(step["run"], context, status))
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        run.steps.append(StepRun(label, None, done.returncode, done.stdout, done.stderr))
        if kill is not None and kill[0] == label:
            status["cancelled"] = True
        elif done.returncode != 0:
            status["failed"] = True
    result = clone / "result.json"
    run.result_text = result.read_text() if result.exists() else None
    out = clone / "out"
    run.reports = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    run.changes = subprocess.run(
        ["git", "-C", str(clone), "status", "--porcelain", "--", "stacks", "Pulumi.yaml"],
        capture_output=True,
        text=True,
    ).stdout
    return run


def flatten(items: Any) -> list[str]:
    out: list[str] = []
    for item in items:
        out.extend(flatten(item) if isinstance(item, list) else [str(item)])
    return out


def run_gitlab(
    clone: Path, base: Path, state: Path, version: str
) -> tuple[subprocess.CompletedProcess[str], ...]:
    """The GitLab job's before_script + script (one shell, as the runner runs them), then its
    after_script (a new shell), with the file's variables and VERSION set for the pipeline."""
    job = load(clone / GITLAB)
    variables: dict[str, str] = {}
    for key, value in job.get("variables", {}).items():
        variables[key] = str(value["value"] if isinstance(value, dict) else value)
    variables.update({k: str(v) for k, v in job["deploy"].get("variables", {}).items()})
    variables.update(VERSION=version, RFS_DEPLOY_BACKEND="sim", CI_PROJECT_DIR=str(clone), CI_JOB_ID="77")
    env = {**runner_env(base, state), **variables}
    done = []
    for part, lines in (
        ("script", flatten(job["deploy"]["before_script"]) + flatten(job["deploy"]["script"])),
        ("after_script", flatten(job["deploy"]["after_script"])),
    ):
        script = base / f"gitlab-{part}.sh"
        script.write_text("set -eo pipefail\n" + "\n".join(lines) + "\n")
        if part == "after_script":
            env["CI_JOB_STATUS"] = "success" if done[0].returncode == 0 else "failed"
        done.append(
            subprocess.run(
                ["bash", "--noprofile", "--norc", str(script)],
                cwd=clone,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
        )
    return tuple(done)


def cli(clone: Path, state: Path, *args: str) -> dict[str, Any]:
    """``rfs-deploy --backend sim --json ...`` from a clone's own install."""
    done = subprocess.run(
        [str(clone / ".venv" / "bin" / "rfs-deploy"), "--backend", "sim", "--json", *args],
        cwd=clone,
        env=runner_env(clone.parent, state),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    data: dict[str, Any] = json.loads(done.stdout)
    return data


@dataclass
class Pipelines:
    state: Path
    first: WorkflowRun
    second: WorkflowRun
    status_after_second: dict[str, Any]
    cancelled: WorkflowRun
    history_after_cancel: dict[str, Any]
    gitlab: tuple[subprocess.CompletedProcess[str], ...]
    gitlab_result: dict[str, Any]


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> Pipelines:
    base = tmp_path_factory.mktemp("ci")
    state = base / "shared-state"
    inputs = {"stack": STACK, "service": SERVICE, "strategy": ""}
    first = run_github(base, state, "clone-a", {**inputs, "version": "v2.0.0"})
    second = run_github(base, state, "clone-b", {**inputs, "version": "v1.0.0"})
    status = cli(second.clone, state, "status", "--stack", STACK)
    cancelled = run_github(base, state, "clone-a", {**inputs, "version": "v2.0.0"}, kill=("Deploy", "mid:3"))
    history = cli(cancelled.clone, state, "history", "--stack", STACK, "--limit", "50")
    (second.clone / "result.json").unlink()
    gitlab = run_gitlab(second.clone, base, state, "v2.0.0")
    gitlab_result = json.loads((second.clone / "result.json").read_text())
    return Pipelines(state, first, second, status, cancelled, history, gitlab, gitlab_result)


def show(run: WorkflowRun) -> str:
    return "\n".join(
        f"{s.name}: {s.skipped or s.returncode}\n{s.stdout[-2000:]}{s.stderr[-2000:]}" for s in run.steps
    )


# --------------------------------------------------------------------------- the files


def test_the_github_workflow_is_what_a_team_copies() -> None:
    workflow = load(REPO / GITHUB)
    assert workflow["concurrency"] == {"group": "rfs-deploy-${{ inputs.stack }}", "cancel-in-progress": False}
    assert workflow["permissions"]["id-token"] == "write"
    assert workflow["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    steps = workflow["jobs"]["deploy"]["steps"]
    uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    assert uses["aws-actions/configure-aws-credentials"]["with"]["role-to-assume"]
    upload = uses["actions/upload-artifact"]
    assert upload["if"] == "always()" and upload["with"]["path"].split() == ["result.json", "out/"]
    runs = [s for s in steps if "run" in s]
    script = "\n".join(s["run"] for s in runs)
    assert "pip install --quiet -r requirements.txt" in script and "pulumi install" in script
    assert 'pulumi login "s3://$PULUMI_STATE_BUCKET' in script
    [deploy] = [s for s in runs if "rfs-deploy --json deploy" in s["run"]]
    assert "--report out/ > result.json" in deploy["run"]
    [abort] = [s for s in runs if "rfs-deploy abort" in s["run"]]
    assert "cancelled()" in abort["if"] and steps.index(abort) < steps.index(upload)


def test_the_gitlab_job_has_the_same_steps() -> None:
    job = load(REPO / GITLAB)["deploy"]
    assert job["resource_group"] == "rfs-deploy-$STACK"
    assert job["id_tokens"]["AWS_ID_TOKEN"]["aud"] == "sts.amazonaws.com"
    before, script, after = (flatten(job[k]) for k in ("before_script", "script", "after_script"))
    assert any("aws sts assume-role-with-web-identity" in line for line in before)
    assert any("aws sts assume-role-with-web-identity" in line for line in after)  # a new shell
    text = "\n".join(script)
    assert "pip install --quiet -r requirements.txt" in text and "pulumi install" in text
    assert 'pulumi login "s3://$PULUMI_STATE_BUCKET' in text
    github = " ".join(s["run"] for s in load(REPO / GITHUB)["jobs"]["deploy"]["steps"] if "run" in s)
    gh_deploy = re.search(
        r"rfs-deploy --json deploy .*?> result\.json", " ".join(github.replace("\\\n", " ").split())
    )
    gl_deploy = re.search(r"rfs-deploy --json deploy .*?> result\.json", " ".join(text.split()))
    assert gh_deploy and gl_deploy and gh_deploy.group(0) == gl_deploy.group(0)
    assert after[-1] == 'rfs-deploy abort --stack "$STACK" --service "$SERVICE"'
    assert job["artifacts"]["when"] == "always" and job["artifacts"]["paths"] == ["result.json", "out/"]


# --------------------------------------------------------------------------- the runs


def test_the_first_run_deploys(pipelines: Pipelines) -> None:
    run = pipelines.first
    assert run.step("Deploy").returncode == 0, show(run)
    assert [s.name for s in run.steps if s.skipped and s.skipped.startswith("action")] == [
        "actions/checkout@v4",
        "actions/setup-python@v5",
        "Upload the report",
    ]
    assert run.step("AWS credentials (OIDC)").skipped == "if: env.RFS_DEPLOY_BACKEND == 'pulumi'"
    assert run.step("Abort a deployment the runner stopped").skipped  # nothing failed
    result = run.result
    assert (result["status"], result["previous_version"], result["version"]) == (
        "COMPLETED",
        "v1.0.0",
        "v2.0.0",
    )
    assert result["exit_code"] == 0
    assert [Path(p).suffix for p in run.reports] == [".html", ".png"]
    assert sorted(Path(p).name for p in result["report"]) == run.reports
    assert run.changes == ""  # the deployment wrote nothing into the checkout's stack files


def test_the_second_run_from_a_fresh_clone_deploys(pipelines: Pipelines) -> None:
    run = pipelines.second
    assert run.step("Deploy").returncode == 0, show(run)
    result = run.result
    assert (result["status"], result["previous_version"], result["version"]) == (
        "COMPLETED",
        "v2.0.0",
        "v1.0.0",
    )
    # clone B's stack file still says v1.0.0 is live (run 1 committed nothing back): the release
    # state the deployment started from (v2.0.0 live) came from the shared backend
    committed = yaml.safe_load((run.clone / "stacks" / "Pulumi.production.yaml").read_text())
    release = committed["config"]["rfs-deploy:release"][SERVICE]
    assert "v1.0.0" in json.dumps(release) and "v2.0.0" not in json.dumps(release)
    assert run.changes == ""
    status = pipelines.status_after_second
    assert (status["deployment_id"], status["status"], status["version"]) == (
        result["deployment_id"],
        "COMPLETED",
        "v1.0.0",
    )


def test_a_run_killed_mid_update_is_aborted_by_the_workflow(pipelines: Pipelines) -> None:
    run = pipelines.cancelled
    deploy = run.step("Deploy")
    assert deploy.returncode == -signal.SIGKILL, show(run)  # exec: the runner's process was rfs-deploy
    assert run.result_text == ""
    abort = run.step("Abort a deployment the runner stopped")
    assert abort.returncode == 0, show(run)
    upload = run.step("Upload the report")
    assert upload.skipped is not None and upload.skipped.startswith("action")  # due to run; needs a runner
    history = pipelines.history_after_cancel
    newest = history["deployments"][0]
    assert (newest["version"], newest["status"]) == ("v2.0.0", "ROLLED_BACK"), history["deployments"]


def test_the_gitlab_job_deploys_after_the_aborted_run(pipelines: Pipelines) -> None:
    script, after = pipelines.gitlab
    assert script.returncode == 0, script.stdout[-3000:] + script.stderr[-3000:]
    result = pipelines.gitlab_result
    assert (result["status"], result["previous_version"], result["version"]) == (
        "COMPLETED",
        "v1.0.0",
        "v2.0.0",
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip().splitlines()[-1] == "nothing to abort"
