"""Fixtures of the driver tests; the world builder itself lives in drive_world.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from drive_world import World, build_world


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here talks to AWS; should anything try, it gets fake credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def world() -> Iterator[World]:
    yield build_world()
