"""`pulumi install` then `pulumi up` on a fresh clone, as a platform engineer runs them.

Real: `git clone` of the committed project, the Pulumi CLI, its pip toolchain as the language host
runs it (``python -m venv .venv``, pip, requirements.txt and constraints.txt, packages from the
package index), the program in the virtualenv that install built. Doubles, as in every engine test:
the AWS provider and moto behind it. Without a requirements.txt (the old state of the repository)
the same steps leave an empty virtualenv and the program cannot import Pulumi: that is checked
first, on the same clone, so the test fails if the program ran in any other environment.
A second test checks that constraints.txt pins the whole dependency tree, so a fresh install
cannot resolve a version CI did not test.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from engine_support import PROJECT, START, canary_stack
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from rfs_deploy.outputs import OUTPUT_NAME
from rfs_deploy.sim.engine import SANDBOX_PASSPHRASE, engine_bin, open_engine_sandbox

#: Generous: the installs download every package from the index (pip's cache is no help there).
INSTALL_TIMEOUT = 900


def cli_env(bin_dir: Path, home: Path, state: Path) -> dict[str, str]:
    """A user's shell: the CLI on PATH, a file backend and a passphrase; no Python chosen for it."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PULUMI_PYTHON_CMD")}
    state.mkdir(parents=True, exist_ok=True)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PULUMI_HOME=str(home),
        PULUMI_BACKEND_URL=f"file://{state}",
        PULUMI_CONFIG_PASSPHRASE=SANDBOX_PASSPHRASE,
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
    )
    return env


def run(argv: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=INSTALL_TIMEOUT, check=False,
    )  # fmt: skip


def pins(constraints: Path) -> dict[str, str]:
    """name -> version of a constraints file (names normalised)."""
    found = {}
    for line in constraints.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            found[name.lower().replace("_", "-")] = version
    return found


def test_pulumi_install_then_up_on_a_fresh_clone(tmp_path: Path) -> None:
    if not (PROJECT / ".git").exists():
        pytest.skip("the project is not a git checkout, so it cannot be cloned")
    bin_dir = engine_bin(PROJECT)
    assert bin_dir is not None
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(PROJECT), str(clone)], check=True, timeout=120)
    assert not (clone / ".venv").exists()
    assert (clone / "requirements.txt").is_file(), "the committed project has a requirements.txt"
    env = cli_env(bin_dir, tmp_path / "pulumi-home", tmp_path / "state")
    pulumi = bin_dir / "pulumi"

    # The old state: no requirements.txt. Pulumi's toolchain makes the virtualenv, stops there, and
    # the program, run in that virtualenv, cannot import pulumi.
    (clone / "requirements.txt").rename(tmp_path / "requirements.txt")
    done = run([pulumi, "install"], clone, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Creating virtual environment..." in done.stdout
    assert "Installing dependencies in virtual environment" not in done.stdout
    assert (clone / ".venv" / "bin" / "python").is_file()
    assert run([pulumi, "stack", "init", "empty-venv"], clone, env).returncode == 0
    done = run([pulumi, "preview", "--stack", "empty-venv"], clone, env)
    assert done.returncode != 0
    assert "No module named 'pulumi'" in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]

    # The committed state: requirements.txt installs the project under constraints.txt.
    (tmp_path / "requirements.txt").rename(clone / "requirements.txt")
    done = run([pulumi, "install"], clone, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Installing dependencies in virtual environment..." in done.stdout
    assert "Finished installing dependencies" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]

    python = clone / ".venv" / "bin" / "python"
    code = "import json, rfs_deploy, pulumi_aws; print(json.dumps(rfs_deploy.__file__))"
    probe = run([python, "-c", code], clone, env)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert Path(json.loads(probe.stdout)).is_relative_to(clone), "the clone's project, installed editable"
    freeze = run([python, "-m", "pip", "freeze", "--exclude-editable"], clone, env)
    installed = pins_of_lines(freeze.stdout)
    wanted = pins(clone / "constraints.txt")
    assert {"pulumi", "pulumi-aws", "boto3", "pydantic"} <= installed.keys()
    assert {name: version for name, version in installed.items() if wanted.get(name) != version} == {}, (
        "every installed version is the one constraints.txt pins"
    )

    # `pulumi up` of a stack of the clone (the engine sandbox's up: the real CLI, through the
    # Automation API), with the program in the virtualenv `pulumi install` built.
    stack_file = canary_stack(clone / "stacks", name="installed", instances=2)
    sandbox = open_engine_sandbox(stack_file, clone, project=clone, bin_dir=bin_dir, start=START)
    try:
        assert not (clone / ".venv").is_symlink(), "the sandbox keeps the clone's own virtualenv"
        result = sandbox.provision("pulumi up on a fresh clone")
        assert result is not None and result.changes.get("create", 0) > 0
        services = sandbox.backend.outputs()[OUTPUT_NAME]
        assert set(services) == {"api-service"}
    finally:
        sandbox.close()
        shutil.rmtree(clone / ".venv", ignore_errors=True)  # large; tmp_path keeps the rest


def pins_of_lines(text: str) -> dict[str, str]:
    """name -> version of ``pip freeze`` output (names normalised)."""
    found = {}
    for line in text.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            found[name.lower().replace("_", "-")] = version
    return found


def lock_problems(constraints: Path, pyproject: Path) -> list[str]:
    """What constraints.txt misses of the dependency tree of every extra and ``moto[server]``: a
    package not pinned, or a pin that does not meet a requirement on it. The project's own
    requirements come from pyproject.toml, the rest from the installed packages' metadata."""
    wanted = {canonicalize_name(name): version for name, version in pins(constraints).items()}
    project = tomllib.loads(pyproject.read_text())["project"]
    # every extra (sandbox, report, test): the test extra names the others as rfs-deploy[...]
    groups = [line for group in project["optional-dependencies"].values() for line in group]
    own = canonicalize_name(project["name"])
    todo = [
        req
        for req in map(Requirement, [*project["dependencies"], *groups])
        if canonicalize_name(req.name) != own
    ]
    todo.append(Requirement("moto[server]"))
    seen: set[tuple[str, frozenset[str]]] = set()
    problems: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name not in wanted:
            problems.add(f"{name} is not pinned")
        elif not req.specifier.contains(wanted[name], prereleases=True):
            problems.add(f"the pin {name}=={wanted[name]} does not meet {req}")
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.distribution(req.name).requires or []
        except metadata.PackageNotFoundError:
            problems.add(f"{name} is not installed here, so its own dependencies were not checked")
            continue
        for line in requires:
            dep = Requirement(line)
            extras = req.extras or {""}
            if dep.marker is None or any(dep.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(dep)
    return sorted(problems)


def test_the_constraints_pin_every_dependency_and_meet_every_requirement(tmp_path: Path) -> None:
    """A dependency left out of constraints.txt would resolve to whatever is newest on a fresh
    clone; a pin outside a requirement would make `make` and `pulumi install` fail."""
    assert lock_problems(PROJECT / "constraints.txt", PROJECT / "pyproject.toml") == [], "run `make lock`"

    # and the check sees both faults
    lines = (PROJECT / "constraints.txt").read_text().splitlines()
    broken = tmp_path / "constraints.txt"
    broken.write_text(
        "\n".join(
            "pydantic==1.10.0" if line.startswith("pydantic==") else line
            for line in lines
            if not line.lower().startswith("pulumi-aws==") and not line.lower().startswith("pulumi_aws==")
        )
    )
    problems = lock_problems(broken, PROJECT / "pyproject.toml")
    assert "pulumi-aws is not pinned" in problems
    assert any(p.startswith("the pin pydantic==1.10.0 does not meet pydantic") for p in problems), problems
