"""Sandbox fixtures: a small stack file and sandboxes that are always closed (moto is process-global)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sim_stacks import STACK

from rfs_deploy.sim.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
START = 1_800_000_000.0


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (this repository's Pulumi.yaml, an empty stacks/) the command line and
    ``open_seams`` use, with its own state directory."""
    directory = tmp_path / "project"
    (directory / "stacks").mkdir(parents=True)
    shutil.copyfile(REPO / "Pulumi.yaml", directory / "Pulumi.yaml")
    monkeypatch.setenv("RFS_DEPLOY_PROJECT", str(directory))
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    return directory


@pytest.fixture
def stack_file(tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.sandbox.yaml"
    path.write_text(yaml.safe_dump(STACK))
    return path


@pytest.fixture
def open_sandbox(stack_file: Path) -> Iterator[Callable[..., Sandbox]]:
    """Open (and provision) sandboxes over ``stack_file``; all are closed at teardown."""
    opened: list[Sandbox] = []

    def factory(scenario: str = "healthy", provision: bool = True, **kwargs: Any) -> Sandbox:
        kwargs.setdefault("start", START)
        box = Sandbox.open(kwargs.pop("stack", stack_file), scenario=scenario, **kwargs)
        opened.append(box)
        if provision:
            box.provision()
        return box

    yield factory
    for box in reversed(opened):
        box.close()
