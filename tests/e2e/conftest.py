"""End-to-end fixtures: every deployment runs in the real sandbox, with its state in a temp dir.

Deployments are expensive (a fresh moto, the program under the mock runtime, minutes of virtual
traffic), so :func:`deployments` keeps each finished :class:`e2e_world.Run` for the session: the
tests that judge one deployment from different sides share it instead of running it again.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from e2e_world import PLANNED, REPO, Deploy, Run, deploy, deploy_in


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
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Deploy:
    """``deployments(scenario, strategy, seed=None)``: the run, made once per session.

    On first use every :data:`e2e_world.PLANNED` deployment is made, two at a time in fresh
    worker processes (each sandbox is a whole moto, which is process-global; each worker gets
    its own state dir), so the matrix takes half the wall time on two cores.
    """
    done: dict[tuple[str, str, int | None], Run | BaseException] = {}

    def get(scenario: str, strategy: str, seed: int | None = None) -> Run:
        if not done:
            done.update(_make_planned(tmp_path_factory))
        key = (scenario, strategy, seed)
        if key not in done:
            done[key] = deploy(scenario, strategy, seed=seed)
        made = done[key]
        if isinstance(made, BaseException):
            raise made  # only the tests of this deployment fail
        return made

    return get


def _make_planned(factory: pytest.TempPathFactory) -> dict[tuple[str, str, int | None], Run | BaseException]:
    spawn = multiprocessing.get_context("spawn")  # no fork of a process that has run moto
    made: dict[tuple[str, str, int | None], Run | BaseException] = {}
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        futures = {key: pool.submit(deploy_in, str(factory.mktemp("worker-state")), *key) for key in PLANNED}
        for key, future in futures.items():
            try:
                made[key] = future.result()
            except Exception as exc:
                made[key] = exc
    return made
