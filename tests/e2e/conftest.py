"""End-to-end fixtures: every deployment runs in the real sandbox, with its state in a temp dir.

Deployments are expensive (a fresh moto, the program under the mock runtime, minutes of virtual
traffic), so :func:`deployments` keeps each finished :class:`e2e_world.Run` for the session: the
tests that judge one deployment from different sides share it instead of running it again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_world import REPO, Deploy, Run, deploy


@pytest.fixture(scope="session", autouse=True)
def sandbox_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Sandbox state in a temp dir, the repository's stacks, and fake AWS credentials."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RFS_DEPLOY_STATE", str(tmp_path_factory.mktemp("rfs-deploy-state")))
        mp.setenv("RFS_DEPLOY_PROJECT", str(REPO))
        mp.delenv("RFS_DEPLOY_BACKEND", raising=False)
        mp.delenv("RFS_DEPLOY_SCENARIO", raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield


@pytest.fixture(scope="session")
def deployments() -> Deploy:
    """``deployments(scenario, strategy, seed=None)``: the run, made once per session."""
    done: dict[tuple[str, str, int | None], Run] = {}

    def get(scenario: str, strategy: str, seed: int | None = None) -> Run:
        key = (scenario, strategy, seed)
        if key not in done:
            done[key] = deploy(scenario, strategy, seed=seed)
        return done[key]

    return get
