"""Fixtures for the reliability tests: fake AWS credentials, a private state directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rfs_deploy.sim.aws import use_fake_aws


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never real AWS: fake credentials and no profile for every test here."""
    use_fake_aws(monkeypatch)
    monkeypatch.delenv("RFS_DEPLOY_SIM_KILL", raising=False)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private RFS_DEPLOY_STATE (deployment records and sandbox sessions)."""
    directory = tmp_path / "state"
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(directory))
    yield directory
