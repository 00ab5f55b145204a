"""HTTP validation of a slot before traffic moves to it (SPEC D6).

:func:`validate` runs every check of a :class:`ValidationSettings` concurrently against one base
URL (in production the ALB's test listener, which forwards to the idle slot):

* ``health``: ``GET <health_path>`` answers 2xx;
* ``version``: ``GET <version_path>`` reports the expected version, as JSON ``{"version": ...}``
  or as plain text;
* ``critical <path>``: ``GET <path>`` answers without a 5xx (a 401 or 404 is the service's own
  business; a 5xx means it is broken). A 5xx is asked again up to ``retries`` times with the
  same backoff, so the check fails on an endpoint that is broken, not on one unlucky request;
* ``smoke <name>``: a request whose status must equal ``expect_status`` and whose body must
  contain ``body_contains``.

Each check becomes a :class:`CheckResult`; a check that errors (connection refused, timeout, bad
JSON) is a failed check with a one-line reason, so :func:`validate` never raises for the
service's faults. Connection errors are retried a bounded number of times with exponential
backoff, which covers a listener that is still coming up (other HTTP answers are final, except a
critical endpoint's 5xx, above).

All IO goes through one ``httpx.AsyncClient``. Pass ``client=`` (or ``transport=``, for example an
``httpx.MockTransport``) to answer from tests or the sandbox. Header values (``Authorization`` and
friends) are held as secrets and never appear in reprs, logs or details.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from rfs_deploy.config.model import SmokeTest, ValidationSettings
from rfs_deploy.config.secrets import redact, remember
from rfs_deploy.drive.protocols import Clock, SystemClock
from rfs_deploy.logs import get_logger

log = get_logger(__name__)


#: Errors that mean the request never reached the server, so another attempt is safe (even a POST).
_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check; ``detail`` is one line, safe to show and log."""

    name: str
    ok: bool
    detail: str
    elapsed: float
    status_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "elapsed": round(self.elapsed, 3),
            "statusCode": self.status_code,
        }


@dataclass(frozen=True)
class ValidationReport:
    """All checks of one validation, in the order the settings declare them."""

    base_url: str
    expected_version: str
    checks: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if not check.ok)

    @property
    def summary(self) -> str:
        """One line: the first failure in declared order, or how many checks passed."""
        failures = self.failures
        if not failures:
            return f"all {len(self.checks)} validation checks passed"
        first = failures[0]
        more = f" (+{len(failures) - 1} more failed)" if len(failures) > 1 else ""
        return f"{first.name}: {first.detail}{more}"

    def is_success(self) -> bool:
        """Result-style alias of :attr:`ok`, so a report can be returned from a hook."""
        return self.ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseUrl": redact(self.base_url),
            "expectedVersion": self.expected_version,
            "ok": self.ok,
            "summary": self.summary,
            "checks": [check.as_dict() for check in self.checks],
        }


def normalize_version(version: str) -> str:
    """Compare versions without surrounding blanks or a leading ``v`` (``v2.0.0`` == ``2.0.0``)."""
    version = version.strip()
    return version[1:] if version[:1] in ("v", "V") and version[1:2].isdigit() else version


# --------------------------------------------------------------------------- running the checks


class _Failed(Exception):
    """A check's verdict that it failed; the message is the one-line detail."""

    def __init__(self, detail: str, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code


@dataclass
class _Session:
    """What every check of one validation shares."""

    client: httpx.AsyncClient
    base_url: str
    settings: ValidationSettings
    clock: Clock
    headers: dict[str, str]

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def clean(self, text: str) -> str:
        """One line, no header values, not too long."""
        line = " ".join(redact(text, self.headers.values()).split())
        return line if len(line) <= 200 else line[:197] + "..."

    async def request(self, method: str, path: str, body: str | None = None) -> httpx.Response:
        """One request with bounded retries on connection errors; raises _Failed when it cannot."""
        settings = self.settings
        delay = settings.backoff
        for attempt in range(settings.retries + 1):
            try:
                async with asyncio.timeout(settings.timeout):
                    return await self.client.request(
                        method, self.url(path), headers=self.headers, content=body, timeout=settings.timeout
                    )
            except _RETRYABLE as exc:
                if attempt == settings.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise _Failed(f"{_describe_error(exc)}{tries}") from exc
                log.debug("%s %s: %s; retrying in %.2fs", method, path, _describe_error(exc), delay)
                await self.clock.sleep(delay)
                delay *= 2
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise _Failed(f"timed out after {settings.timeout:g}s") from exc
            except httpx.HTTPError as exc:
                raise _Failed(_describe_error(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover


#: A check: given the session, the one-line detail and status on success; raises _Failed otherwise.
_Check = Callable[[_Session], Awaitable[tuple[str, int]]]


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc) or "no reason given"
        refused = _caused_by(exc, ConnectionRefusedError) or "refused" in text.lower()
        return "connection refused" if refused else f"cannot connect ({text})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"server broke the connection ({exc})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in ``exc``'s chain of causes (httpcore hides the OS error under a generic one)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


async def _run(session: _Session, name: str, check: _Check) -> CheckResult:
    """Run one check coroutine function and turn whatever happens into a CheckResult."""
    started = time.perf_counter()
    status: int | None
    try:
        detail, status = await check(session)
        ok = True
    except _Failed as failed:
        detail, status, ok = str(failed), failed.status_code, False
    except Exception as exc:  # a bug or an unexpected client error must not escape validate()
        log.debug("check %s crashed", name, exc_info=True)
        detail, status, ok = f"error: {type(exc).__name__}: {exc}", None, False
    elapsed = time.perf_counter() - started
    result = CheckResult(name, ok, session.clean(detail), elapsed, status)
    log.info("validation %s: %s (%s)", "passed" if ok else "FAILED", name, result.detail)
    return result


def _health(path: str) -> _Check:
    async def check(session: _Session) -> tuple[str, int]:
        response = await session.request("GET", path)
        status = response.status_code
        if not response.is_success:
            raise _Failed(f"GET {path} answered {status}, expected 2xx", status)
        return f"GET {path} answered {status}", status

    return check


def _version(path: str, expected: str) -> _Check:
    async def check(session: _Session) -> tuple[str, int]:
        response = await session.request("GET", path)
        status = response.status_code
        if not response.is_success:
            raise _Failed(f"GET {path} answered {status}, expected 2xx", status)
        actual = _reported_version(response)
        if normalize_version(actual) != normalize_version(expected):
            raise _Failed(f"version mismatch: expected {expected}, got {actual}", status)
        return f"version {actual}", status

    return check


def _reported_version(response: httpx.Response) -> str:
    """The version in a ``/version`` answer: JSON ``{"version": ...}`` or plain text."""
    text = response.text.strip()
    status = response.status_code
    looks_json = "json" in response.headers.get("content-type", "") or text[:1] in ("{", "[", '"')
    if not looks_json:
        if not text:
            raise _Failed("empty version answer", status)
        return text.splitlines()[0].strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Failed(f"bad JSON in version answer ({exc.msg})", status) from exc
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and isinstance(data.get("version"), str | int | float):
        return str(data["version"])
    raise _Failed('version answer has no "version" field', status)


def _critical(path: str) -> _Check:
    """A 5xx fails the check only when it persists: the answer is asked again ``retries`` times.

    One request is a functional check, not a measurement — a service with a 0.2 % background
    error rate answers one request in 500 with a 5xx, and three critical endpoints would then
    fail one healthy release in 170. Error *rates* are the analysis' and the load probe's job;
    an endpoint that is really broken answers 5xx every time and still fails here.
    """

    async def check(session: _Session) -> tuple[str, int]:
        settings = session.settings
        delay = settings.backoff
        for attempt in range(settings.retries + 1):
            response = await session.request("GET", path)
            status = response.status_code
            if not response.is_server_error:
                again = f" (after {attempt} 5xx answer{'s' if attempt > 1 else ''})" if attempt else ""
                return f"GET {path} answered {status}{again}", status
            if attempt < settings.retries:
                log.debug("GET %s answered %d; asking again in %.2fs", path, status, delay)
                await session.clock.sleep(delay)
                delay *= 2
        tries = f" on all {settings.retries + 1} attempts" if settings.retries else ""
        raise _Failed(f"GET {path} answered {status}{tries}", status)

    return check


def _smoke(test: SmokeTest) -> _Check:
    async def check(session: _Session) -> tuple[str, int]:
        response = await session.request(test.method, test.path, test.body)
        status = response.status_code
        what = f"{test.method} {test.path}"
        if status != test.expect_status:
            raise _Failed(f"{what} answered {status}, expected {test.expect_status}", status)
        if test.body_contains is not None and test.body_contains not in response.text:
            raise _Failed(f"{what} body does not contain {test.body_contains!r}", status)
        return f"{what} answered {status}", status

    return check


def _checks(settings: ValidationSettings, expected_version: str) -> list[tuple[str, _Check]]:
    checks: list[tuple[str, _Check]] = [("health", _health(settings.health_path))]
    if settings.version_path is not None:
        checks.append(("version", _version(settings.version_path, expected_version)))
    checks += [(f"critical {path}", _critical(path)) for path in settings.critical_endpoints]
    checks += [(f"smoke {test.label}", _smoke(test)) for test in settings.smoke_tests]
    return checks


async def validate(
    base_url: str,
    expected_version: str,
    settings: ValidationSettings | None = None,
    client: httpx.AsyncClient | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
) -> ValidationReport:
    """Run every check of ``settings`` concurrently against ``base_url``; never raises for a check.

    ``client`` is used as given and left open; otherwise a client is made (on ``transport`` when
    one is given) and closed afterwards. ``clock`` paces retry backoff (default: wall clock).
    """
    settings = settings or ValidationSettings()
    headers = {name: value.get_secret_value() for name, value in settings.headers.items()}
    remember(headers.values())  # header values are secrets: redacted in logs as in details
    checks = _checks(settings, expected_version)
    owned = client is None
    http = client or httpx.AsyncClient(transport=transport, timeout=settings.timeout)
    try:
        session = _Session(http, base_url, settings, clock or SystemClock(), headers)
        results = await asyncio.gather(*(_run(session, name, check) for name, check in checks))
    finally:
        if owned:
            await http.aclose()
    return ValidationReport(base_url, expected_version, tuple(results))
