"""Pulumi secrets (``secure:`` values) in stack files: decrypted in memory, masked, never persisted.

The stack files in ``stacks/`` beside this file were written by the real Pulumi CLI (``pulumi
config set --secret``, passphrase provider, passphrase :data:`PASSPHRASE`; the values are fake):
``Pulumi.secrets.yaml`` has a secret validation header and a secret tag set with ``--path``;
``Pulumi.whole.yaml`` has a whole top-level value secret (``rfs-deploy:tags``), a secret list item
and a secret header.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from rfs_deploy.config import MASKED, load_stack_config, read_namespace, read_other_config
from rfs_deploy.config import secrets as secrets_module
from rfs_deploy.config.secrets import (
    PASSPHRASE_ENV,
    PASSPHRASE_FILE_ENV,
    SAVED_PLACEHOLDER,
    Revealed,
    StackSecrets,
    require_plaintext,
    secure_leaves,
)
from rfs_deploy.errors import ConfigError, InvalidInput

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STACKS = HERE / "stacks"
PASSPHRASE = "test-passphrase-not-real"
API_KEY = "fake-api-key-0123"
OWNER = "fake-owner-4567"
SECRET_PATH = "/api/fake-secret-path"
HEADER_KEY = "rfs-deploy:services.api-service.validation.headers.X-Api-Key"
CLI = "import sys; from rfs_deploy.cli import main; sys.exit(main())"


@pytest.fixture(autouse=True)
def no_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which passphrase it has (none unless it sets one)."""
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.delenv(PASSPHRASE_FILE_ENV, raising=False)


def header(namespace: dict) -> object:
    return namespace["services"]["api-service"]["validation"]["headers"]["X-Api-Key"]


def kms_stack(directory: Path) -> Path:
    """The secrets stack as another secrets provider (AWS KMS) would have it: no salt, a key."""
    doc = yaml.safe_load((STACKS / "Pulumi.secrets.yaml").read_text())
    del doc["encryptionsalt"]
    doc["secretsprovider"] = "awskms://alias/rfs-deploy-test?region=us-east-1"
    doc["encryptedkey"] = "AQICAHhfakefakefakefake"
    path = directory / "Pulumi.kms.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# --------------------------------------------------------------------------- decrypting


def test_a_secret_set_by_the_pulumi_cli_is_decrypted_with_the_passphrase(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    namespace = read_namespace(STACKS / "Pulumi.secrets.yaml")
    assert header(namespace) == API_KEY and isinstance(header(namespace), Revealed)
    assert namespace["tags"] == {"team": "platform", "owner": OWNER}
    assert API_KEY not in repr(namespace) and OWNER not in repr(namespace)  # reprs are masked
    config = load_stack_config(namespace)
    assert config.services["api-service"].validation.headers["X-Api-Key"].get_secret_value() == API_KEY
    assert API_KEY not in repr(config) and API_KEY not in config.model_dump_json()
    require_plaintext(config.services["api-service"], "api-service")  # nothing masked: no error


def test_the_passphrase_file_is_read_and_trimmed_as_the_cli_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    phrase = tmp_path / "passphrase"
    phrase.write_text(PASSPHRASE + "\n")
    monkeypatch.setenv(PASSPHRASE_FILE_ENV, str(phrase))
    assert header(read_namespace(STACKS / "Pulumi.secrets.yaml")) == API_KEY
    monkeypatch.setenv(PASSPHRASE_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=f"{PASSPHRASE_FILE_ENV}: cannot read"):
        read_namespace(STACKS / "Pulumi.secrets.yaml")


def test_a_whole_secret_value_and_a_secret_list_item_are_decrypted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    path = STACKS / "Pulumi.whole.yaml"
    raw = yaml.safe_load(path.read_text())["config"]
    assert [p for p, _ in secure_leaves(raw)] == [
        "rfs-deploy:services.api-service.validation.criticalEndpoints[1]",
        "rfs-deploy:services.api-service.validation.headers.X-Api-Key",
        "rfs-deploy:tags",
    ]
    config = load_stack_config(read_namespace(path))
    assert config.tags == {"team": "platform", "owner": OWNER}  # the whole value was JSON text
    validation = config.services["api-service"].validation
    assert validation.critical_endpoints == ["/api/users", SECRET_PATH, "/api/orders"]
    assert validation.headers["X-Api-Key"].get_secret_value() == API_KEY


def test_a_wrong_passphrase_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "not-the-passphrase")
    with pytest.raises(InvalidInput) as caught:
        read_namespace(STACKS / "Pulumi.secrets.yaml")
    message = str(caught.value)
    assert message == f"incorrect passphrase in {PASSPHRASE_ENV} for the secrets of Pulumi.secrets.yaml"


def test_an_empty_passphrase_counts_as_set_as_for_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "")
    with pytest.raises(InvalidInput, match="incorrect passphrase"):
        read_namespace(STACKS / "Pulumi.secrets.yaml")


def test_a_damaged_value_names_its_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    doc = yaml.safe_load((STACKS / "Pulumi.secrets.yaml").read_text())
    slot = doc["config"]["rfs-deploy:services"]["api-service"]["validation"]["headers"]["X-Api-Key"]
    version, nonce, data = slot["secure"].split(":")
    slot["secure"] = f"{version}:{nonce}:{data[:-6]}AAAA=="
    path = tmp_path / "Pulumi.damaged.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as caught:
        read_namespace(path)
    assert caught.value.key == HEADER_KEY and "cannot be decrypted" in caught.value.reason


def test_the_key_is_derived_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    read_namespace(STACKS / "Pulumi.secrets.yaml")
    before = secrets_module._derive.cache_info()
    for _ in range(3):
        read_namespace(STACKS / "Pulumi.secrets.yaml")
    after = secrets_module._derive.cache_info()
    assert after.misses == before.misses  # 1,000,000 PBKDF2 iterations are not run again


# --------------------------------------------------------------------------- without the plaintext


def test_without_a_passphrase_secrets_are_masked_and_the_config_still_loads() -> None:
    namespace = read_namespace(STACKS / "Pulumi.secrets.yaml")
    assert header(namespace) == MASKED and namespace["tags"]["owner"] == MASKED
    config = load_stack_config(namespace)
    with pytest.raises(ConfigError) as caught:
        require_plaintext(config.services["api-service"], "api-service")
    assert caught.value.key == HEADER_KEY and PASSPHRASE_ENV in caught.value.reason


def test_a_masked_whole_value_or_list_item_fails_naming_the_key_and_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_stack_config(read_namespace(STACKS / "Pulumi.whole.yaml"))
    # the first key in the file's order that cannot do with a mask
    assert caught.value.key in (
        "rfs-deploy:tags",
        "rfs-deploy:services.api-service.validation.criticalEndpoints.1",
    )
    assert PASSPHRASE_ENV in caught.value.reason


def test_another_secrets_provider_is_masked_even_with_a_passphrase(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    path = kms_stack(tmp_path)
    found = StackSecrets.of(yaml.safe_load(path.read_text()), path)
    assert found.provider == "awskms" and "--backend pulumi" in found.why_locked()
    namespace = read_namespace(path)
    assert header(namespace) == MASKED
    config = load_stack_config(namespace)
    with pytest.raises(ConfigError, match="--backend pulumi"):
        require_plaintext(config.services["api-service"], "api-service")


def test_decrypt_false_never_decrypts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "not-the-passphrase")  # not even checked
    assert header(read_namespace(STACKS / "Pulumi.secrets.yaml", decrypt=False)) == MASKED
    assert read_other_config(STACKS / "Pulumi.secrets.yaml", decrypt=False) == {"aws:region": "us-east-1"}


# --------------------------------------------------------------------------- the program and the sandbox


def test_the_program_under_the_mock_runtime_gets_the_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfs_deploy.sim.mockrun import run_stack_file

    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    run = run_stack_file(STACKS / "Pulumi.secrets.yaml")
    tagged = [r for r in run.resources if isinstance(r.inputs.get("tags"), dict)]
    assert tagged and all(r.inputs["tags"].get("owner") == OWNER for r in tagged)


def test_a_sandbox_session_never_keeps_a_decrypted_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rfs_deploy.sim.backend import SECRET_PLACEHOLDER
    from rfs_deploy.sim.sandbox import Sandbox

    assert SECRET_PLACEHOLDER == SAVED_PLACEHOLDER
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    stack_file = STACKS / "Pulumi.secrets.yaml"
    session = tmp_path / "session"
    with Sandbox.open(stack_file, session_dir=session) as box:
        box.provision()  # the secret tag is on every resource the program made
        assert box.backend.read_config().tags["owner"] == OWNER
    assert any(files_under(session))
    assert_nowhere(API_KEY, session)
    assert_nowhere(OWNER, session)

    with Sandbox.open(stack_file, session_dir=session) as box:  # a new process: from the stack file
        config = box.backend.read_config()
        assert config.tags["owner"] == OWNER
        assert config.services["api-service"].validation.headers["X-Api-Key"].get_secret_value() == API_KEY
        box.backend.up("again")  # the program runs with the real tag again
    assert_nowhere(OWNER, session)


def test_a_whole_secret_value_is_left_out_of_the_session_and_read_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rfs_deploy.sim.sandbox import STATE_FILE, Sandbox

    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    stack_file = STACKS / "Pulumi.whole.yaml"
    session = tmp_path / "session"
    with Sandbox.open(stack_file, session_dir=session) as box:
        box.provision()
    saved = json.loads((session / STATE_FILE).read_text())
    assert saved["backend"]["namespace"]["tags"] == SAVED_PLACEHOLDER
    assert_nowhere(API_KEY, session)
    assert_nowhere(SECRET_PATH, session)

    with Sandbox.open(stack_file, session_dir=session) as box:
        config = box.backend.read_config()
        assert config.tags == {"team": "platform", "owner": OWNER}
        assert config.services["api-service"].validation.critical_endpoints[1] == SECRET_PATH

    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(ConfigError, match=PASSPHRASE_ENV):  # without it the whole value is unknown
        Sandbox.open(stack_file, session_dir=session)


def test_validation_in_the_sandbox_sends_the_decrypted_header(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rfs_deploy.connect import open_seams
    from rfs_deploy.drive.driver import Driver

    project = project_with(tmp_path / "project", "secrets")
    monkeypatch.setenv("RFS_DEPLOY_PROJECT", str(project))
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    seams = open_seams("secrets", backend="sim", fresh=True)
    seen: list[str | None] = []
    inner = seams.http_transport
    assert isinstance(inner, httpx.MockTransport)

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Api-Key"))
        return await inner.handle_async_request(request)

    seams.http_transport = httpx.MockTransport(record)
    try:
        record_ = asyncio.run(Driver(seams).deploy("api-service", "v2.0.0", "blue-green"))
    finally:
        seams.close()
    assert record_.status.value == "COMPLETED", record_.errors
    assert seen and set(seen) == {API_KEY}
    assert_nowhere(API_KEY, tmp_path / "state", project)


# --------------------------------------------------------------------------- the command line


def project_with(directory: Path, *stacks: str) -> Path:
    """A project (Pulumi.yaml, stacks/) holding the test stacks named."""
    (directory / "stacks").mkdir(parents=True)
    shutil.copyfile(REPO / "Pulumi.yaml", directory / "Pulumi.yaml")
    for name in stacks:
        source = STACKS / f"Pulumi.{name}.yaml"
        shutil.copyfile(source, directory / "stacks" / source.name)
    return directory


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.exists():
            yield from (p for p in root.rglob("*") if p.is_file())


def assert_nowhere(plaintext: str, *roots: Path) -> None:
    leaked = [str(p) for p in files_under(*roots) if plaintext.encode() in p.read_bytes()]
    assert leaked == []


def rfs(tmp_path: Path, project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **{k: v for k, v in os.environ.items() if k not in (PASSPHRASE_ENV, PASSPHRASE_FILE_ENV)},
        "RFS_DEPLOY_PROJECT": str(project),
        "RFS_DEPLOY_STATE": str(tmp_path / "state"),
        "RFS_DEPLOY_BACKEND": "sim",
        "PYTHONIOENCODING": "utf-8",
        **env,
    }
    environment.pop("RFS_DEPLOY_SCENARIO", None)
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfs-deploy: error: "), lines
    return lines[0]


def test_without_a_passphrase_plan_and_iam_policy_work_and_deploy_names_the_key(tmp_path: Path) -> None:
    project = project_with(tmp_path / "project", "secrets")
    kms_stack(project / "stacks")
    plan = rfs(tmp_path, project, "--json", "plan", "--stack", "secrets", "--service", "api-service",
               "--version", "v2.0.0")  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["service"] == "api-service"
    for stack in ("secrets", "kms"):
        policy = rfs(tmp_path, project, "iam-policy", "--stack", stack)
        assert policy.returncode == 0, policy.stderr
        assert json.loads(policy.stdout)["Statement"]

    deploy = rfs(tmp_path, project, "deploy", "--stack", "secrets", "--service", "api-service",
                 "--version", "v2.0.0")  # fmt: skip
    line = one_error_line(deploy)
    assert HEADER_KEY in line and PASSPHRASE_ENV in line
    history = rfs(tmp_path, project, "--json", "history", "--stack", "secrets")
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout)["deployments"] == []  # nothing was started


def test_a_wrong_passphrase_stops_plan_in_one_line(tmp_path: Path) -> None:
    project = project_with(tmp_path / "project", "secrets")
    done = rfs(tmp_path, project, "plan", "--stack", "secrets", "--service", "api-service",
               "--version", "v2.0.0", PULUMI_CONFIG_PASSPHRASE="wrong")  # fmt: skip
    assert "incorrect passphrase" in one_error_line(done)


def test_a_deployment_with_a_secret_header_writes_it_nowhere(tmp_path: Path) -> None:
    project = project_with(tmp_path / "project", "secrets")
    report = tmp_path / "report"
    done = rfs(tmp_path, project, "--json", "deploy", "--stack", "secrets", "--service", "api-service",
               "--version", "v2.0.0", "--strategy", "blue-green", "--report", str(report),
               PULUMI_CONFIG_PASSPHRASE=PASSPHRASE)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(done.stdout)
    assert payload["status"] == "COMPLETED" and payload["report"]
    resumed = rfs(
        tmp_path, project, "--json", "status", "--stack", "secrets", PULUMI_CONFIG_PASSPHRASE=PASSPHRASE
    )
    history = rfs(tmp_path, project, "history", "--stack", "secrets", PULUMI_CONFIG_PASSPHRASE=PASSPHRASE)
    for text in (done.stdout, done.stderr, resumed.stdout, resumed.stderr, history.stdout, history.stderr):
        assert API_KEY not in text and OWNER not in text
    assert any(files_under(tmp_path / "state")) and any(files_under(report))
    assert_nowhere(API_KEY, tmp_path / "state", report, project)
