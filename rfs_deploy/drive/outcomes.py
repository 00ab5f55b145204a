"""What a plan step comes to: the outcome every step handler returns, and the error a handler
raises to fail its step.

Handlers live in several modules (the runner's own, :mod:`rfs_deploy.drive.analysis`,
:mod:`rfs_deploy.drive.validate_step`, the restore in :mod:`rfs_deploy.drive.rollback`), so these
types live here, below all of them, and none of those modules imports another for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rfs_deploy.errors import RfsDeployError


@dataclass(frozen=True)
class StepOutcome:
    """The result of one plan step: passed or not, and why (one line)."""

    passed: bool
    reason: str = ""
    #: A/B only: the test decided for A, so the deployment ends by restoring A (not a failure).
    keep_baseline: bool = False
    #: The step's wait was interrupted by a cancel request (see :mod:`rfs_deploy.drive.cancel`).
    cancelled: bool = False
    #: A gate: the deployment holds here until ``rfs-deploy promote`` (see docs/gates.md).
    paused: bool = False
    #: An analysis step its traffic left undecided, with ``analysis.onInconclusive: pause``: the
    #: deployment holds after it for a person, as at a gate (docs/decision.md).
    undecided: bool = False
    #: With ``undecided``: the hold is before this step, so ``promote`` runs it again (a rolling
    #: release held at a checkpoint: promote starts its refresh again and goes on watching it).
    again: bool = False


class StepFailed(RfsDeployError):
    """Raised inside a step handler (or a restore attempt) to fail it with a one-line reason.

    The runner turns it into a failed :class:`StepOutcome` and rolls back; it never reaches the
    command line, so it keeps the base exit code.
    """
