"""The command line as a pipeline scripts it: global flags in either place, one JSON document for
every outcome, ISO times, ``--version``, ``python -m rfs_deploy``, no traceback ever (a closed
pipe, a stack file that is not YAML, an unexpected error), overrides, the sandbox reset.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import REPO, SERVICE, STACK, Done, Place, make_place, one_error_line

from rfs_deploy.cli import build_parser, isoformat_times, package_version

ISO = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z\Z")
TIME_KEYS = {"at", "started_at", "ended_at", "start_time", "end_time"}


def times_in(value: Any) -> list[Any]:
    """Every value under a time key anywhere in a JSON document."""
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k in TIME_KEYS]
        return found + [t for v in value.values() for t in times_in(v)]
    if isinstance(value, list):
        return [t for v in value for t in times_in(v)]
    return []


def one_document(done: Done) -> Any:
    """stdout is exactly one JSON document (json.loads refuses trailing data)."""
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Place, dict[str, Any]]:
    """A sandbox stack with one completed blue-green deployment (switch delay, scale-down delay)."""
    place = make_place(tmp_path_factory.mktemp("pipeline"))
    done = place.run(
        "deploy",
        "--stack",
        STACK,
        "--service",
        SERVICE,
        "--version",
        "v2.0.0",
        "--strategy",
        "blue-green",
        "--json",
    )
    assert done.code == 0, done.stderr
    return place, {"payload": one_document(done), "stderr": done.stderr}


# --------------------------------------------------------------------------- global flags


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--quiet", "--debug", "--backend", "sim", "status", "--stack", "s"],
        ["status", "--stack", "s", "--json", "--quiet", "--debug", "--backend", "sim"],
        ["--json", "--backend", "sim", "status", "--quiet", "--stack", "s", "--debug"],
    ],
)
def test_global_flags_parse_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.json, args.quiet, args.debug, args.backend) == (True, True, True, "sim")


def test_global_flags_default_off_in_either_place() -> None:
    args = build_parser().parse_args(["status", "--stack", "s"])
    assert (args.json, args.quiet, args.debug, args.backend) == (False, False, False, None)
    assert build_parser().parse_args(["--backend", "pulumi", "status", "--stack", "s"]).backend == "pulumi"


def test_json_after_the_subcommand_is_the_same_document(deployed: tuple[Place, dict[str, Any]]) -> None:
    place, _ = deployed
    before = one_document(place.run("--json", "status", "--stack", STACK))
    after = one_document(place.run("status", "--stack", STACK, "--json", "--backend", "sim"))
    assert before == after and before["status"] == "COMPLETED" and before["exit_code"] == 0


# --------------------------------------------------------------------------- one JSON document


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--json", "bogus"), "invalid choice: 'bogus'"),
        (("deploy", "--json", "--stack", STACK), "the following arguments are required"),
        (
            ("--json", "plan", "--stack", STACK, "--service", SERVICE, "--version", "v2", "--strategy", "x"),
            "'x'",
        ),
        (("--json",), "the following arguments are required: COMMAND"),
        (("--json", "history", "--stack", STACK, "--limit", "many"), "invalid int value"),
    ],
)
def test_usage_errors_are_one_json_document_and_one_line(
    place: Place, args: tuple[str, ...], says: str
) -> None:
    done = place.run(*args)
    line = one_error_line(done, 2)
    payload = one_document(done)
    assert payload == {"error": payload["error"], "error_type": "usage", "exit_code": 2}
    assert says in payload["error"] and says in line


def test_an_rfs_deploy_error_is_one_json_document(place: Place) -> None:
    done = place.run("--json", "status", "--stack", "nope")
    one_error_line(done, 2)
    payload = one_document(done)
    assert payload["exit_code"] == 2 and "nope" in payload["error"]


def test_deploy_json_keeps_progress_on_stderr_and_times_iso(deployed: tuple[Place, dict[str, Any]]) -> None:
    _, run = deployed
    payload = run["payload"]
    assert payload["status"] == "COMPLETED" and payload["exit_code"] == 0
    assert "step 1/9: deploy v2.0.0 to the idle slot" in run["stderr"]
    times = times_in(payload)
    assert len(times) > 20
    assert all(t is None or ISO.match(t) for t in times), times
    assert ISO.match(payload["started_at"]) and ISO.match(payload["ended_at"])


def test_isoformat_times_converts_only_time_keys() -> None:
    doc = {
        "started_at": 1796120154.0,
        "n": 3.5,
        "steps": [{"at": 1796120154.25, "ended_at": None}],
        "ok": True,
    }
    assert isoformat_times(doc) == {
        "started_at": "2026-12-01T10:15:54Z",
        "n": 3.5,
        "steps": [{"at": "2026-12-01T10:15:54.250Z", "ended_at": None}],
        "ok": True,
    }


# --------------------------------------------------------------------------- version, python -m


def test_version_and_python_dash_m(tmp_path: Path) -> None:
    version = package_version()
    assert re.match(r"\A\d+\.\d+", version)
    for argv in (
        [sys.executable, "-m", "rfs_deploy", "--version"],
        [str(Path(sys.executable).with_name("rfs-deploy")), "--version"],
    ):
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"rfs-deploy {version}\n", "")
    done = subprocess.run(
        [sys.executable, "-m", "rfs_deploy", "--json", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert json.loads(done.stdout) == {"version": version, "exit_code": 0}


def test_python_dash_m_runs_a_command(deployed: tuple[Place, dict[str, Any]]) -> None:
    place, run = deployed
    done = subprocess.run(
        [sys.executable, "-m", "rfs_deploy", "status", "--stack", STACK],
        cwd=place.cwd,
        env=place.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{run['payload']['deployment_id']}: COMPLETED 100%")


# --------------------------------------------------------------------------- no traceback


@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_a_closed_stdout_exits_141_without_a_traceback(
    deployed: tuple[Place, dict[str, Any]], json_flag: tuple[str, ...]
) -> None:
    """``rfs-deploy history ... | head -1`` with the reader gone before the output is written."""
    place, _ = deployed
    process = subprocess.Popen(
        place.argv(*json_flag, "history", "--stack", STACK, "--limit", "50"),
        cwd=place.cwd,
        env=place.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader went away
    stderr = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=120) == 141, stderr
    assert stderr == ""


@pytest.fixture
def broken_project(tmp_path: Path) -> Path:
    """A copy of the project whose stack files X and production are not YAML at all."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", project)
    shutil.copytree(REPO / "stacks", project / "stacks")
    broken = "config:\n  rfs-deploy:services: [a\n  b: :\n"
    (project / "stacks" / "Pulumi.X.yaml").write_text(broken)
    (project / "stacks" / "Pulumi.production.yaml").write_text(broken)
    return project


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "--stack", "X", "--service", SERVICE, "--version", "v2.0.0"),
        ("deploy", "--stack", "X", "--service", SERVICE, "--version", "v2.0.0"),
        ("status", "--stack", "X"),
        ("history", "--stack", "X"),
        ("up", "--stack", "X"),
        ("iam-policy", "--stack", "X"),
        ("simulate",),
    ],
)
def test_a_stack_file_that_is_not_yaml_is_one_line_exit_2(
    place: Place, broken_project: Path, args: tuple[str, ...]
) -> None:
    done = place.run(*args, RFS_DEPLOY_PROJECT=str(broken_project))
    line = one_error_line(done, 2)
    assert "is not valid YAML" in line and "line 3, column 4" in line
    assert "Pulumi.X.yaml" in line or "Pulumi.production.yaml" in line


def test_an_unexpected_error_is_one_line_exit_4(deployed: tuple[Place, dict[str, Any]]) -> None:
    """Something nobody raised on purpose (here: stdout cannot encode the history's arrows):
    no traceback, exit 4."""
    place, _ = deployed
    history = ("history", "--stack", STACK)
    line = one_error_line(place.run(*history, PYTHONIOENCODING="ascii"), 4)
    assert line.startswith("rfs-deploy: error: internal error: UnicodeEncodeError: ")
    assert line.endswith("(run with --debug for the traceback)")
    debug = place.run("--debug", *history, PYTHONIOENCODING="ascii")
    assert debug.code == 4 and "Traceback" in debug.stderr  # --debug shows it


def test_a_state_directory_under_a_file_is_bad_input(place: Place, tmp_path: Path) -> None:
    """A state directory that cannot be created (a file is in the way): one line, exit 2."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {"RFS_DEPLOY_STATE": str(blocker / "state")}
    deploy = ("deploy", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0")
    line = one_error_line(place.run(*deploy, **env), 2)
    assert "RFS_DEPLOY_STATE" in line and "not a directory" in line
    done = place.run("--json", *deploy, **env)
    assert one_document(done)["error_type"] == "InvalidInput" and done.code == 2


# --------------------------------------------------------------------------- overrides


PLAN = ("--json", "plan", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0")


def test_steps_and_set_shape_the_plan(place: Place) -> None:
    done = place.run(
        *PLAN, "--strategy", "canary", "--steps", "5,25,50", "--set", "analysis.max_error_rate=0.02"
    )
    assert done.code == 0, done.stderr
    payload = one_document(done)
    assert payload["strategy"]["steps"] == [5, 25, 50]
    weights = [s["description"] for s in payload["steps"] if s["kind"] == "set-weight"]
    assert [w.split()[-1] for w in weights[:3]] == ["5%", "25%", "50%"], weights
    assert payload["overrides"] == {"analysis": {"maxErrorRate": 0.02}, "strategy": {"steps": [5, 25, 50]}}


def test_a_nested_override_keeps_its_siblings(place: Place) -> None:
    done = place.run(*PLAN, "--set", "validation.probe.requests=50")
    assert done.code == 0, done.stderr
    probe = one_document(done)["overrides"]["validation"]["probe"]
    assert probe["requests"] == 50 and probe["concurrency"] == 10  # the stack's own value kept


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("--set", "analysis.maxErrorRat=0.02"),
            "analysis.maxErrorRat: unknown key; did you mean 'maxErrorRate'",
        ),
        (
            ("--set", "analysis.maxErrorRate=2"),
            "analysis.maxErrorRate: Input should be less than or equal to 1",
        ),
        (("--set", "analysis.maxErrorRate"), "--set expects KEY=VALUE"),
        (("--set", "bogus.key=1"), "--set bogus.key: the key must be SECTION.NAME"),
        (("--set", "validation.headers.X-Api-Key=s3cret"), "validation headers are secrets"),
        (("--steps", "5,x"), "--steps '5,x'"),
        (("--strategy", "blue-green", "--steps", "5,25"), "strategy.steps: steps[0]: each step is one of"),
        (("--set", "deploy.maxRollbackAttempts=[1"), "is not a YAML value"),
    ],
)
def test_a_bad_override_is_one_line_exit_2(place: Place, args: tuple[str, ...], says: str) -> None:
    done = place.run(*PLAN[1:], *args)
    assert says in one_error_line(done, 2)
    assert "s3cret" not in done.stderr


def test_deploy_runs_with_its_overrides(place: Place) -> None:
    done = place.run(
        "--json", "deploy", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0",
        "--strategy", "canary", "--steps", "20,60", "--set", "analysis.maxErrorRate=0.03", "--quiet",
    )  # fmt: skip
    assert done.code == 0, done.stderr
    payload = one_document(done)
    assert payload["settings"]["strategy"]["steps"] == [20, 60]
    assert payload["settings"]["analysis"]["maxErrorRate"] == 0.03
    assert [s["description"] for s in payload["steps"] if s["kind"] == "set-weight"][:2] == [
        "set weight 20%",
        "set weight 60%",
    ]


# --------------------------------------------------------------------------- sandbox reset


def test_sandbox_reset_removes_the_sessions_and_records(place: Place) -> None:
    assert place.run("--quiet", "simulate", "--report", "r").code == 0
    assert (place.state / "sandbox" / STACK).is_dir() and (place.state / "deployments" / "sim").is_dir()
    (place.state / "deployments" / "pulumi").mkdir(parents=True)  # not the sandbox's: kept

    done = place.run("--json", "sandbox-reset", "--stack", STACK)
    assert done.code == 0, done.stderr
    removed = one_document(done)["removed"]
    assert str(place.state / "sandbox" / STACK) in removed
    assert len([p for p in removed if "/deployments/sim/" in p]) == 1  # the simulate's record
    assert not (place.state / "sandbox" / STACK).exists()
    assert (place.state / "deployments" / "pulumi").is_dir()

    again = place.run("sandbox-reset")
    assert again.code == 0
    assert set(again.stdout.strip().splitlines()) == {
        f"removed {place.state / 'sandbox'}",
        f"removed {place.state / 'deployments' / 'sim'}",
    }
    assert place.run("sandbox-reset").stdout.strip() == "nothing to remove: the sandbox is empty"
    status = place.run("status", "--stack", STACK)
    assert "no deployments" in one_error_line(status, 2)


# --------------------------------------------------------------------------- heartbeat

STAMP = re.compile(r"\A\[\s*(\d+)s\] (.*)\Z")


def test_long_waits_print_a_heartbeat_at_least_once_a_minute(deployed: tuple[Place, dict[str, Any]]) -> None:
    """Blue-green pauses 60 s (switch delay) and 300 s (scale-down delay) in one sleep each."""
    _, run = deployed
    lines = [m.groups() for m in map(STAMP.match, run["stderr"].splitlines()) if m]
    texts = [text for _, text in lines]
    assert "  … waiting: switch delay, 30s of 60s" in texts
    scale_down = [t for t in texts if t.startswith("  … waiting: scale-down delay, ")]
    assert scale_down == [f"  … waiting: scale-down delay, {s}s of 300s" for s in range(30, 300, 30)]
    stamps = [int(at) for at, _ in lines]
    assert stamps == sorted(stamps) and stamps[-1] >= 360
    assert max(b - a for a, b in itertools.pairwise(stamps)) <= 60
