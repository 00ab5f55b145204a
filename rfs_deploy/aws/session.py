"""boto3 clients for the adapters, and the one place botocore errors become rfs-deploy errors.

Every client an :class:`AwsSession` builds shares one region, one credential chain and botocore's
*standard* retry mode, so throttling and transient errors are retried with backoff by botocore
itself; the adapters never loop on errors of their own. Whatever still fails after the retries is
translated by :func:`aws_errors` at the adapter edge (``raise ... from exc``): users see one line,
``--debug`` shows the botocore cause.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from rfs_deploy.config.loading import REGION_KEY
from rfs_deploy.errors import AwsError, ConfigError, MissingCredentials
from rfs_deploy.logs import get_logger

log = get_logger(__name__)

#: Total attempts per API call (the first one included) unless the caller says otherwise.
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
USER_AGENT_EXTRA = "rfs-deploy"

NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "or run where an IAM role is available"
)
NO_REGION = "no AWS region: set aws:region in the stack config, or AWS_REGION"

#: Error codes meaning the credentials exist but AWS refused them.
_REJECTED_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)


def error_code(exc: ClientError) -> str:
    """The AWS error code of a botocore ClientError (``""`` when the response carries none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _one_line(text: str) -> str:
    return " ".join(text.split())


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Translate botocore errors raised inside the block; ``action`` names the call for the user.

    NoCredentialsError / PartialCredentialsError / ProfileNotFound become MissingCredentials,
    NoRegionError a ConfigError on ``aws:region``, everything else (ClientError after retries,
    endpoint connection failures, other botocore errors) AwsError. The original is the ``__cause__``.
    """
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise MissingCredentials(NO_CREDENTIALS) from exc
    except ProfileNotFound as exc:
        raise MissingCredentials(f"{_one_line(str(exc))}; {NO_CREDENTIALS}") from exc
    except NoRegionError as exc:
        raise ConfigError(REGION_KEY, NO_REGION) from exc
    except ClientError as exc:
        code = error_code(exc) or "UnknownError"
        message = _one_line(str(exc.response.get("Error", {}).get("Message", "")))
        hint = " (AWS rejected the credentials)" if code in _REJECTED_CREDENTIAL_CODES else ""
        detail = f": {message}" if message else ""
        raise AwsError(f"{action} failed{hint}: {code}{detail}") from exc
    except (EndpointConnectionError, BotoConnectionError, HTTPClientError) as exc:
        raise AwsError(f"{action} failed: cannot reach AWS ({_one_line(str(exc))})") from exc
    except BotoCoreError as exc:
        raise AwsError(f"{action} failed: {_one_line(str(exc))}") from exc


class AwsSession:
    """Builds (and caches) boto3 clients with one region, credential chain and retry policy.

    ``region`` wins over the environment and profile; without any region the constructor raises
    ConfigError naming ``aws:region``. ``max_attempts`` counts every attempt, the first one
    included (botocore's ``total_max_attempts``; 1 means no retry). ``endpoint_url`` points every
    client at one endpoint (a local test server or moto server). Credentials are checked once, when
    the first client is built: none found raises MissingCredentials.
    """

    def __init__(
        self,
        region: str | None = None,
        *,
        profile: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        endpoint_url: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        boto_session: boto3.Session | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts counts the first attempt too: it must be at least 1")
        with aws_errors("AWS session setup"):
            self._boto = boto_session or boto3.Session(profile_name=profile, region_name=region)
        resolved = region or self._boto.region_name or os.environ.get("AWS_REGION")
        if not resolved:
            raise ConfigError(REGION_KEY, NO_REGION)
        self.region: str = resolved
        self.max_attempts = max_attempts
        self.endpoint_url = endpoint_url
        self.config = Config(
            region_name=self.region,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            user_agent_extra=USER_AGENT_EXTRA,
        )
        self._clients: dict[str, Any] = {}
        self._credentials_checked = False

    def require_credentials(self) -> None:
        """Raise MissingCredentials unless the credential chain resolves to something."""
        if self._credentials_checked:
            return
        with aws_errors("AWS credential lookup"):
            credentials = self._boto.get_credentials()
        if credentials is None:
            raise MissingCredentials(NO_CREDENTIALS)
        self._credentials_checked = True

    def client(self, service: str) -> Any:
        """The cached boto3 client for ``service`` (e.g. ``"cloudwatch"``, ``"elbv2"``)."""
        if service not in self._clients:
            self.require_credentials()
            with aws_errors(f"creating the {service} client"):
                self._clients[service] = self._boto.client(
                    service, config=self.config, endpoint_url=self.endpoint_url
                )
            log.debug("built %s client in %s (max %d attempts)", service, self.region, self.max_attempts)
        return self._clients[service]
