"""The `rfs-deploy` CLI of one checkout, with the engine sandbox as its AWS:
``python engine_cli.py CLOUD ARG...`` runs ``rfs-deploy ARG...`` (its ``main``, as the console
script does) in the current directory, a checkout of the project.

``--backend pulumi`` is the backend a user's pipeline runs: PulumiBackend on this checkout, the
Pulumi CLI from PATH and the state backend of ``PULUMI_BACKEND_URL``. Only where AWS is differs:
the one function that connects to AWS (``rfs_deploy.connect._pulumi_seams``) is replaced by the
engine sandbox kept in CLOUD (moto, the physics, the applier the provider double sends its
changes to, and the virtual clock), which every checkout shares as every runner shares one AWS
account. The sandbox is one world in memory at a time, so a second command waits for the first
to end (the sandbox's session lock), as a second command on a sandbox stack does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rfs_deploy import cli, connect
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.pulumi_backend import PulumiBackend
from rfs_deploy.sim.engine import EngineBackend, open_engine_sandbox
from rfs_deploy.sim.session_lock import SessionLock


def engine_seams(cloud: Path) -> object:
    def seams(stack: str, root: Path) -> Seams:
        short = connect.short_stack_name(stack)
        lock = SessionLock(cloud, short)
        lock.acquire(connect.LOCK_WAIT)
        try:
            sandbox = open_engine_sandbox(root / "stacks" / f"Pulumi.{short}.yaml", cloud, project=root)
        except BaseException:
            lock.release()
            raise
        try:
            pulumi = PulumiBackend(
                stack, root, pulumi_root=sandbox.bin_dir.parent, env_vars=sandbox.env,
                pulumi_home=os.environ["PULUMI_HOME"],
            )  # fmt: skip
        except BaseException:
            sandbox.close()
            lock.release()
            raise
        backend = EngineBackend(pulumi, sandbox.box)
        sandbox.box.world.topology = backend.topology
        opened = sandbox.seams(backend)

        def closer() -> None:
            try:
                sandbox.close()
            finally:
                lock.release()

        opened.closer = closer
        return opened

    return seams


def main(cloud: str, argv: list[str]) -> int:
    connect._pulumi_seams = engine_seams(Path(cloud).resolve())  # type: ignore[assignment]
    return cli.main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2:]))
