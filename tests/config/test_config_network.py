"""``rfs-deploy:network`` is the shipped program's: a program of your own (docs/components.md)
brings its own network and leaves the key out; the shipped program, the sandbox and the driver on
a project running the shipped program refuse a stack without it, in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rfs_deploy.config import load_stack_config, read_namespace
from rfs_deploy.config.loading import require_network, runs_shipped_program
from rfs_deploy.errors import ConfigError
from rfs_deploy.sim.aws import fake_environment

REPO = Path(__file__).resolve().parents[2]
MISSING = "config rfs-deploy:network: missing: the shipped program puts every service in this VPC"


def without_network() -> dict:
    namespace = read_namespace(REPO / "stacks" / "Pulumi.production.yaml")
    del namespace["network"]
    return namespace


def test_a_stack_without_a_network_loads_and_require_network_refuses_it_in_one_line() -> None:
    config = load_stack_config(without_network())
    assert config.network is None
    with pytest.raises(ConfigError) as caught:
        require_network(config)
    assert str(caught.value) == MISSING
    full = load_stack_config(read_namespace(REPO / "stacks" / "Pulumi.production.yaml"))
    assert require_network(full) is full


def test_the_shipped_project_runs_the_shipped_program_and_the_example_does_not(tmp_path: Path) -> None:
    assert runs_shipped_program(REPO)
    assert not runs_shipped_program(REPO / "examples" / "own-program")
    assert not runs_shipped_program(tmp_path)  # no project at all
    # Pulumi.yaml's main: a directory holding __main__.py, or a file
    (tmp_path / "Pulumi.yaml").write_text("name: app\nruntime: python\nmain: src/\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "__main__.py").write_text("from rfs_deploy.infra.program import run\nrun()\n")
    assert runs_shipped_program(tmp_path)
    (tmp_path / "Pulumi.yaml").write_text("name: app\nruntime: python\nmain: app.py\n")
    (tmp_path / "app.py").write_text("from rfs_deploy.infra import Service\n")
    assert not runs_shipped_program(tmp_path)


def test_the_sandbox_refuses_a_stack_without_a_network_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: rfs-deploy\nruntime: python\nstackConfigDir: stacks\n")
    config = {"aws:region": "us-east-1", **{f"rfs-deploy:{k}": v for k, v in without_network().items()}}
    (tmp_path / "stacks" / "Pulumi.nonet.yaml").write_text(yaml.safe_dump({"config": config}))
    env = {**os.environ, **fake_environment(), "RFS_DEPLOY_STATE": str(tmp_path / ".state")}
    argv = ["--project", str(tmp_path), "--backend", "sim", "plan", "--stack", "nonet"]
    argv += ["--service", "api-service", "--version", "v2.0.0"]
    done = subprocess.run(
        [sys.executable, "-m", "rfs_deploy", *argv], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"rfs-deploy: error: {MISSING}"]
    assert not (tmp_path / ".state" / "sandbox" / "nonet").exists()
