"""The state directory under attack and damage, and the command line's edge.

* Stack names that are paths (``../sandbox/production``, absolute, ``.``, overlong) are refused
  with one line before they reach a path, by the CLI and by the Python API.
* Links planted in the state directory (the save lock, the session lock, ``state.json``, the
  generation file, the session directory, the records directory, the fingerprint key) are never
  followed: one line naming the file, exit 2, nothing written outside or inside.
* A damaged ``state.json`` (truncated, empty, ``{}``, ``null``, not UTF-8) or a half-written
  deployment record: one line naming the command that recovers, exit 2, the state directory
  unchanged; read-only commands leave every byte as it was.
* A full disk (``RLIMIT_FSIZE`` in the child): one line, no temporary file left, every state file
  still whole.
* ``simulate``: every input checked before the old session is replaced; a session with an open
  deployment, or held by a running ``deploy`` (real processes), is refused, not wiped.
* ``--report`` and ``RFS_DEPLOY_STATE`` naming files are refused before anything runs.
* A hypothesis fuzz over CLI arguments (stack names, seeds, report paths, durations).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import crashkit
import endstate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reliability_input import run_cli

from rfs_deploy.connect import check_stack_name, open_seams
from rfs_deploy.errors import DamagedState, InvalidInput
from rfs_deploy.rollback import KEY_BYTES, KEY_FILE, Checkpoint, RollbackManager
from rfs_deploy.sim import session_directory

STACK, SERVICE = crashkit.STACK, crashkit.SERVICE
SESSION = Path("sandbox") / STACK
DEPLOY = ["deploy", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0", "--strategy", "blue-green"]
RESET = f"rfs-deploy sandbox-reset --stack {STACK}"
#: Files a refused stack-changing command may touch: the session lock and who holds it.
LOCKS = (".lock", ".holder")


# --------------------------------------------------------------------------- harness


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory with the stack provisioned (``up``)."""
    return crashkit.fresh_base(tmp_path_factory.mktemp("state-base"))


@pytest.fixture(scope="module")
def killed(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``base`` with a deployment killed half-way (open in the journal, its record on disk)."""
    state = crashkit.copy_state(base, tmp_path_factory.mktemp("state-killed") / "state")
    done = crashkit.cli(state, "--quiet", *DEPLOY, RFS_DEPLOY_SIM_KILL="mid:3")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert endstate.journal_view(endstate.history_entries(state))["status"] == "in-progress"
    assert len(list((state / "deployments" / "sim").glob("*.json"))) == 1
    return state


def copy_of(src: Path, tmp_path: Path) -> Path:
    return crashkit.copy_state(src, tmp_path / "state")


def snapshot(state: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes | str]:
    """Every file under ``state``: its bytes (a link: where it points), lock files aside."""
    seen: dict[str, bytes | str] = {}
    if not state.exists():
        return seen
    for path in sorted(state.rglob("*")):
        name = str(path.relative_to(state))
        if path.name.endswith(skip):
            continue
        if path.is_symlink():
            seen[name] = f"-> {os.readlink(path)}"
        elif path.is_file():
            seen[name] = path.read_bytes()
        else:
            seen[name] = "dir"
    return seen


def one_line(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single error line of a refused command (no traceback)."""
    assert done.returncode == code, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("rfs-deploy: error: ")
    return lines[0]


def cli(state: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return crashkit.cli(state, "--quiet", *args, **env)


def in_parallel(
    jobs: list[Callable[[], subprocess.CompletedProcess[str]]],
) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda job: job(), jobs))


# --------------------------------------------------------------------------- stack names

BAD_NAMES = [
    "../sandbox/production",
    "production/../production",
    "/etc/production",
    "acme/../../production",
    ".",
    "..",
    "a/b/c/production",
    "x" * 101,
    "y" * 5000,
    "*",
    "prod uction",
    "production\n",
    "",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:30]))
@pytest.mark.parametrize("command", ["status", "history", "deploy", "sandbox-reset", "iam-policy"])
def test_a_path_like_stack_name_is_one_line_before_any_path_is_made(
    name: str, command: str, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--backend", "sim", command, "--stack", name]
    if command == "deploy":
        argv += ["--service", SERVICE, "--version", "v2.0.0"]
    code, lines, out = run_cli(argv, capsys)

    assert out == ""
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("rfs-deploy: error: argument --stack: ") and "not a stack name" in lines[0]
    assert "Traceback" not in lines[0] and len(lines[0]) < 400
    assert not state.exists()


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:30]))
def test_the_python_api_refuses_a_path_like_stack_name(name: str, state: Path) -> None:
    with pytest.raises(InvalidInput, match="not a stack name"):
        open_seams(name, backend="sim")
    with pytest.raises(InvalidInput):
        session_directory(state, name)
    assert not state.exists()


@pytest.mark.parametrize(
    "name", ["production", "acme/rfs-deploy/production", "org/dev", "a.b_c-9", "p" * 100]
)
def test_pulumi_stack_names_are_accepted(name: str) -> None:
    assert check_stack_name(name) == name


def test_a_nul_in_a_stack_name_is_refused() -> None:
    with pytest.raises(InvalidInput):
        check_stack_name("prod\x00uction")


# --------------------------------------------------------------------------- links

LINKED = [
    SESSION / ".save.lock",
    SESSION / "update.lock",
    SESSION / "state.json",
    SESSION / "state.gen",
    SESSION,
    Path("sandbox") / f".{STACK}.lock",
    Path("deployments"),
]


@pytest.mark.parametrize("where", LINKED, ids=str)
def test_a_planted_link_in_the_state_dir_is_never_followed(base: Path, tmp_path: Path, where: Path) -> None:
    state = copy_of(base, tmp_path)
    outside = tmp_path / "outside"
    target = state / where
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    target.symlink_to(outside)
    before = snapshot(state)

    done = cli(state, *DEPLOY)

    line = one_line(done)
    assert str(target) in line and "symbolic link" in line
    assert not outside.exists()  # nothing created through the link
    assert snapshot(state) == before  # nothing written in the state dir either


def test_a_linked_deployment_record_is_named_not_read(killed: Path, tmp_path: Path) -> None:
    state = copy_of(killed, tmp_path)
    [record] = (state / "deployments" / "sim").glob("*.json")
    secret = tmp_path / "elsewhere.json"
    secret.write_text(record.read_text())
    record.unlink()
    record.symlink_to(secret)
    before = snapshot(state)

    results = in_parallel(
        [
            lambda: cli(state, "status", "--stack", STACK, record.stem),
            lambda: cli(state, "history", "--stack", STACK),
        ]
    )

    for done in results:
        assert str(record) in one_line(done)
    assert snapshot(state) == before


def a_checkpoint(checkpoint_id: str = "cp-1") -> Checkpoint:
    """A checkpoint of the service with no stack version (enough for files and fingerprints)."""
    return Checkpoint(
        checkpoint_id=checkpoint_id,
        service_name=SERVICE,
        version="v1",
        environment=STACK,
        created_at="now",
        stack_version=None,
        release=None,
    )


def test_checkpoint_files_are_never_followed_through_links_nor_named_by_paths(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    outside = tmp_path / "outside.json"
    checkpoint = a_checkpoint("cp-20261201120000-abcdef")
    (directory / f"{checkpoint.checkpoint_id}.json").symlink_to(outside)
    manager = RollbackManager(directory=directory)

    with pytest.raises(DamagedState, match="symbolic link"):
        manager._write(checkpoint)
    assert not outside.exists()
    with pytest.raises(DamagedState, match="symbolic link"):
        manager.get_checkpoint(checkpoint.checkpoint_id)

    (directory / f"{checkpoint.checkpoint_id}.json").unlink()
    manager._write(checkpoint)
    assert manager.get_checkpoint(checkpoint.checkpoint_id) == checkpoint
    assert oct((directory / f"{checkpoint.checkpoint_id}.json").stat().st_mode & 0o777) == "0o600"
    (directory / "cp-20261201120001-000000.json").write_text('{"checkpoint_id": ')
    with pytest.raises(DamagedState, match=r"checkpoint file .* is damaged .*: remove it"):
        manager.list_checkpoints()
    for bad in ("../checkpoints/cp-20261201120000-abcdef", "/etc/passwd", "cp-1\n"):
        with pytest.raises(InvalidInput, match="is not a checkpoint id"):
            manager.get_checkpoint(bad)


def test_a_planted_fingerprint_key_link_is_never_used(tmp_path: Path) -> None:
    chosen = tmp_path / "attacker-key"
    chosen.write_bytes(b"k" * KEY_BYTES)
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / KEY_FILE).symlink_to(chosen)
    manager = RollbackManager(directory=directory)
    checkpoint = a_checkpoint()

    with pytest.raises(DamagedState, match="symbolic link") as caught:
        manager.environment_drift(checkpoint, {"A": "1"})
    assert str(directory / KEY_FILE) in str(caught.value)

    (directory / KEY_FILE).unlink()
    (directory / KEY_FILE).symlink_to(tmp_path / "dangling")
    with pytest.raises(DamagedState):
        manager.environment_drift(checkpoint, {"A": "1"})
    assert not (tmp_path / "dangling").exists()


def test_the_fingerprint_key_is_made_whole_private_and_kept(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    checkpoint = a_checkpoint()
    RollbackManager(directory=directory).environment_drift(checkpoint, {"A": "1"})
    key = directory / KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == KEY_BYTES
    first = key.read_bytes()
    RollbackManager(directory=directory).environment_drift(checkpoint, {"A": "1"})
    assert key.read_bytes() == first
    assert [p.name for p in directory.iterdir()] == [KEY_FILE]  # no temporary file left

    key.write_bytes(b"short")  # damaged: never used as a key
    with pytest.raises(DamagedState, match="not a key"):
        RollbackManager(directory=directory).environment_drift(checkpoint, {"A": "1"})


# --------------------------------------------------------------------------- damaged state


def damage(path: Path, kind: str) -> None:
    data = path.read_bytes()
    path.write_bytes(
        {
            "truncated": data[: len(data) // 3],
            "empty": b"",
            "object": b"{}",
            "null": b"null",
            "not-utf8": b"\xff\xfe" + data[2:],
            "list": b"[]",
        }[kind]
    )


@pytest.mark.parametrize("kind", ["truncated", "empty", "object", "null", "not-utf8"])
def test_a_damaged_session_is_one_line_naming_sandbox_reset_and_is_never_replaced(
    killed: Path, tmp_path: Path, kind: str
) -> None:
    state = copy_of(killed, tmp_path)
    damage(state / SESSION / "state.json", kind)
    before = snapshot(state)

    readonly = in_parallel(
        [
            lambda: cli(state, "status", "--stack", STACK),
            lambda: cli(state, "history", "--stack", STACK),
            lambda: cli(state, "plan", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0"),
        ]
    )
    for done in readonly:
        line = one_line(done)
        assert "damaged" in line and RESET in line
    assert snapshot(state) == before  # read-only: every byte as it was, not even a lock file

    changing = in_parallel(
        [
            lambda: cli(state, *DEPLOY),
            lambda: cli(state, "resume", "--stack", STACK, "--service", SERVICE),
            lambda: cli(state, "abort", "--stack", STACK, "--service", SERVICE),
            lambda: cli(state, "simulate"),
        ]
    )
    for done in changing:
        line = one_line(done)
        assert "damaged" in line and RESET in line
    # a refused stack-changing command touches at most the session lock and its holder note
    assert snapshot(state, skip=LOCKS) == {k: v for k, v in before.items() if not k.endswith(LOCKS)}

    # the named command recovers
    assert cli(state, "sandbox-reset", "--stack", STACK).returncode == 0
    assert cli(state, "up", "--stack", STACK).returncode == 0


def test_a_half_written_record_is_one_line_naming_it(killed: Path, tmp_path: Path) -> None:
    state = copy_of(killed, tmp_path)
    [record] = (state / "deployments" / "sim").glob("*.json")
    record.write_bytes(record.read_bytes()[:200])
    before = snapshot(state)

    readonly = in_parallel(
        [
            lambda: cli(state, "status", "--stack", STACK, record.stem),
            lambda: cli(state, "history", "--stack", STACK),
        ]
    )
    for done in readonly:
        line = one_line(done)
        assert str(record) in line and f"rm {record}" in line
    assert snapshot(state) == before

    for done in in_parallel(
        [
            lambda: cli(state, "resume", "--stack", STACK, "--service", SERVICE),
            lambda: cli(state, "status", "--stack", STACK),
        ]
    ):
        assert str(record) in one_line(done)
    assert snapshot(state, skip=LOCKS) == {k: v for k, v in before.items() if not k.endswith(LOCKS)}

    record.unlink()  # the named recovery: the journal keeps where the deployment stands
    assert cli(state, "status", "--stack", STACK).returncode == 0


# --------------------------------------------------------------------------- a full disk


def run_with_file_limit(state: Path, limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``rfs-deploy ARGS`` unable to write a file larger than ``limit`` bytes (as a full disk
    would refuse the write: EFBIG instead of ENOSPC, the same path through the code)."""

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [*crashkit.CLI, "--backend", "sim", "--quiet", *args],
        env={**crashkit.env(state), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited,
        check=False,
    )


def whole_state(state: Path) -> None:
    """No temporary file anywhere, every JSON file complete."""
    leftovers = [p for p in state.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".state-")]
    assert leftovers == []
    for path in state.rglob("*.json"):
        json.loads(path.read_text())


def test_a_full_disk_during_a_first_update_is_one_line_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = run_with_file_limit(state, 20_000, "up", "--stack", STACK)

    line = one_line(done, code=4)
    assert "could not write" in line and "state.json" in line
    whole_state(state)


def test_a_full_disk_during_a_deployment_is_one_line_and_leaves_no_temporary_file(
    base: Path, tmp_path: Path
) -> None:
    state = copy_of(base, tmp_path)
    size = (state / SESSION / "state.json").stat().st_size
    done = run_with_file_limit(state, size + 2_000, *DEPLOY)

    line = one_line(done, code=4)
    assert "could not write" in line
    whole_state(state)
    assert cli(state, "status", "--stack", STACK).returncode == 0  # what was saved reads back


# --------------------------------------------------------------------------- simulate and --report


def simulate_cases(tmp: Path) -> list[tuple[list[str], str]]:
    a_file = tmp / "a-file"
    a_file.write_text("x")
    return [
        (["simulate", "--seed", "-1"], "--seed"),
        (["simulate", "--seed", str(2**32)], "--seed"),
        (["simulate", "--version", "v9"], "v9"),
        (["simulate", "--report", "/dev/null/x"], "/dev/null"),
        (["simulate", "--report", str(a_file)], "not a directory"),
        (["simulate", "--report", str(a_file / "under")], "not a directory"),
        (["simulate", "--scenario", "nope"], "nope"),
        (["simulate"], "open deployment"),
    ]


def test_simulate_checks_everything_before_it_replaces_a_session(killed: Path, tmp_path: Path) -> None:
    state = copy_of(killed, tmp_path)
    before = {k: v for k, v in snapshot(state).items() if not k.endswith(LOCKS)}
    cases = simulate_cases(tmp_path)

    results = in_parallel([lambda argv=argv: cli(state, *argv) for argv, _ in cases])

    for (argv, says), done in zip(cases, results, strict=True):
        line = one_line(done)
        assert says in line, (argv, line)
    assert snapshot(state, skip=LOCKS) == before  # the killed deployment's journal is still there
    refusal = one_line(results[-1])
    assert "abort --stack production --service api-service" in refusal and RESET in refusal


def test_a_report_dir_that_cannot_be_made_is_refused_before_the_deployment(
    base: Path, tmp_path: Path
) -> None:
    state = copy_of(base, tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    before = snapshot(state)

    results = in_parallel(
        [lambda where=where: cli(state, *DEPLOY, "--report", where) for where in ("/dev/null/x", str(a_file))]
    )

    for done in results:
        assert "--report" in one_line(done)
    assert snapshot(state) == before  # no record, no stack update


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_a_state_dir_that_is_a_file_is_one_line(tmp_path: Path, where: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    state = a_file if where == "file" else a_file / "state"

    done = cli(state, "status", "--stack", STACK)

    assert "RFS_DEPLOY_STATE" in one_line(done)
    assert a_file.read_text() == "x"


def test_status_of_a_wildcard_id_is_one_line(killed: Path, tmp_path: Path) -> None:
    state = copy_of(killed, tmp_path)
    before = snapshot(state)
    assert "'*'" in one_line(cli(state, "status", "--stack", STACK, "*"))
    assert snapshot(state) == before


def while_deploying(
    state: Path, run: Callable[[], subprocess.CompletedProcess[str]]
) -> tuple[subprocess.CompletedProcess[str], int, str, str]:
    """``run`` while a paced ``deploy`` of the session is at step 2 (a real process holding the
    session); (run's result, the deploy's exit code, the rest of its stderr, its stdout)."""
    deploy = subprocess.Popen(
        [*crashkit.CLI, "--backend", "sim", *DEPLOY],
        env=crashkit.env(state, RFS_DEPLOY_SIM_PACE="0.003"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert deploy.stderr is not None and deploy.stdout is not None
    try:
        for line in deploy.stderr:
            if crashkit.STEP_LINE.match(line) and " step 2/" in line:
                break
        else:
            raise AssertionError("the deployment never reached step 2")
        done = run()
    finally:
        rest = deploy.stderr.read()
        out = deploy.stdout.read()
        code = deploy.wait(timeout=300)
    return done, code, rest, out


def test_simulate_started_while_a_deploy_runs_is_refused_and_the_deploy_completes(
    base: Path, tmp_path: Path
) -> None:
    state = copy_of(base, tmp_path)
    simulate, code, rest, out = while_deploying(state, lambda: cli(state, "simulate"))

    line = one_line(simulate)
    assert "in use by pid" in line and "deploy --stack production" in line
    assert code == 0, rest[-2000:]
    journal = endstate.journal_view(endstate.history_entries(state))
    assert journal["status"] == "completed" and journal["deployment"] in out


@pytest.mark.parametrize("scope", [(), ("--stack", STACK)], ids=["every-stack", "one-stack"])
def test_sandbox_reset_refuses_while_a_deploy_holds_the_session(
    base: Path, tmp_path: Path, scope: tuple[str, ...]
) -> None:
    state = copy_of(base, tmp_path)
    reset, code, rest, _ = while_deploying(state, lambda: cli(state, "sandbox-reset", *scope))

    assert "in use by pid" in one_line(reset)
    assert code == 0, rest[-2000:]
    assert endstate.journal_view(endstate.history_entries(state))["status"] == "completed"


def test_a_fresh_engine_sandbox_never_wipes_a_work_directory_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``simulate --engine pulumi`` starts its engine work directory afresh: not while another
    process holds it (refused at once, the directory as it was)."""
    from rfs_deploy.connect import open_engine_sandbox_seams
    from rfs_deploy.errors import StackBusy

    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    work = tmp_path / "state" / "engine" / STACK
    work.mkdir(parents=True)
    (work / "kept").write_text("another command's work")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom rfs_deploy.sim.session_lock import SessionLock\n"
            f"SessionLock(sys.argv[1], {STACK!r}).acquire(0)\nprint('held', flush=True)\ntime.sleep(60)",
            str(work),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=crashkit.REPO,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StackBusy, match=f"in use by pid {holder.pid}"):
            open_engine_sandbox_seams(STACK, crashkit.REPO, None, fresh=True)
    finally:
        holder.kill()
        holder.wait(30)
    assert (work / "kept").read_text() == "another command's work"


# --------------------------------------------------------------------------- fuzz

_NAME_CHARS = st.sampled_from([*"abc./-_*~ \n\t$\\", "..", "/..", "\u00e9"])
BAD_STACK = st.one_of(
    st.lists(_NAME_CHARS, min_size=1, max_size=12).map("".join),
    st.integers(101, 400).map(lambda n: "s" * n),
    st.sampled_from(BAD_NAMES),
).filter(lambda name: _bad_name(name))
BAD_SEED = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32, max_value=2**80))
BAD_DURATION = st.sampled_from(["-5", "-0.5", ".nan", ".inf", "1e400", "abc", "10000000000000000000", "[1]"])


def _bad_name(name: str) -> bool:
    try:
        check_stack_name(name)
    except InvalidInput:
        return True
    return False


@st.composite
def bad_argv(draw: st.DrawFn, tmp: Path) -> list[str]:
    fault = draw(st.sampled_from(["stack", "seed", "report", "duration"]))
    if fault == "stack":
        command = draw(st.sampled_from(["status", "history", "deploy", "resume", "abort", "plan", "up"]))
        args = [command, "--stack", draw(BAD_STACK)]
        if command in ("deploy", "plan"):
            args += ["--service", SERVICE, "--version", "v2.0.0"]
        return args
    if fault == "seed":
        return ["simulate", "--seed", str(draw(BAD_SEED))]
    if fault == "report":
        where = draw(
            st.sampled_from(["/dev/null/x", "/dev/null", str(tmp / "a-file"), str(tmp / "a-file" / "d")])
        )
        return draw(st.sampled_from([["simulate", "--report", where], [*DEPLOY, "--report", where]]))
    key = draw(
        st.sampled_from(
            [
                "strategy.canaryInterval",
                "analysis.period",
                "deploy.maxDeploymentTime",
                "deploy.healthCheckInterval",
            ]
        )
    )
    return [
        "plan",
        "--stack",
        STACK,
        "--service",
        SERVICE,
        "--version",
        "v2.0.0",
        "--set",
        f"{key}={draw(BAD_DURATION)}",
    ]


@pytest.fixture(scope="module")
def fuzz_state(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    place = tmp_path_factory.mktemp("fuzz")
    (place / "a-file").write_text("x")
    return crashkit.copy_state(base, place / "state")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bad_cli_arguments_are_one_line_exit_2_and_change_nothing(
    fuzz_state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    argv = data.draw(bad_argv(fuzz_state.parent))
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(fuzz_state))
    before = snapshot(fuzz_state)

    code, lines, out = run_cli(["--backend", "sim", *argv], capsys)

    assert code == 2, (argv, lines)
    assert len(lines) == 1 and lines[0].startswith("rfs-deploy: error: "), (argv, lines)
    assert "Traceback" not in out and out == ""
    assert snapshot(fuzz_state) == before, argv
    assert (fuzz_state.parent / "a-file").read_text() == "x"
