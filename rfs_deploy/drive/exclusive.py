"""One driver operation per stack at a time within this process.

Across processes the journal and the stack lock keep deployments apart; within one process (a
pipeline script, a test, the sandbox) two coroutines on one stack would otherwise both pass the
history check before either's first update shows in history, and the second would write its
release over the first's.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from rfs_deploy.drive.context import Seams
from rfs_deploy.errors import StackBusy


class HasSeams(Protocol):
    """What :func:`exclusive` guards: an object running operations on ``seams``' stack."""

    seams: Seams


P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D", bound=HasSeams)

#: Backends (by object id) with a deploy, resume, abort or rollback running in this process.
_RUNNING: set[int] = set()


def exclusive(
    method: Callable[Concatenate[D, P], Awaitable[R]],
) -> Callable[Concatenate[D, P], Awaitable[R]]:
    """One driver operation per stack backend at a time in this process; the second: StackBusy."""

    @functools.wraps(method)
    async def wrapper(self: D, *args: P.args, **kwargs: P.kwargs) -> R:
        key = id(self.seams.backend)
        if key in _RUNNING:
            raise StackBusy(
                f"another deployment of stack {self.seams.backend.stack_name} is running in this "
                "process; wait for it to finish"
            )
        _RUNNING.add(key)
        try:
            return await method(self, *args, **kwargs)
        finally:
            _RUNNING.discard(key)

    return wrapper
