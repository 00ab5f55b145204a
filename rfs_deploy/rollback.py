"""The seed's rollback API (``rfs.production.rollback`` → ``rfs_deploy.rollback``).

A checkpoint here is a *real* one: the stack history version and the service's release state at
the moment it is taken, so ``rollback_to_checkpoint`` runs a stack update back to it — weights,
fleets and launch templates return, not just a record. What the caller hands in alongside
(``configuration``, ``environment_variables``) is kept only as evidence, with every value
reduced to a keyed fingerprint: names survive, secret values never reach the disk. Fingerprints
let :meth:`RollbackManager.environment_drift` say which variables changed since the checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.errors import InvalidInput, RfsDeployError
from rfs_deploy.result import Failure, Result, Success


@dataclass
class Checkpoint:
    checkpoint_id: str
    service_name: str
    version: str
    environment: str
    created_at: str
    #: Stack history version the checkpoint restores (None when the stack had no history).
    stack_version: int | None
    #: The service's release state at that version (camelCase, as in stack config).
    release: dict[str, Any] | None
    #: Keyed fingerprints of the configuration's and the environment's values, by name.
    configuration: dict[str, Any] = field(default_factory=dict)
    environment_variables: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class RollbackManager:
    """Creates checkpoints and rolls services back to them."""

    def __init__(self, environment: str = "production", directory: str | Path | None = None) -> None:
        from rfs_deploy.connect import state_dir

        self.environment = environment
        self.directory = Path(directory) if directory is not None else state_dir() / "checkpoints"

    # ------------------------------------------------------------------ create

    async def create_checkpoint(
        self,
        service_name: str,
        version: str,
        configuration: Mapping[str, Any] | None = None,
        environment_variables: Mapping[str, str] | None = None,
    ) -> Checkpoint:
        """Record where the stack stands now for ``service_name`` (see the module docstring)."""
        key = self._key()
        notes: list[str] = []
        stack_version: int | None = None
        release: dict[str, Any] | None = None
        try:
            stack_version, release = self._stack_position(service_name)
        except RfsDeployError as exc:
            notes.append(f"no stack position recorded: {exc}")
        checkpoint = Checkpoint(
            checkpoint_id=f"cp-{datetime.now().strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}",
            service_name=service_name,
            version=version,
            environment=self.environment,
            created_at=datetime.now().isoformat(timespec="seconds"),
            stack_version=stack_version,
            release=release,
            configuration=_fingerprint_tree(configuration or {}, key),
            environment_variables={
                k: _fingerprint(str(v), key) for k, v in (environment_variables or {}).items()
            },
            notes=notes,
        )
        self._write(checkpoint)
        return checkpoint

    def _stack_position(self, service: str) -> tuple[int, dict[str, Any]]:
        from rfs_deploy.seed_support import seams_for

        seams = seams_for(self.environment)
        latest = next((e for e in seams.backend.history() if e.result == "succeeded"), None)
        if latest is None or latest.release is None or service not in latest.release:
            raise InvalidInput(f"stack {self.environment} has no successful update of {service} yet")
        return latest.version, latest.release[service].to_config()

    # ------------------------------------------------------------------ read

    def list_checkpoints(self, service_name: str | None = None) -> list[Checkpoint]:
        """Checkpoints, newest first."""
        if not self.directory.exists():
            return []
        found = [self._read(p) for p in sorted(self.directory.glob("cp-*.json"))]
        found = [c for c in found if service_name in (None, c.service_name)]
        return sorted(found, key=lambda c: c.checkpoint_id, reverse=True)

    def get_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        if not isinstance(checkpoint_id, str) or not _CHECKPOINT_ID.fullmatch(checkpoint_id):
            raise InvalidInput(f"{checkpoint_id!r} is not a checkpoint id (cp-YYYYmmddHHMMSS-xxxxxx)")
        path = self.directory / f"{checkpoint_id}.json"
        from rfs_deploy import statefiles

        if not statefiles.exists(path):
            raise InvalidInput(f"unknown checkpoint {checkpoint_id!r}")
        return self._read(path)

    def _read(self, path: Path) -> Checkpoint:
        """One checkpoint file, read without following a link; a damaged one: DamagedState
        naming it (one line), never a traceback."""
        from rfs_deploy import statefiles
        from rfs_deploy.errors import DamagedState

        recover = f"remove it (rm {statefiles.shown(path)})"
        data = statefiles.read_bytes(path, recover)
        try:
            return Checkpoint(**json.loads(data or b""))
        except (ValueError, TypeError) as exc:
            reason = " ".join(str(exc).split())[:120]
            raise DamagedState(f"checkpoint file {path} is damaged ({reason}): {recover}") from None

    def environment_drift(
        self, checkpoint: Checkpoint, environment_variables: Mapping[str, str]
    ) -> list[str]:
        """Names of variables added, removed or changed since ``checkpoint``."""
        key = self._key()
        now = {k: _fingerprint(str(v), key) for k, v in environment_variables.items()}
        names = set(now) | set(checkpoint.environment_variables)
        return sorted(n for n in names if now.get(n) != checkpoint.environment_variables.get(n))

    # ------------------------------------------------------------------ roll back

    async def rollback_to_checkpoint(self, checkpoint: Checkpoint | str) -> Result[DeploymentRecord, str]:
        """Run a stack update back to the checkpoint's stack version."""
        from rfs_deploy.drive.driver import Driver
        from rfs_deploy.seed_support import seams_for

        try:
            cp = self.get_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
            if cp.stack_version is None:
                return Failure(f"checkpoint {cp.checkpoint_id} has no stack version to restore")
            record = await Driver(seams_for(cp.environment)).rollback(cp.service_name, cp.stack_version)
        except RfsDeployError as exc:
            return Failure(str(exc))
        if record.status.value == "ROLLED_BACK":
            return Success(record)
        return Failure(f"rollback ended {record.status.value}: {'; '.join(record.errors[-2:])}")

    rollback = rollback_to_checkpoint

    # ------------------------------------------------------------------ storage

    def _write(self, checkpoint: Checkpoint) -> None:
        """Write the checkpoint whole (a temporary file renamed into place, 0600), never through
        a link planted at its name."""
        from rfs_deploy import statefiles

        statefiles.make_dirs(self.directory)
        path = self.directory / f"{checkpoint.checkpoint_id}.json"
        statefiles.write_atomic(path, json.dumps(asdict(checkpoint), indent=1).encode())

    def _key(self) -> bytes:
        """This machine's fingerprint key (random, 0600), so fingerprints cannot be brute-forced
        from a checkpoint file alone. Made whole and only where nothing is (``O_EXCL``), read
        without following links: a key planted as a link, or one of the wrong size, is
        DamagedState, never used."""
        from rfs_deploy import statefiles
        from rfs_deploy.errors import DamagedState

        statefiles.make_dirs(self.directory)
        path = self.directory / KEY_FILE
        if not statefiles.exists(path):
            statefiles.create_exclusive(path, secrets.token_bytes(KEY_BYTES))  # or another made it
        recover = f"remove it (rm {statefiles.shown(path)}); fingerprints taken with it stop matching"
        key = statefiles.read_bytes(path, recover, limit=KEY_BYTES)
        if key is None or len(key) != KEY_BYTES:
            raise DamagedState(f"the fingerprint key {path} is not a key rfs-deploy made: {recover}")
        return key


#: A checkpoint id as :meth:`RollbackManager.create_checkpoint` makes them.
_CHECKPOINT_ID = re.compile(r"cp-\d{14}-[0-9a-f]{6}")
#: The fingerprint key: a file of :data:`KEY_BYTES` random bytes beside the checkpoints.
KEY_FILE = ".fingerprint-key"
KEY_BYTES = 32


def _fingerprint(value: str, key: bytes) -> str:
    return "hmac-sha256:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]


def _fingerprint_tree(value: Any, key: bytes) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _fingerprint_tree(v, key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_fingerprint_tree(v, key) for v in value]
    return _fingerprint(json.dumps(value, sort_keys=True, default=str), key)


__all__ = ["Checkpoint", "RollbackManager"]
