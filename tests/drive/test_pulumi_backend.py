"""PulumiBackend without the Pulumi CLI binary: what can be proven honestly.

* Pure mappings and error translation run on real Automation API objects (UpdateSummary,
  ConfigValue, OutputValue, EngineEvent, and the exceptions ``create_command_error`` builds from a
  CommandResult), fed with the JSON shapes the CLI emits (read from the CLI's source).
* A missing CLI gives one clear line.
* ``FAKE_PULUMI`` below is a TEST DOUBLE of the ``pulumi`` executable: it records its arguments
  and answers from a scenario file. Tests using it prove exactly which CLI commands the real
  Automation API code sends for our calls (``config set`` of one key, ``up --message``, paged
  ``stack history`` without ``--show-secrets``) and how the backend reads the answers. They prove
  nothing about the engine itself.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto
from pulumi.automation._cmd import CommandResult
from pulumi.automation.errors import create_command_error

from rfs_deploy.config import RELEASE_KEY, load_stack_file
from rfs_deploy.drive import pulumi_backend as pb
from rfs_deploy.drive.protocols import StackBackend
from rfs_deploy.errors import BackendError, InvalidInput, StackBusy, UnknownStack

REPO = Path(__file__).resolve().parents[2]
STACK_FILE = REPO / "stacks" / "Pulumi.production.yaml"
RELEASE = {"api-service": {"live": "blue", "blue": {"version": "v1.0.0", "capacity": 10}}}
TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # the CLI's timestamp format, as the Automation API parses it

FAKE_PULUMI = '''#!{python}
"""TEST DOUBLE of the `pulumi` CLI for tests/drive/test_pulumi_backend.py -- not Pulumi.

Appends its arguments to calls.jsonl and answers from scenario.json next to it.
"""
import json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
with open(os.path.join(here, "calls.jsonl"), "a") as out:
    out.write(json.dumps(args) + "\\n")
if args == ["version"]:
    print("3.200.0")
    sys.exit(0)
with open(os.path.join(here, "scenario.json")) as f:
    scenario = json.load(f)
words = [a for a in args if not a.startswith("-")]

def flag(name, default):
    return args[args.index(name) + 1] if name in args else default

if words[:2] == ["stack", "history"]:  # the DIY backend slices pages like this
    size, page = int(flag("--page-size", 10)), int(flag("--page", 1))
    entries = scenario.get("history", [])
    print(json.dumps(entries if scenario.get("no_paging") else entries[(page - 1) * size : page * size]))
    sys.exit(0)
if "--config-file" in args:  # keep what the update was given, for the test to read
    with open(flag("--config-file", None)) as src, open(os.path.join(here, "config-file.yaml"), "w") as dst:
        dst.write(src.read())
if words[:1] == ["up"]:
    with open(os.path.join(here, "up-env.json"), "w") as out:
        keys = ("RFS_DEPLOY_RELEASE_OWNER", "RFS_DEPLOY_RELEASE_EXPECT")
        out.write(json.dumps({{k: os.environ.get(k) for k in keys}}))
if "--event-log" in args:
    with open(flag("--event-log", None), "a") as log:
        for event in scenario.get("events", []) + [{{"sequence": 999, "timestamp": 0, "cancelEvent": {{}}}}]:
            log.write(json.dumps(event) + "\\n")
for rule in scenario.get("rules", []):
    if words[: len(rule["command"])] == rule["command"] and all(a in args for a in rule.get("with", [])):
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        sys.exit(rule.get("code", 0))
'''


class FakeCli:
    """The test double's directory: ``root/bin/pulumi``, its scenario and its call log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        script = self.bin / "pulumi"
        script.write_text(FAKE_PULUMI.format(python=sys.executable))
        script.chmod(0o755)
        self.scenario(rules=[])

    def scenario(self, **scenario: Any) -> None:
        (self.bin / "scenario.json").write_text(json.dumps(scenario))

    def calls(self) -> list[list[str]]:
        lines = (self.bin / "calls.jsonl").read_text().splitlines()
        return [c for c in map(json.loads, lines) if c != ["version"]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(STACK_FILE, root / "stacks" / STACK_FILE.name)
    return root


@pytest.fixture
def fake(tmp_path: Path) -> FakeCli:
    return FakeCli(tmp_path / "fake-pulumi")


def backend(project: Path, fake: FakeCli, **kw: Any) -> pb.PulumiBackend:
    return pb.PulumiBackend("production", project, pulumi_root=fake.root, **kw)


def config_json(secret_other: bool = True) -> str:
    """``pulumi config --show-secrets --json`` for the example stack (objects as JSON text)."""
    doc = yaml.safe_load(STACK_FILE.read_text())["config"]
    out: dict[str, Any] = {}
    for key, value in doc.items():
        text = value if isinstance(value, str) else json.dumps(value)
        out[key] = {"value": text, "secret": False}
        if not isinstance(value, str):
            out[key]["objectValue"] = value
    if secret_other:
        out["app:dbPassword"] = {"value": "hunter2-plaintext", "secret": True}
    return json.dumps(out)


def update_json(version: int, message: str = "", result: str = "succeeded", release: Any = RELEASE) -> dict:
    """One element of ``pulumi stack history --json`` (shape from the CLI's updateInfoJSON)."""
    entry: dict[str, Any] = {
        "version": version,
        "kind": "update",
        "startTime": "2025-01-02T03:04:05.000Z",
        "message": message,
        "environment": {"exec.kind": "auto.local"},
        "config": {"aws:region": {"value": "us-east-1", "secret": False}},
        "result": result,
    }
    if release is not None:
        entry["config"][RELEASE_KEY] = {"value": json.dumps(release), "secret": False}
    if result != "in-progress":
        entry["endTime"] = "2025-01-02T03:05:05.000Z"
        entry["resourceChanges"] = {"same": 14, "update": 1}
    return entry


def summary(**kw: Any) -> auto.UpdateSummary:
    """An UpdateSummary built exactly as ``Stack.history`` builds one from the CLI's JSON."""
    data = update_json(**kw)
    return auto.UpdateSummary(
        kind=data["kind"],
        start_time=datetime.strptime(data["startTime"], TIME),
        message=data["message"],
        environment=data["environment"],
        config=data["config"],
        result=data["result"],
        end_time=datetime.strptime(data["endTime"], TIME) if "endTime" in data else None,
        version=data["version"],
        resource_changes=data.get("resourceChanges"),
    )


def command_error(stderr: str = "", stdout: str = "", code: int = 255) -> auto.CommandError:
    return create_command_error(CommandResult(stdout=stdout, stderr=stderr, code=code))


DIY_LOCK = (
    "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end "
    "or delete the lock file with `pulumi cancel`.\n  file:///state/.pulumi/locks/organization/rfs-deploy/"
    "production/1.json: created by ci@{host} (pid {pid}) at 2025-01-02T03:04:05Z"
)


# --------------------------------------------------------------------------- pure mappings


def test_summary_to_entry_maps_a_finished_update() -> None:
    entry = pb.summary_to_entry(summary(version=7, message="rfs-deploy[...] x"))
    assert (entry.version, entry.message, entry.result) == (7, "rfs-deploy[...] x", "succeeded")
    assert entry.start_time == datetime.fromisoformat("2025-01-02T03:04:05+00:00").timestamp()
    assert entry.end_time == entry.start_time + 60
    assert entry.release is not None and entry.release["api-service"].blue.version == "v1.0.0"


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ("in-progress", "in-progress"),
        ("not-started", "in-progress"),
        ("failed", "failed"),
        ("weird", "failed"),
    ],
)
def test_summary_results(result: str, expected: str) -> None:
    entry = pb.summary_to_entry(summary(version=3, result=result))
    assert entry.result == expected
    assert (entry.end_time is None) == (result == "in-progress")


def test_summary_without_a_readable_release_has_none() -> None:
    assert pb.summary_to_entry(summary(version=1, release=None)).release is None
    assert (
        pb.summary_to_entry(summary(version=1, release={"api-service": {"live": "purple"}})).release is None
    )
    hidden = summary(version=1)
    # Without --show-secrets the CLI omits a secret's value; the Automation API fills in "[secret]".
    hidden.config[RELEASE_KEY] = auto.ConfigValue("[secret]", secret=True)
    assert pb.summary_to_entry(hidden).release is None


def test_config_mapping_keeps_only_the_namespace_and_validates() -> None:
    values = {k: auto.ConfigValue(v["value"], v["secret"]) for k, v in json.loads(config_json()).items()}
    raw = pb.namespace_values(values)
    assert set(raw) == {"network", "services", "release", "tags"}
    assert pb.load_stack_config(raw) == load_stack_file(STACK_FILE)


def test_release_json_round_trips_through_history_config() -> None:
    release = load_stack_file(STACK_FILE).release
    text = pb.release_json(release)
    assert pb.release_from_config({RELEASE_KEY: auto.ConfigValue(text)}) == release


def test_outputs_mask_secrets_and_export_redacts_them() -> None:
    outputs = {
        "services": auto.OutputValue({"api": {"dnsName": "x"}}, False),
        "token": auto.OutputValue("t", True),
    }
    assert pb.plain_outputs(outputs) == {"services": {"api": {"dnsName": "x"}}, "token": "[secret]"}
    secret = {pb.SECRET_SIG_KEY: "1b47061264138c4ac30d75fd1eb44270", "plaintext": '"hunter2"'}
    state = {"resources": [{"urn": "u", "outputs": {"password": secret, "port": 80}}]}
    redacted = pb.redact_secrets(state)
    assert "hunter2" not in json.dumps(redacted)
    assert redacted["resources"][0]["outputs"]["port"] == 80
    assert redacted["resources"][0]["outputs"]["password"]["redacted"] == "[secret]"


# --------------------------------------------------------------------------- errors


def test_diy_lock_held_by_a_dead_process_on_this_host_suggests_cancel() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    exc = command_error(DIY_LOCK.format(host=socket.gethostname(), pid=dead.pid))
    assert isinstance(exc, auto.ConcurrentUpdateError)
    err = pb.translate_error(exc, "production", "stack update")
    assert isinstance(err, StackBusy)
    assert f"ci@{socket.gethostname()} (pid {dead.pid})" in str(err)
    assert "no longer runs on this host" in str(err) and "`pulumi cancel --stack production`" in str(err)


def test_lock_held_elsewhere_or_by_a_live_process_says_wait() -> None:
    for host, pid in (("runner-7", 4242), (socket.gethostname(), os.getpid())):
        err = pb.translate_error(command_error(DIY_LOCK.format(host=host, pid=pid)), "production", "x")
        assert isinstance(err, StackBusy) and "wait for it to finish" in str(err)
        assert "only if that process is dead" in str(err)


def test_cloud_conflict_is_stack_busy() -> None:
    err = pb.translate_error(
        command_error("error: [409] Conflict: Another update is currently in progress."), "prod", "up"
    )
    assert isinstance(err, StackBusy) and "locked by another update" in str(err) and "\n" not in str(err)


def test_stack_not_found_and_already_exists() -> None:
    err = pb.translate_error(command_error("error: no stack named 'prod' found"), "prod", "select")
    assert isinstance(err, UnknownStack) and "no stack named 'prod'" in str(err)
    err = pb.translate_error(command_error("error: stack 'prod' already exists"), "prod", "create")
    assert isinstance(err, InvalidInput) and "already exists" in str(err)


def test_failed_update_names_the_specific_error_in_one_line() -> None:
    stdout = (
        "Updating (production):\n Diagnostics:\n  aws:lb:Listener (api-listener):\n"
        "    error: updating ELBv2 Listener: ValidationError: weights must sum to 999\n"
        "Resources:\n    14 unchanged\n"
    )
    err = pb.translate_error(command_error("error: update failed", stdout), "production", "stack update")
    assert type(err) is BackendError
    assert (
        str(err) == "stack update failed: updating ELBv2 Listener: ValidationError: weights must sum to 999"
    )
    generic = pb.translate_error(command_error("error: update failed"), "production", "stack update")
    assert str(generic) == "stack update failed: update failed"
    silent = pb.translate_error(command_error("", "", 1), "production", "read config")
    assert str(silent) == "read config failed: no error output"


# --------------------------------------------------------------------------- events


def event(**payload: Any) -> auto.EngineEvent:
    return auto.EngineEvent.from_json({"sequence": 1, "timestamp": 0, **payload})


URN = "urn:pulumi:production::rfs-deploy::rfs-deploy:aws:Service$aws:lb/listener:Listener::api-listener"
META = {"op": "update", "urn": URN, "type": "aws:lb/listener:Listener", "provider": ""}


@pytest.mark.parametrize(
    ("payload", "line"),
    [
        ({"resourcePreEvent": {"metadata": META}}, "update aws:lb/listener:Listener api-listener"),
        ({"resourcePreEvent": {"metadata": {**META, "op": "same"}}}, None),
        ({"resourcePreEvent": {"metadata": META, "planning": True}}, None),
        (
            {"resOpFailedEvent": {"metadata": META, "status": 1, "steps": 1}},
            "failed aws:lb/listener:Listener api-listener",
        ),
        (
            {"diagnosticEvent": {"message": "<{%fg 1%}>boom\n  happened<{%reset%}>\n", "severity": "error"}},
            "error: boom happened",
        ),
        ({"diagnosticEvent": {"message": "chatter", "severity": "info"}}, None),
        ({"stdoutEvent": {"message": "hello", "color": "never"}}, None),
    ],
)
def test_describe_event(payload: dict, line: str | None) -> None:
    assert pb.describe_event(event(**payload)) == line


# --------------------------------------------------------------------------- the missing CLI


def test_missing_cli_at_a_given_root_is_one_clear_line(project: Path, tmp_path: Path) -> None:
    with pytest.raises(pb.PulumiCliMissing) as info:
        pb.PulumiBackend("production", project, pulumi_root=tmp_path / "nowhere")
    assert str(info.value).startswith(
        f"the Pulumi CLI was not found ({tmp_path}/nowhere/bin/pulumi); install it"
    )
    assert "get.pulumi.com" in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 2 and isinstance(info.value, BackendError)


def test_missing_cli_on_path(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(pb.PulumiCliMissing, match=r"not found \(`pulumi` on PATH\)"):
        pb.PulumiBackend("production", project)


def test_a_directory_without_pulumi_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="is not a Pulumi project"):
        pb.PulumiBackend("production", tmp_path)


# --------------------------------------------------------------------------- through the CLI test double


def test_selects_the_stack_and_satisfies_the_protocol(project: Path, fake: FakeCli) -> None:
    b = backend(project, fake)
    assert isinstance(b, StackBackend)
    assert fake.calls() == [["--non-interactive", "stack", "select", "--stack", "production"]]


def test_unknown_stack_or_create(project: Path, fake: FakeCli) -> None:
    missing = {
        "command": ["stack", "select"],
        "stderr": "error: no stack named 'production' found",
        "code": 255,
    }
    fake.scenario(rules=[missing])
    with pytest.raises(UnknownStack, match="no stack named 'production'"):
        backend(project, fake)
    backend(project, fake, create=True)
    assert fake.calls()[-1] == ["--non-interactive", "stack", "init", "production"]


def test_read_config_of_a_new_stack_takes_the_checkout(project: Path, fake: FakeCli) -> None:
    fake.scenario(rules=[{"command": ["config"], "stdout": config_json()}, OUTPUTS_NONE])
    config = backend(project, fake).read_config()
    assert config == load_stack_file(STACK_FILE)
    assert [
        "--non-interactive",
        "config",
        "--show-secrets",
        "--json",
        "--stack",
        "production",
    ] in fake.calls()


def moved_release() -> dict[str, Any]:
    """The example stack's release state after a blue-green of v2.0.0: what the backend holds
    while a fresh checkout's stack file still says v1.0.0 on blue."""
    state = load_stack_file(STACK_FILE).release["api-service"]
    moved = state.evolve(
        green={"version": "v2.0.0", "capacity": 10}, live="green", weights={"blue": 0, "green": 100}
    )
    return {"api-service": moved}


def test_read_config_takes_the_release_state_from_the_backend_not_the_checkout(
    project: Path, fake: FakeCli
) -> None:
    live = moved_release()
    tag = (
        "rfs-deploy[dep=ab12cd34 svc=api-service ver=v2.0.0 strat=blue-green step=9/9 kind=scale-down "
        "phase=step]"
    )
    fake.scenario(
        rules=[
            {"command": ["config"], "stdout": config_json()},
            {
                "command": ["stack", "output"],
                "stdout": json.dumps({"release": pb.json.loads(pb.release_json(live))}),
            },
        ],
        history=[update_json(7, tag, release=pb.json.loads(pb.release_json(live)))],
    )
    config = backend(project, fake).read_config()
    assert config.release == live  # the checkout's v1.0.0 on blue is stale
    assert config.services == load_stack_file(STACK_FILE).services  # settings from the checkout


def test_write_release_leaves_the_checkout_and_up_reads_a_private_copy(project: Path, fake: FakeCli) -> None:
    before = (project / "stacks" / STACK_FILE.name).read_text()
    b = backend(project, fake)
    release = dict(load_stack_file(STACK_FILE).release)
    release["api-service"] = release["api-service"].evolve(green={"version": "v2.0.0", "capacity": 10})
    b.write_release(release)
    assert not [c for c in fake.calls() if "config" in c]  # nothing written yet
    message = (
        "rfs-deploy[dep=ab12cd34 svc=api-service ver=v2.0.0 strat=canary step=1/9 kind=deploy-idle "
        "phase=step]"
    )
    fake.scenario(rules=[{"command": ["up"]}, OUTPUTS_NONE], history=[update_json(2, message)])
    b.up(message)
    up = next(c for c in fake.calls() if "up" in c)
    given = yaml.safe_load((fake.bin / "config-file.yaml").read_text())["config"]
    assert pb.release_from_config({RELEASE_KEY: auto.ConfigValue(given[RELEASE_KEY])}) == release
    assert "--config-file" in up and not Path(up[up.index("--config-file") + 1]).exists()  # removed after
    assert (project / "stacks" / STACK_FILE.name).read_text() == before
    env = json.loads((fake.bin / "up-env.json").read_text())
    # the update applies the config's state for api-service only, and only over the state it expects
    assert env["RFS_DEPLOY_RELEASE_OWNER"] == "api-service"
    assert json.loads(env["RFS_DEPLOY_RELEASE_EXPECT"]) == {"api-service": "none"}


OUTPUTS_NONE = {"command": ["stack", "output"], "stdout": "{}"}


def test_history_pages_through_everything_without_secrets(project: Path, fake: FakeCli) -> None:
    fake.scenario(history=[update_json(v, f"update {v}") for v in range(230, 0, -1)])
    entries = backend(project, fake).history()
    assert [e.version for e in entries] == list(range(230, 0, -1))
    history_calls = [c for c in fake.calls() if c[1:3] == ["stack", "history"]]
    assert [c[c.index("--page") + 1] for c in history_calls] == ["1", "2", "3", "4"]
    assert all("--show-secrets" not in c and c[c.index("--page-size") + 1] == "100" for c in history_calls)


def test_history_stops_when_a_backend_ignores_paging(project: Path, fake: FakeCli) -> None:
    fake.scenario(history=[update_json(v) for v in range(3, 0, -1)], no_paging=True)
    assert [e.version for e in backend(project, fake).history()] == [3, 2, 1]
    assert len([c for c in fake.calls() if c[1:3] == ["stack", "history"]]) == 2


def test_history_with_a_limit_is_one_call(project: Path, fake: FakeCli) -> None:
    fake.scenario(history=[update_json(v) for v in range(30, 0, -1)])
    entries = backend(project, fake).history(limit=5)
    assert [e.version for e in entries] == [30, 29, 28, 27, 26]
    history = ["stack", "history", "--json", "--page-size", "5", "--page", "1", "--stack", "production"]
    assert fake.calls()[-1] == ["--non-interactive", *history]


def test_up_sends_the_message_and_reads_the_new_version(project: Path, fake: FakeCli) -> None:
    message = "rfs-deploy[dep=ab12cd34 svc=api ver=v2.0.0 strat=canary step=1/9 kind=deploy-idle phase=step]"
    fake.scenario(
        rules=[
            {"command": ["up"], "stdout": "Updating (production)\n"},
            {"command": ["stack", "output"], "stdout": "{}"},
        ],
        history=[update_json(8, message)],
    )
    result = backend(project, fake).up(message)
    assert (result.version, result.message, dict(result.changes)) == (8, message, {"same": 14, "update": 1})
    up = next(c for c in fake.calls() if "up" in c)
    assert up[:4] == ["--non-interactive", "up", "--yes", "--skip-preview"]
    assert up[up.index("--message") + 1] == message
    assert {"--color", "never", "--suppress-progress", "auto.local"} <= set(up) and up[-2:] == [
        "--stack",
        "production",
    ]
    info = [c for c in fake.calls() if c[1:3] == ["stack", "history"]]
    assert info and all("--show-secrets" not in c for c in info)


def test_up_forwards_resource_changes_as_lines(project: Path, fake: FakeCli) -> None:
    fake.scenario(
        rules=[{"command": ["up"]}, {"command": ["stack", "output"], "stdout": "{}"}],
        history=[update_json(2)],
        events=[
            {"sequence": 1, "timestamp": 0, "resourcePreEvent": {"metadata": META}},
            {"sequence": 2, "timestamp": 0, "resourcePreEvent": {"metadata": {**META, "op": "same"}}},
        ],
    )
    lines: list[str] = []
    backend(project, fake).up("m", on_event=lines.append)
    assert lines == ["update aws:lb/listener:Listener api-listener"]


def test_up_on_a_locked_stack_is_stack_busy(project: Path, fake: FakeCli) -> None:
    lock = DIY_LOCK.format(host="runner-7", pid=4242)
    fake.scenario(rules=[{"command": ["up"], "stderr": lock, "code": 255}, OUTPUTS_NONE])
    with pytest.raises(StackBusy, match=r"locked by ci@runner-7 \(pid 4242\) since 2025-01-02T03:04:05Z"):
        backend(project, fake).up("m")


def test_outputs_and_export_hide_secrets(project: Path, fake: FakeCli) -> None:
    secret = {pb.SECRET_SIG_KEY: "1b47061264138c4ac30d75fd1eb44270", "plaintext": '"hunter2"'}
    state = {"version": 3, "deployment": {"resources": [{"outputs": {"password": secret}}]}}
    fake.scenario(
        rules=[
            {
                "command": ["stack", "output"],
                "with": ["--show-secrets"],
                "stdout": '{"a": 1, "token": "hunter2"}',
            },
            {"command": ["stack", "output"], "stdout": '{"a": 1, "token": "[secret]"}'},
            {"command": ["stack", "export"], "stdout": json.dumps(state)},
        ]
    )
    b = backend(project, fake)
    assert b.outputs() == {"a": 1, "token": "[secret]"}
    exported = b.export()
    assert exported["version"] == 3 and "hunter2" not in json.dumps(exported)


def test_self_managed_backends_version_zero_is_numbered_by_position() -> None:
    # The file and S3 backends report version 0 for every history entry (found by the real
    # engine tests); entries are numbered 1..n from the oldest so none collapse into another.
    newest_first = [summary(version=0, message=f"update {n}") for n in (3, 2, 1)]
    entries = pb.number_by_position(newest_first)
    assert [(e.version, e.message) for e in entries] == [(3, "update 3"), (2, "update 2"), (1, "update 1")]
