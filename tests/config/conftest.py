"""Fixtures for the config tests: fake AWS credentials (the program runs under the mock runtime only)."""

from __future__ import annotations

import pytest

from rfs_deploy.sim.aws import use_fake_aws


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials: the mock runtime never calls AWS, and nothing else may either."""
    use_fake_aws(monkeypatch)


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated resource modules when it is imported.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
