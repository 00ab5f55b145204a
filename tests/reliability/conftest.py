"""Fixtures for the reliability tests: fake AWS credentials, a private state directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never real AWS: fake credentials and no profile for every test here."""
    for key, value in FAKE_AWS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("RFS_DEPLOY_SIM_KILL", raising=False)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private RFS_DEPLOY_STATE (deployment records and sandbox sessions)."""
    directory = tmp_path / "state"
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(directory))
    yield directory
