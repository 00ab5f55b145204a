"""moto in-process, with fake credentials forced for as long as it runs: never real AWS.

:class:`SimulatedAws` starts moto's ``mock_aws``, replaces every AWS credential variable of the
process environment with fakes (restoring them on stop) and hands out two kinds of clients:

* :meth:`raw` clients talk to moto as it is; the sandbox's physics and applier use them.
* :meth:`boto_session` is a ``boto3.Session`` whose clients have the sandbox's gap handlers
  installed (see :mod:`rfs_deploy.sim.gaps`): the production adapters of :mod:`rfs_deploy.aws`
  run over it unchanged and see instance refresh, p99 and target health as AWS would report them.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Protocol

import boto3
from moto import mock_aws
from moto.moto_api._internal import mock_random

DEFAULT_REGION = "us-east-1"

#: Variables that could point boto3 at a real account; cleared while the sandbox runs.
#: Variables that could point boto3 at a real account (a profile, a role, an endpoint): cleared.
REAL_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
)


def fake_environment(region: str = DEFAULT_REGION) -> dict[str, str]:
    """Fake credentials, no shared config or instance metadata, one region: boto3 finds nothing real."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class EnvPatch(Protocol):
    """What sets and removes environment variables for a while (pytest's ``monkeypatch``)."""

    def setenv(self, name: str, value: str) -> None: ...

    def delenv(self, name: str, raising: bool = ...) -> None: ...


def use_fake_aws(env: EnvPatch, region: str = DEFAULT_REGION) -> None:
    """Through ``env``: :func:`fake_environment` set and :data:`REAL_AWS_VARIABLES` removed."""
    for key, value in fake_environment(region).items():
        env.setenv(key, value)
    for key in REAL_AWS_VARIABLES:
        env.delenv(key, raising=False)


class SimulatedAws:
    """moto started and stopped by the sandbox, with fake credentials forced meanwhile.

    Only one can run per process (moto's mock is process-global). Use as a context manager or
    call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, region: str = DEFAULT_REGION) -> None:
        self.region = region
        self._mock: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._raw: dict[str, Any] = {}
        self._handlers: list[tuple[str, Any]] = []

    @property
    def running(self) -> bool:
        return self._mock is not None

    def start(self) -> SimulatedAws:
        """Force fake credentials into ``os.environ`` and start moto."""
        if self._mock is not None:
            return self
        fake = fake_environment(self.region)
        for key in (*fake, *REAL_AWS_VARIABLES):
            self._saved_env[key] = os.environ.get(key)
        for key in REAL_AWS_VARIABLES:
            os.environ.pop(key, None)
        os.environ.update(fake)
        self._mock = mock_aws()
        self._mock.start()
        return self

    def stop(self) -> None:
        """Stop moto (its state is gone) and restore the environment as it was."""
        if self._mock is None:
            return
        self._mock.stop()
        self._mock = None
        self._raw.clear()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def __enter__(self) -> SimulatedAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def raw(self, service: str) -> Any:
        """A plain moto client (no gap handlers), cached per service."""
        if self._mock is None:
            raise RuntimeError("the simulated AWS is not running")
        if service not in self._raw:
            self._raw[service] = boto3.client(service, region_name=self.region)
        return self._raw[service]

    def add_handler(self, event: str, handler: Any) -> None:
        """Install a botocore event handler on every session from :meth:`boto_session`."""
        self._handlers.append((event, handler))

    def boto_session(self) -> boto3.Session:
        """A boto3 session over moto whose clients carry the sandbox's gap handlers."""
        session = boto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            region_name=self.region,
        )
        for event, handler in self._handlers:
            session.events.register(event, handler)
        return session


def seed_ids(key: str, generation: int = 0) -> None:
    """Make moto's next generated ids (ARNs, instance ids) a function of ``key``.

    The applier calls this before creating a resource, so re-creating the same resource in a
    new process (``resume``) yields the same ARN and the stack outputs stay valid.
    """
    digest = hashlib.sha256(f"{key}#{generation}".encode()).hexdigest()
    mock_random.seed(int(digest[:16], 16))


def unseed_ids() -> None:
    """Back to unpredictable ids (so later launches never repeat an earlier id)."""
    mock_random.seed(None)
