"""Fixtures of the driver tests; the world builder itself lives in drive_world.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# the webhook receiver is shared with the command-line tests (tests/cli/webhook_receiver.py)
sys.path.append(str(Path(__file__).resolve().parents[1] / "cli"))
from drive_world import World, build_world
from webhook_receiver import receivers  # noqa: F401  (the fixture, for the webhook tests)


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here talks to AWS; should anything try, it gets fake credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def world() -> Iterator[World]:
    yield build_world()
