"""CLI fixtures: a temp state and working directory per test, fake AWS credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import Place, make_place
from webhook_receiver import receivers  # noqa: F401  (the fixture, for the webhook tests)


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox forces fake credentials itself; these cover anything else that might look."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return make_place(tmp_path)
