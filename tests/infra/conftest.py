"""Fixtures for the program tests: fake AWS credentials (the mock runtime never calls AWS)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials: the mock runtime never calls AWS, and nothing else may either."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated resource modules when it is imported.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
