"""Shared helpers of the engine tests: where the engine is, a small stack, running the CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from rfs_deploy.drive import journal
from rfs_deploy.drive.pulumi_backend import PulumiBackend
from rfs_deploy.sim.engine import (
    EngineBackend,
    EngineSandbox,
    engine_bin,
    open_engine_sandbox,
    prepare_project,
)

PROJECT = Path(__file__).resolve().parents[2]
STACKS = sorted((PROJECT / "stacks").glob("Pulumi.*.yaml"))
SERVICE = "api-service"
START = 1_800_000_000.0


def skip_reason() -> str | None:
    """Why the engine tests cannot run here, or None."""
    if engine_bin(PROJECT) is None:
        return "Pulumi engine not built (no bin/pulumi): run `make engine` (tools/build-engine.sh)"
    try:
        import flask  # noqa: F401  (moto's server extra)
    except ImportError:
        return "moto's server extra is not installed (pip install 'moto[server]'; `make engine` does)"
    return None


def canary_stack(directory: Path, name: str = "canary", instances: int = 4) -> Path:
    """The production stack, smaller: ``instances`` instances, a canary of 50% then 100%."""
    doc = yaml.safe_load((PROJECT / "stacks" / "Pulumi.production.yaml").read_text())
    config = doc["config"]
    service = config["rfs-deploy:services"][SERVICE]
    service["instanceCount"] = instances
    service["strategy"] = {
        "type": "canary",
        "canaryPercentage": 50,
        "canaryIncrement": 50,
        "canaryInterval": 60,
    }
    config["rfs-deploy:release"][SERVICE]["blue"]["capacity"] = instances
    path = directory / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@contextmanager
def engine_sandbox(stack_file: Path, work_dir: Path, **kwargs: Any) -> Iterator[EngineSandbox]:
    """An engine sandbox that is always closed (moto is process-global)."""
    kwargs.setdefault("start", START)
    sandbox = open_engine_sandbox(stack_file, work_dir, project=PROJECT, **kwargs)
    try:
        yield sandbox
    finally:
        sandbox.close()


def pulumi(sandbox: EngineSandbox, *args: str) -> str:
    """Run the built ``pulumi`` CLI on the sandbox's project and stack; its stdout."""
    command = [str(sandbox.bin_dir / "pulumi"), *args, "--stack", sandbox.backend.stack_name]
    env = {**_base_env(), **sandbox.env, "PULUMI_HOME": str(sandbox.work_dir / "pulumi-home")}
    done = subprocess.run(
        command, cwd=sandbox.work_dir, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def cli_history(sandbox: EngineSandbox) -> list[dict[str, Any]]:
    """``pulumi stack history --json``, newest first."""
    entries: list[dict[str, Any]] = json.loads(pulumi(sandbox, "stack", "history", "--json"))
    return entries


def journal_tags(entries: list[dict[str, Any]]) -> list[journal.JournalTag]:
    """The journal tags of CLI history entries, oldest first."""
    tags = [journal.decode(e.get("message", "")) for e in reversed(entries)]
    return [t for t in tags if t is not None]


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)


def fresh_checkout(sandbox: EngineSandbox, stack_file: Path, directory: Path) -> EngineBackend:
    """A fresh checkout of the project in ``directory`` (the committed files, its own Pulumi home)
    on the sandbox's stack and state backend, as a second runner has it: its backend."""
    prepare_project(PROJECT, directory, stack_file)
    backend = PulumiBackend(
        sandbox.backend.stack_name, directory, pulumi_root=sandbox.bin_dir.parent, env_vars=sandbox.env,
        pulumi_home=str(directory / "pulumi-home"),
    )  # fmt: skip
    return EngineBackend(backend, sandbox.box)
