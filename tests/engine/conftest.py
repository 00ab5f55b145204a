"""End-to-end tests through the real Pulumi engine; they skip when `make engine` has not built it."""

from __future__ import annotations

import pytest
from engine_support import skip_reason

from rfs_deploy.sim.aws import use_fake_aws


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the end-to-end tests (``test_engine_*``) ``engine``; skip them, saying why, when the
    engine is absent. The provider double's own tests need no engine and always run."""
    reason = skip_reason()
    for item in items:
        if "tests/engine/test_engine_" not in item.nodeid.replace("\\", "/"):
            continue
        item.add_marker(pytest.mark.engine)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never real AWS: fake credentials, no shared config, one region."""
    use_fake_aws(monkeypatch)
