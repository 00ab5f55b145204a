"""Files in the state directory, read and written without trusting what is there.

The state directory (``.rfs-deploy`` or ``RFS_DEPLOY_STATE``) holds sandbox sessions, deployment
records, the fingerprint key and lock files. Anyone who can write into it could plant a symbolic
link there (``.save.lock -> ~/.bashrc``) so that rfs-deploy writes through it, or reads a key it
did not make. So every file in it is opened with ``O_NOFOLLOW`` (a link found: one
:class:`~rfs_deploy.errors.DamagedState` line naming the file, nothing written), new secrets are
created with ``O_CREAT | O_EXCL`` and mode 0600, and every write goes to a temporary file in the
same directory that is renamed over the target only once it is complete: a full disk or a killed
process never leaves half a file, and a failed write removes its temporary file
(:class:`~rfs_deploy.errors.StateWriteError`, one line).

The state directory itself may be a link (a user's choice of where state lives); the files and
directories rfs-deploy makes inside it must not be.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rfs_deploy.errors import DamagedState, StateWriteError

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
#: Larger state files are refused as damaged (a session of a big stack is a few MB).
MAX_STATE_BYTES = 256 * 1024 * 1024


def shown(path: Path) -> str:
    """``path`` quoted for a shell command in a message."""
    return shlex.quote(str(path))


def link_found(path: Path, recover: str | None = None) -> DamagedState:
    """The error for a symbolic link (or other non-file) where rfs-deploy keeps a file."""
    how = recover or f"remove it (rm {shown(path)}) and run the command again"
    return DamagedState(
        f"{path} is a symbolic link, or not the kind of file rfs-deploy keeps there; it never "
        f"follows links in its state directory and changed nothing: {how}"
    )


def check_no_links(base: Path, path: Path) -> None:
    """Refuse when ``path`` or a directory between ``base`` and it is a symbolic link (or not a
    directory where one is expected); missing parts are fine (they are made later)."""
    try:
        parts = Path(path).relative_to(base).parts
    except ValueError:
        return
    here = Path(base)
    for part in parts:
        here = here / part
        try:
            info = os.lstat(here)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DamagedState(f"{here} cannot be read ({exc.strerror}); nothing was changed") from None
        if stat.S_ISLNK(info.st_mode) or (here != path and not stat.S_ISDIR(info.st_mode)):
            raise link_found(here)


def exists(path: Path) -> bool:
    """Whether anything (a file, a link, even a dangling one) is at ``path``."""
    return os.path.lexists(path)


def read_bytes(path: Path, recover: str | None = None, limit: int = MAX_STATE_BYTES) -> bytes | None:
    """The contents of the regular file at ``path``; None when nothing is there. A link or any
    other kind of file there: DamagedState (``recover`` says what to do; default: remove it)."""
    try:
        fd = os.open(path, _READ)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise link_found(path, recover) from None
        raise DamagedState(f"{path} cannot be read ({exc.strerror}); rfs-deploy changed nothing") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise link_found(path, recover)
        if info.st_size > limit:
            raise DamagedState(
                f"{path} is {info.st_size} bytes, larger than any state file rfs-deploy writes; "
                f"rfs-deploy changed nothing: {recover or f'remove it (rm {shown(path)})'}"
            )
        return handle.read(limit + 1)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Put ``data`` at ``path`` whole or not at all (a temporary file renamed over it).

    A link at ``path``: DamagedState, nothing written. A failed write (a full disk, a file size
    limit, a read-only file system): StateWriteError, and the temporary file is removed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(info.st_mode):
            raise link_found(path)
    with _staged(path, data, mode) as temp:
        os.replace(temp.name, path)
        temp.moved = True


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` (mode 0600) holding ``data``, only if nothing is there: the file appears
    whole (written under a temporary name, then hard-linked into place, which fails when the name
    is taken). False when something already was there (another process made it first)."""
    with _staged(path, data) as temp:
        try:
            os.link(temp.name, path)  # a second name: the temporary one is removed after
        except FileExistsError:
            return False
        return True


@dataclass
class _Temp:
    """A temporary file beside its target; ``moved``: renamed away, so nothing to remove."""

    name: str
    moved: bool = False


@contextlib.contextmanager
def _staged(path: Path, data: bytes, mode: int = 0o600) -> Iterator[_Temp]:
    """``data`` written whole to a temporary file beside ``path``, for the caller to move into
    place (rename, or link). A failure (a full disk, a file size limit, a read-only file system),
    there or in the move: StateWriteError. The temporary file is removed unless it was moved."""
    temp: _Temp | None = None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        temp = _Temp(name)
        with os.fdopen(fd, "wb") as handle:
            if mode != 0o600:
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
        yield temp
    except OSError as exc:
        raise StateWriteError(f"could not write {path}: {_reason(exc)}; it was left as it was") from None
    finally:
        if temp is not None and not temp.moved:
            with contextlib.suppress(OSError):
                os.unlink(temp.name)


def open_lock_file(path: Path) -> int:
    """A descriptor on the lock file ``path`` (created 0600 when missing), for ``flock``; a link
    there: DamagedState."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise link_found(path) from None
        raise StateWriteError(f"could not open the lock file {path}: {_reason(exc)}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise link_found(path)
    return fd


def make_dirs(path: Path, base: Path | None = None) -> None:
    """``mkdir -p path`` (0700 for new directories), refusing links below ``base``; one line
    when the directory cannot be made."""
    if base is not None:
        check_no_links(base, path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateWriteError(f"could not create the directory {path}: {_reason(exc)}") from None
    if not path.is_dir():
        raise StateWriteError(f"could not create the directory {path}: a file is in the way")


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if exc.errno == errno.EFBIG:
        return "the file is too large for this system's limits"
    return exc.strerror or type(exc).__name__


__all__ = [
    "check_no_links",
    "create_exclusive",
    "exists",
    "link_found",
    "make_dirs",
    "open_lock_file",
    "read_bytes",
    "shown",
    "write_atomic",
]
