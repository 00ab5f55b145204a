"""Bad input: always one error line and exit 2, never a traceback, never a stack update.

Property-based (hypothesis) over the stack config namespace, sandbox scenario files and CLI
arguments; then the named cases (wrong stack, unknown service, unknown history version, a broken
scenario file) in process and, for a few, through a real subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import endstate
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mutations import mutated

from rfs_deploy.cli import main
from rfs_deploy.config.loading import load_stack_config, read_namespace
from rfs_deploy.errors import ConfigError, ScenarioError
from rfs_deploy.sim.scenario import load_scenario, parse_scenario

REPO = Path(__file__).resolve().parents[2]
STACK_FILE = REPO / "stacks" / "Pulumi.production.yaml"
NAMESPACE = read_namespace(STACK_FILE)
SCENARIO = yaml.safe_load((REPO / "rfs_deploy" / "sim" / "scenarios" / "slow-start.yaml").read_text())
SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """``rfs-deploy ARGV`` in process: (exit code, stderr lines, stdout)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, [line for line in err.splitlines() if line.strip()], out


def assert_one_error_line(code: int, lines: list[str]) -> None:
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("rfs-deploy: error: ")
    assert "Traceback" not in lines[0]


# --------------------------------------------------------------------------- stack config


@settings(max_examples=300, deadline=None)
@given(mutated(NAMESPACE))
def test_a_mutated_stack_config_is_valid_or_one_config_error_line(case: tuple[str, dict[str, Any]]) -> None:
    _, namespace = case
    try:
        load_stack_config(namespace)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("config ")


def project_with(tmp: Path, namespace: dict[str, Any], stack: str = "mutant") -> Path:
    """A project directory whose stacks/Pulumi.<stack>.yaml holds ``namespace``."""
    (tmp / "stacks").mkdir(parents=True, exist_ok=True)
    (tmp / "Pulumi.yaml").write_text("name: rfs-deploy\nruntime: python\nstackConfigDir: stacks\n")
    config = {"aws:region": "us-east-1", **{f"rfs-deploy:{k}": v for k, v in namespace.items()}}
    (tmp / "stacks" / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp


@settings(SLOW, max_examples=60)
@given(case=mutated(NAMESPACE), command=st.sampled_from(["plan", "deploy", "up"]))
def test_the_cli_refuses_a_broken_stack_file_with_one_line_and_no_update(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, dict[str, Any]],
    command: str,
) -> None:
    _, namespace = case
    try:
        load_stack_config(namespace)
        assume(False)  # still valid: not a bad input
    except ConfigError:
        pass
    root = project_with(tmp_path_factory.mktemp("project"), namespace)
    args = ["--stack", "mutant"]
    if command != "up":
        args += ["--service", "api-service", "--version", "v2.0.0"]
    env = {"RFS_DEPLOY_PROJECT": str(root), "RFS_DEPLOY_STATE": str(root / ".state")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        code, lines, _ = run_cli(["--backend", "sim", command, *args], capsys)
    assert_one_error_line(code, lines)
    assert "config" in lines[0]
    assert not (root / ".state" / "sandbox" / "mutant" / "state.json").exists()  # no stack update ran


# --------------------------------------------------------------------------- scenarios


@settings(max_examples=300, deadline=None)
@given(mutated(SCENARIO))
def test_a_mutated_scenario_is_valid_or_one_scenario_error_line(case: tuple[str, dict[str, Any]]) -> None:
    _, doc = case
    try:
        parse_scenario(doc, "mutant.yaml")
    except ScenarioError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("scenario mutant.yaml")


@SLOW
@given(st.sampled_from(["- a list\n", "traffic: [", "seed: x\n", "metrics: {throttled: 2}\n", "bogus: 1\n"]))
def test_a_broken_scenario_file_is_one_line(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("scenario") / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- CLI arguments

VALID = {
    "deploy": ["--stack", "production", "--service", "api-service", "--version", "v2.0.0"],
    "plan": ["--stack", "production", "--service", "api-service", "--version", "v2.0.0"],
    "rollback": ["--stack", "production", "--service", "api-service", "--to", "1"],
    "status": ["--stack", "production"],
    "history": ["--stack", "production", "--limit", "3"],
    "resume": ["--stack", "production"],
    "simulate": ["--strategy", "canary"],
}


@st.composite
def broken_argv(draw: st.DrawFn) -> list[str]:
    """A valid command line with one fault a parser must catch."""
    command = draw(st.sampled_from(sorted(VALID)))
    args = list(VALID[command])
    fault = draw(st.sampled_from(["flag", "drop", "choice", "int", "command", "empty"]))
    if fault == "flag":
        args.insert(draw(st.integers(0, len(args))), draw(st.sampled_from(["--bogus", "--stak", "-x"])))
    elif fault == "drop" and "--stack" in args:
        i = args.index("--stack")
        del args[i : i + 2]
    elif fault == "choice":
        args += ["--strategy" if command in ("deploy", "plan", "simulate") else "--limit", "blue_green"]
    elif fault == "int" and command in ("rollback", "history", "simulate"):
        flag = {"rollback": "--to", "history": "--limit", "simulate": "--seed"}[command]
        args += [flag, draw(st.sampled_from(["two", "1.5", "", "0x10"]))]
    elif fault == "command":
        command = draw(st.sampled_from(["deploi", "rollbak", "", "--"]))
    else:
        args += ["--stack"]  # a flag without its value
    backend = draw(st.sampled_from([["--backend", "sim"], ["--backend", "aws"], []]))
    return [*backend, command, *args]


@SLOW
@given(argv=broken_argv())
def test_bad_arguments_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], state: Path, argv: list[str]
) -> None:
    code, lines, out = run_cli(argv, capsys)

    assert_one_error_line(code, lines)
    assert out == ""
    assert not (state / "sandbox").exists()  # refused before any sandbox was opened


# --------------------------------------------------------------------------- named cases


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A provisioned sandbox session (``rfs-deploy up``) shared by the named cases."""
    directory = tmp_path_factory.mktemp("named")
    old = os.environ.get("RFS_DEPLOY_STATE")
    os.environ["RFS_DEPLOY_STATE"] = str(directory)
    try:
        assert main(["--backend", "sim", "--quiet", "up", "--stack", "production"]) == 0
    finally:
        if old is None:
            os.environ.pop("RFS_DEPLOY_STATE")
        else:
            os.environ["RFS_DEPLOY_STATE"] = old
    return directory


NAMED = [
    (
        ["deploy", "--stack", "nope", "--service", "api-service", "--version", "v2.0.0"],
        "unknown stack 'nope'",
    ),
    (["deploy", "--stack", "production", "--service", "nope", "--version", "v2.0.0"], "unknown service"),
    (["rollback", "--stack", "production", "--service", "api-service", "--to", "99"], "no version 99"),
    (["deploy", "--stack", "production", "--service", "api-service", "--version", "v9.9.9"], "v9.9.9"),
    (["deploy", "--stack", "production", "--service", "api-service", "--version", "v1.0.0"], "v1.0.0"),
    (["status", "--stack", "production", "nosuchid"], "nosuchid"),
    (["resume", "--stack", "production"], "no open deployment"),
    (["abort", "--stack", "production"], "no open deployment"),
    (
        [
            "deploy",
            "--stack",
            "production",
            "--service",
            "api-service",
            "--version",
            "v2.0.0",
            "--scenario",
            "eror-spike",
        ],
        "did you mean 'error-spike'",
    ),
]


@pytest.mark.parametrize(("argv", "says"), NAMED, ids=[" ".join(a[:1] + a[-1:]) for a, _ in NAMED])
def test_named_bad_input_is_one_line_exit_2_and_no_update(
    session: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(session))
    before = endstate.history_entries(session)

    code, lines, _ = run_cli(["--backend", "sim", *argv], capsys)

    assert_one_error_line(code, lines)
    assert says in lines[0]
    assert endstate.history_entries(session) == before


def test_named_bad_input_through_a_real_process(session: Path) -> None:
    env = {**os.environ, "RFS_DEPLOY_STATE": str(session), "RFS_DEPLOY_PROJECT": str(REPO)}
    cli = [
        sys.executable,
        "-c",
        "import sys\nfrom rfs_deploy.cli import main\nsys.exit(main())",
        "--backend",
        "sim",
    ]
    cases = [NAMED[0], NAMED[1], NAMED[2], (["deploy", "--stack"], "expected one argument")]
    before = endstate.history_entries(session)

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *argv], env=env, capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, [argv for argv, _ in cases]))
    for (_, says), done in zip(cases, results, strict=True):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert_one_error_line(done.returncode, lines)
        assert says in lines[0]
    assert endstate.history_entries(session) == before
