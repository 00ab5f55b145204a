"""One exception tree for the whole project.

    RfsDeployError                  base, exit 1: the CLI catches only this and maps it to an exit code
    ├── InvalidInput                exit 2: nothing was changed
    │   ├── ConfigError             a stack config key or value is wrong (message names the key)
    │   ├── ScenarioError           a sandbox scenario file is wrong
    │   ├── UnknownService          no such service in the stack
    │   ├── UnknownStack            no such stack
    │   └── UnknownVersion          no such version in stack history
    ├── PreconditionFailed          exit 2: the world is not in a state to start (alarm firing, ...)
    ├── StackBusy                   exit 2: another update holds the stack lock
    ├── ReleaseConflict             exit 2: another process changed the live release state (releases.py)
    ├── MissingCredentials          exit 2: no AWS credentials for a command that needs them
    ├── DamagedState                exit 2: a state file is damaged or a link; names the recovery
    ├── StateWriteError             exit 4: a state file could not be written (a full disk)
    ├── BackendError                exit 4: a stack update or read failed (wraps Automation API errors)
    │   └── PulumiCliMissing        exit 2: no usable pulumi CLI (drive/pulumi_backend.py)
    ├── AwsError                    exit 4: an AWS API call failed after retries (wraps botocore errors)
    ├── MetricsUnavailable          exit 4: a metrics provider could not answer (the analysis retries)
    ├── ReportError                 exit 4: the report files could not be written (report.py)
    ├── DeploymentCancelled         exit 128+signal: cancelled, nothing changed (drive/cancel.py)
    └── StepFailed                  a step's check failed; the runner rolls back (drive/outcomes.py)

Classes defined outside this module live beside the code that raises them (the path in parentheses);
``tests/test_errors_tree.py`` compares this drawing with the classes the package really defines.

A failed deployment is not an exception, and neither is a failed rollback: the driver returns the
deployment's record (rolled back, or failed with the one command that finishes the job when the
stack is left open), and the CLI's exit code comes from that record.

Lower-level errors are translated at the adapter edge with ``raise ... from exc`` so the cause
stays visible in ``--debug`` output while users see one line.
"""

from __future__ import annotations


class RfsDeployError(Exception):
    """Base of every error rfs-deploy raises on purpose."""

    exit_code = 1


class InvalidInput(RfsDeployError):
    """The user's input is wrong; nothing has been changed."""

    exit_code = 2


class ConfigError(InvalidInput):
    """A stack config key is missing, misspelt or has a bad value."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"config {key}: {reason}" if key else f"config: {reason}")


class ScenarioError(InvalidInput):
    """A sandbox scenario file is wrong."""


class UnknownService(InvalidInput):
    """The named service is not in the stack."""


class UnknownStack(InvalidInput):
    """The named stack does not exist."""


class UnknownVersion(InvalidInput):
    """The requested stack history version does not exist or has no checkpoint."""


class PreconditionFailed(RfsDeployError):
    """The deployment refuses to start, e.g. an alarm is already firing."""

    exit_code = 2


class StackBusy(RfsDeployError):
    """Another update or deployment holds the stack."""

    exit_code = 2


class MissingCredentials(RfsDeployError):
    """No AWS credentials were found for a command that talks to AWS."""

    exit_code = 2


class DamagedState(RfsDeployError):
    """A file in the state directory is damaged (truncated, not JSON, not what rfs-deploy wrote)
    or is a symbolic link; the message names it and the one command that recovers. Nothing was
    changed."""

    exit_code = 2


class StateWriteError(RfsDeployError):
    """A file in the state directory could not be written (a full disk, a size limit); the old
    file is left as it was and no temporary file is left behind."""

    exit_code = 4


class BackendError(RfsDeployError):
    """A stack operation (update, history, outputs) failed."""

    exit_code = 4


class AwsError(RfsDeployError):
    """An AWS API call failed after botocore's retries."""

    exit_code = 4


class MetricsUnavailable(RfsDeployError):
    """A metrics provider (CloudWatch, Prometheus) could not answer one window's query: the
    analysis counts the window as a failed fetch and asks again; it is never a verdict."""

    exit_code = 4
