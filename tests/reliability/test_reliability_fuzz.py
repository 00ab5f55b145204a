"""Fuzzing the files a user hands rfs-deploy: stack files and sandbox scenario files.

Property-based (hypothesis) over whole files, not parsed documents: random bytes, text that is
not UTF-8, not YAML or not a mapping, YAML tags (``!!binary``, ``!!set``, ``!!timestamp``,
``!!python/object``), aliases and alias bombs, deep nesting, huge numbers, booleans for numbers,
bad regions, names and versions with newlines or shell syntax. Every file is either valid or
refused with exactly one error line; through the CLI a refused file is exit 2, no traceback, and
the state directory (a provisioned sandbox session) byte for byte as it was.

The properties run in process (the loaders, and ``rfs_deploy.cli.main``); a handful of named
cases run through a real process.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfs_deploy.cli import main
from rfs_deploy.config.bounded_yaml import MAX_DEPTH
from rfs_deploy.config.loading import load_stack_file, read_namespace, read_other_config
from rfs_deploy.errors import ConfigError, ScenarioError
from rfs_deploy.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "stacks" / "Pulumi.production.yaml"
STACK_DOC = yaml.safe_load(PRODUCTION.read_text())
SCENARIO_DOC = yaml.safe_load((REPO / "rfs_deploy" / "sim" / "scenarios" / "slow-start.yaml").read_text())
STACK = "fuzz"
SERVICE = "api-service"
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CLI = "import sys\nfrom rfs_deploy.cli import main\nsys.exit(main())"


# --------------------------------------------------------------------------- generated files


def alias_bomb(levels: int) -> str:
    """A flow mapping whose last alias stands for 9**levels strings (about 1.5 KB at 9 levels)."""
    parts = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        parts.append(f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]")
    return "{" + ", ".join(parts) + "}"


#: YAML values that must never get past the reader, or past the first non-JSON check.
NASTY_VALUES = st.one_of(
    st.sampled_from(
        [
            "!!binary aGVsbG8gd29ybGQ=",
            "!!set {a, b}",
            "!!timestamp 2024-01-01T00:00:00Z",
            "2024-01-01",
            "!!python/object/apply:os.system [id]",
            "!!python/name:os.system",
            "!!omap [a: 1, b: 2]",
            "!mytag 1",
            ".nan",
            "-.inf",
            "{1: one}",
            "{null: x}",
            "{[a]: b}",
            "&x [*x]",
            "[&y a, *y]",
            "'unclosed",
            "[unclosed",
            "{a: 1, a: 2}",
        ]
    ),
    st.integers(1, 9).map(alias_bomb),
    st.integers(MAX_DEPTH - 2, 3000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(MAX_DEPTH - 2, 200).map(lambda depth: "{a: " * depth + "1" + "}" * depth),
    st.integers(20, 6000).map(lambda digits: "9" * digits),
)

#: Values for a number in the rfs-deploy namespace that the model must refuse.
BAD_NUMBERS = st.sampled_from([True, False, 10**9, 10**20, -1, float("nan"), float("inf"), 1e300, "1e999"])

#: Versions and names with the characters a boot script or a ``$``-anchored check trips on.
BAD_TEXT = st.sampled_from(
    ["v13$(touch /tmp/pwned)", "v13`id`", "v13\n", "v1 3", 'v"', "v;id", "", "x" * 200, "api-service\n"]
)


def numeric_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from numeric_paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from numeric_paths(value, (*prefix, index))
    elif isinstance(doc, int | float) and not isinstance(doc, bool):
        yield prefix


STACK_NUMBERS = list(numeric_paths(STACK_DOC["config"]))
SCENARIO_NUMBERS = list(numeric_paths(SCENARIO_DOC))


def put(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@st.composite
def stack_files(draw: st.DrawFn) -> bytes:
    """A stack file with one kind of fault (or, rarely, none)."""
    kind = draw(
        st.sampled_from(
            ["bytes", "text", "nasty pass-through", "nasty namespace", "number", "region", "name", "version",
             "not utf-8", "not a mapping", "config not a mapping"]
        )
    )  # fmt: skip
    base = dump(STACK_DOC)
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    if kind == "nasty pass-through":
        return (base + f"  myapp:blob: {draw(NASTY_VALUES)}\n").encode()
    if kind == "nasty namespace":
        lines = base.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("  rfs-deploy:tags:"))
        lines[at] = f"  rfs-deploy:tags: {draw(NASTY_VALUES)}"
        return ("\n".join(lines[: at + 1]) + "\n").encode()
    if kind == "number":
        path = draw(st.sampled_from(STACK_NUMBERS))
        return dump({**STACK_DOC, "config": put(STACK_DOC["config"], path, draw(BAD_NUMBERS))}).encode()
    if kind == "region":
        region = draw(st.sampled_from(["moon-1", "us-east-1\n", "US-EAST-1", "us-east-1 ; id", 7, [], {}]))
        return dump({**STACK_DOC, "config": {**STACK_DOC["config"], "aws:region": region}}).encode()
    if kind == "name":
        config = copy.deepcopy(STACK_DOC["config"])
        name = draw(st.sampled_from(["api-service\n", "Api", "a" * 16, "api service", "api\r", "-api"]))
        config["rfs-deploy:services"][name] = config["rfs-deploy:services"].pop(SERVICE)
        config["rfs-deploy:release"][name] = config["rfs-deploy:release"].pop(SERVICE)
        return dump({**STACK_DOC, "config": config}).encode()
    if kind == "version":
        path = ("rfs-deploy:release", SERVICE, "blue", "version")
        return dump({**STACK_DOC, "config": put(STACK_DOC["config"], path, draw(BAD_TEXT))}).encode()
    if kind == "not utf-8":
        data = base.encode()
        at = draw(st.integers(0, len(data)))
        return (
            data[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc"])) + data[at:]
        )
    if kind == "not a mapping":
        return draw(st.sampled_from([b"- a\n- b\n", b"42\n", b"just text\n", b"'quoted'\n", b"[]\n"]))
    return f"config: {draw(st.sampled_from(['[1, 2]', '7', 'text', '!!binary aGk=']))}\n".encode()


@st.composite
def scenario_files(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(["bytes", "text", "nasty", "number", "version", "not utf-8", "not a mapping"])
    )
    base = dump(SCENARIO_DOC)
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    if kind == "nasty":
        key = draw(st.sampled_from(["description", "endpoints", "versions", "seed", "traffic"]))
        return (f"{key}: {draw(NASTY_VALUES)}\n" + base).encode()
    if kind == "number":
        path = draw(st.sampled_from([*SCENARIO_NUMBERS, ("traffic", "requestsPerMinute")]))
        return dump(put(SCENARIO_DOC, path, draw(BAD_NUMBERS))).encode()
    if kind == "version":
        return dump({**SCENARIO_DOC, "versions": {draw(BAD_TEXT): {"errorRate": 0.5}}}).encode()
    if kind == "not utf-8":
        data = base.encode()
        at = draw(st.integers(0, len(data)))
        return data[:at] + b"\xff\xfe" + data[at:]
    return draw(st.sampled_from([b"- a\n", b"42\n", b"text\n"]))


# --------------------------------------------------------------------------- the loaders


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert "Traceback" not in message and len(message) < 600, message


@settings(FUZZ, max_examples=250)
@given(data=stack_files())
def test_a_fuzzed_stack_file_is_valid_or_one_config_error_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / f"Pulumi.{STACK}.yaml"
    path.write_bytes(data)
    for read in (read_namespace, read_other_config, load_stack_file):
        try:
            read(path)
        except ConfigError as exc:
            assert_one_line(str(exc))


@settings(FUZZ, max_examples=200)
@given(data=scenario_files())
def test_a_fuzzed_scenario_file_is_valid_or_one_scenario_error_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    try:
        load_scenario(path)
    except ScenarioError as exc:
        assert_one_line(str(exc))
        assert str(exc).startswith("scenario ")


# --------------------------------------------------------------------------- through the CLI


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes (symlinks as their target)."""
    found: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            found[rel] = path.read_bytes()
        else:
            found[rel + "/"] = b""
    return found


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project with a valid stack ``fuzz`` and its provisioned sandbox session in ``.state``."""
    root = tmp_path_factory.mktemp("fuzz-project")
    (root / "stacks").mkdir()
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    (root / "stacks" / f"Pulumi.{STACK}.yaml").write_text(PRODUCTION.read_text())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RFS_DEPLOY_PROJECT", str(root))
        mp.setenv("RFS_DEPLOY_STATE", str(root / ".state"))
        assert main(["--backend", "sim", "--quiet", "up", "--stack", STACK]) == 0
    yield root


def run_cli(argv: list[str], project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RFS_DEPLOY_PROJECT", str(project))
        mp.setenv("RFS_DEPLOY_STATE", str(project / ".state"))
        mp.delenv("RFS_DEPLOY_SCENARIO", raising=False)
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, [line for line in err.splitlines() if line.strip()], out


def assert_refused(code: int, lines: list[str]) -> None:
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("rfs-deploy: error: ")
    assert_one_line(lines[0])


def refusal(data: bytes, tmp: Path) -> str | None:
    """Who refuses ``data`` as a stack file: ``reader`` (the file itself: YAML, JSON values,
    ``aws:region``), ``model`` (the rfs-deploy namespace), or None (valid)."""
    path = tmp / f"Pulumi.{STACK}.yaml"
    path.write_bytes(data)
    try:
        read_namespace(path)
        read_other_config(path)
    except ConfigError:
        return "reader"
    try:
        load_stack_file(path)
    except ConfigError:
        return "model"
    return None


COMMANDS = {
    "plan": ["plan", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0"],
    "deploy": ["deploy", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0"],
    "up": ["up", "--stack", STACK],
    "status": ["status", "--stack", STACK],
    "history": ["history", "--stack", STACK],
    "rollback": ["rollback", "--stack", STACK, "--service", SERVICE],
}


@settings(FUZZ, max_examples=40)
@given(data=stack_files(), command=st.sampled_from(sorted(COMMANDS)))
def test_the_cli_refuses_a_fuzzed_stack_file_in_one_line_and_changes_nothing(
    project: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    data: bytes,
    command: str,
) -> None:
    """A file the reader refuses (not UTF-8, not YAML, not a mapping, aliases, depth, values
    JSON cannot carry, a bad region) is refused by every command while a session exists, and
    the session is left byte for byte as it was."""
    if refusal(data, tmp_path_factory.mktemp("probe")) != "reader":
        return  # valid, or refused by the model (below)
    stack_file = project / "stacks" / f"Pulumi.{STACK}.yaml"
    good = stack_file.read_bytes()
    before = snapshot(project / ".state")
    stack_file.write_bytes(data)
    try:
        code, lines, _ = run_cli(["--backend", "sim", *COMMANDS[command]], project, capsys)
    finally:
        stack_file.write_bytes(good)
    assert_refused(code, lines)
    assert "config" in lines[0]
    assert snapshot(project / ".state") == before


def fresh_project(root: Path, data: bytes) -> Path:
    (root / "stacks").mkdir()
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    (root / ".state").mkdir()
    (root / ".state" / "keep").write_text("untouched\n")
    (root / "stacks" / f"Pulumi.{STACK}.yaml").write_bytes(data)
    return root


@settings(FUZZ, max_examples=30)
@given(data=stack_files())
def test_plan_refuses_a_stack_file_the_model_refuses_in_one_line_and_writes_nothing(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    if refusal(data, tmp_path_factory.mktemp("probe")) != "model":
        return
    root = fresh_project(tmp_path_factory.mktemp("fresh"), data)
    before = snapshot(root / ".state")
    code, lines, _ = run_cli(["--backend", "sim", *COMMANDS["plan"]], root, capsys)
    assert_refused(code, lines)
    assert lines[0].startswith("rfs-deploy: error: config ")
    assert snapshot(root / ".state") == before


MODEL_REFUSED = dump(
    put(STACK_DOC, ("config", "rfs-deploy:services", SERVICE, "instanceCount"), True)
).encode()


@pytest.mark.parametrize("command", ["deploy", "up", "rollback"])
def test_stack_changing_commands_refuse_a_model_refused_stack_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    root = fresh_project(tmp_path, MODEL_REFUSED)
    code, lines, _ = run_cli(["--backend", "sim", *COMMANDS[command]], root, capsys)
    assert_refused(code, lines)
    assert "instanceCount" in lines[0] and "a boolean is not a number" in lines[0]
    assert not (root / ".state" / "sandbox" / STACK / "state.json").exists()


@pytest.mark.parametrize("command", ["deploy", "up", "rollback"])
def test_stack_changing_commands_leave_the_state_dir_unchanged_for_a_model_refused_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    root = fresh_project(tmp_path, MODEL_REFUSED)
    before = snapshot(root / ".state")
    code, lines, _ = run_cli(["--backend", "sim", *COMMANDS[command]], root, capsys)
    assert_refused(code, lines)
    assert snapshot(root / ".state") == before


@settings(FUZZ, max_examples=25)
@given(data=scenario_files())
def test_the_cli_refuses_a_fuzzed_scenario_file_in_one_line_and_changes_nothing(
    project: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    path = tmp_path_factory.mktemp("scenario") / "fuzz.yaml"
    path.write_bytes(data)
    try:
        load_scenario(path)
        return  # valid: a deployment would run with it
    except ScenarioError:
        pass
    before = snapshot(project / ".state")
    code, lines, _ = run_cli(
        ["--backend", "sim", *COMMANDS["deploy"], "--scenario", str(path)], project, capsys
    )
    assert_refused(code, lines)
    assert "scenario" in lines[0]
    assert snapshot(project / ".state") == before


# --------------------------------------------------------------------------- named cases

INJECTIONS = ["v13$(touch {marker})", "v13`touch {marker}`", "v13\ntouch {marker}", "v13; touch {marker}"]


@pytest.mark.parametrize("template", INJECTIONS, ids=["$()", "backticks", "newline", "semicolon"])
@pytest.mark.parametrize("command", ["plan", "deploy", "simulate"])
def test_a_version_with_shell_syntax_is_a_usage_error_before_anything_is_touched(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], template: str, command: str
) -> None:
    marker = tmp_path / "pwned"
    version = template.format(marker=marker)
    argv = ["simulate", "--version", version] if command == "simulate" else [*COMMANDS[command][:-1], version]
    before = snapshot(project / ".state")
    code, lines, out = run_cli(["--backend", "sim", *argv], project, capsys)
    assert_refused(code, lines)
    assert "argument --version" in lines[0] and "is not a version" in lines[0]
    assert out == ""
    assert snapshot(project / ".state") == before
    assert not marker.exists()


def test_an_alias_bomb_under_a_pass_through_key_is_refused_and_the_session_kept(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: ~1.5 KB of aliases under ``myapp:blob`` expanded into a 7 MB session
    file. Refused by the reader, so it is never expanded and the session is not rewritten."""
    bomb = PRODUCTION.read_text() + f"  myapp:blob: {alias_bomb(9)}\n"
    assert len(alias_bomb(9)) < 2048
    stack_file = project / "stacks" / f"Pulumi.{STACK}.yaml"
    good = stack_file.read_bytes()
    before = snapshot(project / ".state")
    stack_file.write_text(bomb)
    try:
        for command in ("up", "plan", "deploy"):
            code, lines, _ = run_cli(["--backend", "sim", *COMMANDS[command]], project, capsys)
            assert_refused(code, lines)
            assert "YAML aliases (*a0) are not accepted" in lines[0]
    finally:
        stack_file.write_bytes(good)
    assert snapshot(project / ".state") == before
    assert max(len(v) for v in before.values()) < 1_000_000


def test_a_scenario_of_10_to_the_20_requests_a_minute_is_refused_before_the_deployment(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "flood.yaml"
    path.write_text(dump({**SCENARIO_DOC, "traffic": {"requestsPerMinute": 10**20}}))
    before = snapshot(project / ".state")
    code, lines, _ = run_cli(
        ["--backend", "sim", *COMMANDS["deploy"], "--scenario", str(path)], project, capsys
    )
    assert_refused(code, lines)
    assert "traffic.requestsPerMinute" in lines[0]
    assert snapshot(project / ".state") == before


def _real(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RFS_DEPLOY_PROJECT": str(project), "RFS_DEPLOY_STATE": str(project / ".state")}
    env.pop("RFS_DEPLOY_SCENARIO", None)
    return subprocess.run(
        [sys.executable, "-c", CLI, "--backend", "sim", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


REAL_FILES = {
    "alias bomb": (PRODUCTION.read_text() + f"  myapp:blob: {alias_bomb(9)}\n").encode(),
    "not utf-8": PRODUCTION.read_bytes() + b"  myapp:x: \xff\xfe\n",
    "deep nesting": PRODUCTION.read_bytes() + b"  myapp:x: " + b"[" * 5000 + b"\n",
    "a timestamp": PRODUCTION.read_bytes() + b"  myapp:when: 2024-01-01\n",
}


def test_refused_files_through_a_real_process(project: Path, tmp_path: Path) -> None:
    """A few cases end to end in a new process: exit 2, one line, no traceback, nothing changed."""
    stack_file = project / "stacks" / f"Pulumi.{STACK}.yaml"
    good = stack_file.read_bytes()
    before = snapshot(project / ".state")
    marker = tmp_path / "pwned"
    try:
        runs = []
        for data in REAL_FILES.values():
            stack_file.write_bytes(data)
            runs.append(_real(project, *COMMANDS["deploy"]))
        stack_file.write_bytes(good)
        flood = tmp_path / "flood.yaml"
        flood.write_text("traffic: {requestsPerMinute: 100000000000000000000}\n")
        runs.append(_real(project, *COMMANDS["deploy"], "--scenario", str(flood)))
        runs.append(_real(project, *COMMANDS["deploy"][:-1], f"v13$(touch {marker})"))
    finally:
        stack_file.write_bytes(good)
    for done in runs:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert_refused(done.returncode, lines)
        assert "Traceback" not in done.stderr
    assert snapshot(project / ".state") == before
    assert not marker.exists()
