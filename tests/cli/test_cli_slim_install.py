"""The slim install: the driver without the sandbox's and the report's extras, on a user's own project.

``pip install rfs-deploy`` brings the program's and the driver's dependencies only; moto and numpy
(the sandbox) and matplotlib (the report's charts) are extras. Here each command runs in a new
interpreter whose import system refuses those three packages, as a virtualenv without them
would, in a Pulumi project of the user's own (not this repository), found from the working
directory or named with ``--project``. The wheel's metadata is checked for the same split.
"""

from __future__ import annotations

import email
import os
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from cli_helpers import REPO, Done
from packaging.requirements import Requirement

#: ``python -c`` this, then the CLI's arguments: rfs-deploy in an install without the extras.
SLIM = """
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"moto", "numpy", "matplotlib"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from rfs_deploy.cli import main
sys.exit(main())
"""
EXTRAS = {"moto", "numpy", "matplotlib"}


@pytest.fixture
def own_project(tmp_path: Path) -> Path:
    """A user's Pulumi project: Pulumi.yaml and one stack file beside it (Pulumi's default place)."""
    project = tmp_path / "payments"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: payments\nruntime: python\n")
    shipped = (REPO / "stacks" / "Pulumi.production.yaml").read_text()
    (project / "Pulumi.prod.yaml").write_text(shipped)
    return project


def slim(cwd: Path, *args: str) -> Done:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RFS_DEPLOY_")}
    env["RFS_DEPLOY_STATE"] = str(cwd / ".state")
    done = subprocess.run(
        [sys.executable, "-c", SLIM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    return Done(done.returncode, done.stdout, done.stderr)


def test_help_and_a_stack_file_command_work_without_the_extras(own_project: Path) -> None:
    assert slim(own_project, "--help").code == 0
    found = slim(own_project, "iam-policy", "--stack", "prod")
    assert found.code == 0, found.stderr
    assert '"Version": "2012-10-17"' in found.stdout


def test_project_is_found_from_the_working_directory_or_named(own_project: Path, tmp_path: Path) -> None:
    below = own_project / "ci" / "scripts"
    below.mkdir(parents=True)
    assert slim(below, "iam-policy", "--stack", "prod").code == 0

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    named = slim(elsewhere, "--project", str(own_project), "iam-policy", "--stack", "prod")
    assert named.code == 0, named.stderr

    wrong = slim(elsewhere, "--project", str(elsewhere), "status", "--stack", "prod")
    assert wrong.code == 2
    assert wrong.stderr.strip().splitlines() == [
        f"rfs-deploy: error: project {elsewhere}: no Pulumi.yaml there (a Pulumi project's directory)"
    ]


def test_stack_files_are_read_from_stack_config_dir(own_project: Path) -> None:
    (own_project / "Pulumi.yaml").write_text("name: payments\nruntime: python\nstackConfigDir: config\n")
    moved = own_project / "config"
    moved.mkdir()
    (own_project / "Pulumi.prod.yaml").rename(moved / "Pulumi.prod.yaml")
    assert slim(own_project, "iam-policy", "--stack", "prod").code == 0
    missing = slim(own_project, "iam-policy", "--stack", "staging")
    assert missing.code == 2 and "no Pulumi.staging.yaml in" in missing.stderr


def test_the_sandbox_without_its_extra_is_one_line_naming_it(own_project: Path) -> None:
    args = [
        "--backend",
        "sim",
        "deploy",
        "--stack",
        "prod",
        "--service",
        "api-service",
        "--version",
        "v2.0.0",
    ]
    done = slim(own_project, *args)
    assert done.code == 2
    assert done.stderr.strip().splitlines() == [
        "rfs-deploy: error: the local sandbox needs moto, which this install does not have: "
        "pip install 'rfs-deploy[sandbox]'"
    ]
    # nothing was half-made: no session for the stack
    assert not (own_project / ".state" / "sandbox" / "prod").exists()


def test_the_runtime_dependencies_leave_the_extras_out() -> None:
    """pyproject.toml's runtime dependencies, as the wheel's metadata carries them: the sandbox's
    and the report's packages only under their extras, which `make` installs (through `test`)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {Requirement(dep).name for dep in project["dependencies"]}
    assert "pulumi" in runtime and not runtime & EXTRAS
    extras = {
        name: {Requirement(d).name for d in deps} for name, deps in project["optional-dependencies"].items()
    }
    assert {"moto", "numpy"} <= extras["sandbox"] and "matplotlib" in extras["report"]
    assert "rfs-deploy[sandbox,report]" in project["optional-dependencies"]["test"]


def test_the_wheel_requires_no_extra_package_outside_its_extras(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0 and "No matching distribution" in built.stderr:
        pytest.skip("no package index to fetch the build backend from")
    assert built.returncode == 0, built.stderr[-2000:]
    assert "warning" not in built.stderr.lower(), built.stderr
    [wheel] = tmp_path.glob("rfs_deploy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.message_from_bytes(archive.read(meta))
    requires = [Requirement(r) for r in message.get_all("Requires-Dist") or []]
    unconditional = {r.name for r in requires if r.marker is None}
    assert "pulumi" in unconditional and not unconditional & EXTRAS, requires
    assert {"sandbox", "report", "test"} <= set(message.get_all("Provides-Extra") or [])


def test_a_report_without_its_extra_is_refused_before_anything_runs(own_project: Path) -> None:
    args = ["deploy", "--stack", "prod", "--service", "api-service", "--version", "v2.0.0"]
    done = slim(own_project, *args, "--report", str(own_project / "reports"))
    assert done.code == 2
    assert done.stderr.strip().splitlines() == [
        "rfs-deploy: error: --report: the report's charts need matplotlib, which this install does not "
        "have: pip install 'rfs-deploy[report]'"
    ]
    assert not (own_project / "reports").exists() and not (own_project / ".state").exists()


def test_the_makefiles_editable_install_prints_no_warning(tmp_path: Path) -> None:
    """``make demo`` / ``make test`` install the project editable: a newcomer sees no warning."""
    [line] = [
        s.strip()
        for s in (REPO / "Makefile").read_text().splitlines()
        if "$(BIN)/pip install" in s and " -e " in s
    ]
    words = shlex.split(line)
    env = dict(os.environ)
    env.update(w.split("=", 1) for w in words[: words.index(next(w for w in words if "pip" in w))])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    upgraded = subprocess.run([*pip, "--upgrade", "pip"], capture_output=True, text=True, timeout=300)
    if upgraded.returncode != 0:
        pytest.skip("no package index to fetch pip from")
    done = subprocess.run(
        [*pip, "--no-deps", "-e", str(REPO)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning" not in done.stderr.lower(), done.stderr
