"""HTTP validation against a real HTTP server on 127.0.0.1 (and httpx.MockTransport for the sandbox path)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from rfs_deploy.drive.validation import (
    CheckResult,
    SmokeTest,
    ValidationReport,
    ValidationSettings,
    normalize_version,
    redact,
    validate,
)

SECRET = "Bearer s3cr3t-token-value"


@dataclass
class Route:
    status: int = 200
    body: str = "ok"
    content_type: str = "text/plain"
    delay: float = 0.0
    #: Answered only once every party of the barrier has arrived (requests in flight together).
    together: threading.Barrier | None = None


@dataclass
class Service:
    """A tiny HTTP service: a route table, and what it was asked."""

    base_url: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


def _handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            service.seen.append((self.command, self.path, dict(self.headers), body))
            route = service.routes.get(self.path, Route(404, "not found"))
            if route.delay:
                time.sleep(route.delay)
            status = route.status
            if route.together is not None:
                try:
                    route.together.wait(timeout=20)
                except threading.BrokenBarrierError:
                    status = 503  # the others never came while this one waited
            text = route.body
            if text == "<echo-authorization>":
                text = self.headers.get("Authorization", "")
            data = text.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                pass

        do_GET = do_POST = do_HEAD = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def service() -> Iterator[Service]:
    svc = Service()
    svc.routes.update(
        {
            "/health": Route(200, "healthy"),
            "/version": Route(200, json.dumps({"version": "2.0.0"}), "application/json"),
        }
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(svc))
    server.daemon_threads = True
    server.block_on_close = False
    svc.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield svc
    server.shutdown()
    server.server_close()


def run(base_url: str, version: str = "2.0.0", settings: ValidationSettings | None = None, **kw):
    return asyncio.run(validate(base_url, version, settings, **kw))


def by_name(report: ValidationReport) -> dict[str, CheckResult]:
    return {check.name: check for check in report.checks}


FULL = ValidationSettings(
    critical_endpoints=["/api/orders", "/api/users"],
    smoke_tests=[
        SmokeTest(path="/api/orders", body_contains="order-1"),
        SmokeTest.model_validate(
            {"path": "/api/echo", "method": "post", "expectStatus": 201, "body": "ping", "name": "echo"}
        ),
    ],
)


def healthy_routes(service: Service) -> None:
    service.routes["/api/orders"] = Route(200, '[{"id": "order-1"}]', "application/json")
    service.routes["/api/users"] = Route(401, "login first")
    service.routes["/api/echo"] = Route(201, "pong")


# --------------------------------------------------------------------------- real server


def test_healthy_service_passes_every_check(service: Service) -> None:
    healthy_routes(service)
    report = run(service.base_url, settings=FULL)
    assert report.ok, report.summary
    assert [c.name for c in report.checks] == [
        "health",
        "version",
        "critical /api/orders",
        "critical /api/users",
        "smoke GET /api/orders",
        "smoke echo",
    ]
    checks = by_name(report)
    assert checks["critical /api/users"].status_code == 401  # 4xx is not a broken endpoint
    assert checks["version"].detail == "version 2.0.0"
    assert report.summary == "all 6 validation checks passed"
    assert all(c.elapsed >= 0 for c in report.checks)
    assert ("POST", "/api/echo") in [(m, p) for m, p, _, _ in service.seen]
    assert b"ping" in [body for _, p, _, body in service.seen if p == "/api/echo"]
    assert report.as_dict()["checks"][0]["statusCode"] == 200


def test_version_mismatch_reports_expected_and_actual(service: Service) -> None:
    service.routes["/version"] = Route(200, json.dumps({"version": "1.0.0"}), "application/json")
    report = run(service.base_url, "2.0.0")
    assert not report.ok
    assert by_name(report)["health"].ok
    assert report.summary == "version: version mismatch: expected 2.0.0, got 1.0.0"


@pytest.mark.parametrize(
    ("body", "content_type", "expected", "ok", "detail"),
    [
        ("v2.0.0\n", "text/plain", "2.0.0", True, "version v2.0.0"),
        ("2.0.0", "text/plain", "v2.0.0", True, "version 2.0.0"),
        ('"2.0.0"', "application/json", "2.0.0", True, "version 2.0.0"),
        ('{"version": ', "application/json", "2.0.0", False, "bad JSON in version answer"),
        ('{"build": "abc"}', "application/json", "2.0.0", False, 'version answer has no "version" field'),
        ("", "text/plain", "2.0.0", False, "empty version answer"),
    ],
)
def test_version_answer_forms(
    service: Service, body: str, content_type: str, expected: str, ok: bool, detail: str
) -> None:
    service.routes["/version"] = Route(200, body, content_type)
    check = by_name(run(service.base_url, expected))["version"]
    assert check.ok is ok
    assert check.detail.startswith(detail)


def test_503_on_a_critical_endpoint_fails(service: Service) -> None:
    healthy_routes(service)
    service.routes["/api/users"] = Route(503, "upstream down")
    report = run(service.base_url, settings=FULL)
    assert not report.ok
    failed = report.failures
    assert [c.name for c in failed] == ["critical /api/users"]
    assert failed[0].status_code == 503
    assert report.summary == "critical /api/users: GET /api/users answered 503 on all 3 attempts"
    asked = [path for method, path, _, _ in service.seen if path == "/api/users"]
    assert len(asked) == 3, "a 5xx is asked again `retries` times before the check fails"


def test_a_transient_5xx_on_a_critical_endpoint_is_asked_again_after_backoff() -> None:
    answers = iter([503, 502, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/users":
            return httpx.Response(next(answers), text="x")
        return httpx.Response(200, text="ok")

    clock = RecordingClock()
    settings = ValidationSettings(
        version_path=None, critical_endpoints=["/api/users"], retries=2, backoff=0.5
    )
    report = run("http://slot.sim", settings=settings, transport=httpx.MockTransport(handler), clock=clock)
    assert report.ok, report.summary
    assert (
        by_name(report)["critical /api/users"].detail == "GET /api/users answered 200 (after 2 5xx answers)"
    )
    assert clock.sleeps == [0.5, 1.0]


def test_a_critical_5xx_without_retries_fails_at_once() -> None:
    settings = ValidationSettings(version_path=None, critical_endpoints=["/api/users"], retries=0)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500 if request.url.path == "/api/users" else 200, text="x")

    report = run("http://slot.sim", settings=settings, transport=httpx.MockTransport(handler))
    assert report.summary == "critical /api/users: GET /api/users answered 500"


def test_unhealthy_health_endpoint_fails(service: Service) -> None:
    service.routes["/health"] = Route(500, "boom")
    check = by_name(run(service.base_url))["health"]
    assert (check.ok, check.status_code) == (False, 500)
    assert check.detail == "GET /health answered 500, expected 2xx"


def test_smoke_test_body_and_status_mismatch(service: Service) -> None:
    healthy_routes(service)
    service.routes["/api/orders"] = Route(200, "[]", "application/json")
    service.routes["/api/echo"] = Route(200, "pong")
    report = run(service.base_url, settings=FULL)
    checks = by_name(report)
    assert checks["smoke GET /api/orders"].detail == "GET /api/orders body does not contain 'order-1'"
    assert checks["smoke echo"].detail == "POST /api/echo answered 200, expected 201"
    assert report.summary.startswith("smoke GET /api/orders: ")
    assert report.summary.endswith("(+1 more failed)")


def test_timeout_is_a_failed_check(service: Service) -> None:
    service.routes["/health"] = Route(200, "slow", delay=1.0)
    settings = ValidationSettings(timeout=0.2, version_path=None)
    started = time.perf_counter()
    report = run(service.base_url, settings=settings)
    assert time.perf_counter() - started < 0.9
    assert report.checks[0].detail == "timed out after 0.2s"
    assert not report.ok


def test_connection_refused_is_a_failed_check_after_bounded_retries() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ValidationSettings(retries=2, backoff=0.01)
    report = run(f"http://127.0.0.1:{port}", settings=settings)
    assert not report.ok
    for check in report.checks:
        assert check.detail == "connection refused after 3 attempts"
        assert check.status_code is None


def test_checks_run_concurrently(service: Service) -> None:
    """Each of the four checks is answered only when all four are in flight at once: run one after
    another, the first would wait alone and fail. (No wall-clock bound: machines here are busy.)"""
    together = threading.Barrier(4)
    for path in ("/health", "/a", "/b", "/c"):
        service.routes[path] = Route(200, "ok", together=together)
    settings = ValidationSettings(
        version_path=None, critical_endpoints=["/a", "/b"], smoke_tests=[SmokeTest(path="/c")]
    )
    report = run(service.base_url, settings=settings)
    assert report.ok, report.summary
    assert len(report.checks) == 4
    assert not together.broken


def test_headers_are_sent_but_never_shown(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    service.routes["/version"] = Route(200, "<echo-authorization>")
    settings = ValidationSettings(headers={"Authorization": SecretStr(SECRET)})
    with caplog.at_level(logging.DEBUG, logger="rfs_deploy"):
        report = run(service.base_url, settings=settings)
    assert all(headers.get("Authorization") == SECRET for _, _, headers, _ in service.seen)
    assert report.summary == "version: version mismatch: expected 2.0.0, got ***"
    shown = [repr(settings), str(settings.model_dump()), json.dumps(report.as_dict()), caplog.text]
    assert caplog.text  # something was logged, so the next line checks real text
    assert not any("s3cr3t" in text for text in shown)


# --------------------------------------------------------------------------- injected transport


class RecordingClock:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def now(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_connection_errors_are_retried_with_backoff_through_an_injected_transport() -> None:
    attempts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        if len(attempts) < 3:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, text="up")

    clock = RecordingClock()
    settings = ValidationSettings(version_path=None, retries=3, backoff=0.5)
    report = run("http://slot.sim", settings=settings, transport=httpx.MockTransport(handler), clock=clock)
    assert report.ok, report.summary
    assert attempts == ["/health"] * 3
    assert clock.sleeps == [0.5, 1.0]


def test_a_supplied_client_is_used_and_left_open() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": "2.0.0"})
        return httpx.Response(200, text="ok")

    async def scenario() -> tuple[ValidationReport, bool]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            report = await validate("http://green.sim/", "2.0.0", client=client)
            return report, client.is_closed

    report, closed = asyncio.run(scenario())
    assert report.ok and not closed
    assert report.base_url == "http://green.sim/"


def test_a_crashing_transport_becomes_a_failed_check() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("transport bug")

    report = run("http://slot.sim", transport=httpx.MockTransport(handler))
    assert [c.detail for c in report.checks] == ["error: RuntimeError: transport bug"] * 2


# --------------------------------------------------------------------------- settings and helpers


def test_settings_load_from_camel_case_config() -> None:
    settings = ValidationSettings.model_validate(
        {
            "healthPath": "/healthz",
            "versionPath": None,
            "criticalEndpoints": ["/api"],
            "smokeTests": [{"path": "/api", "expectStatus": 204, "bodyContains": ""}],
            "timeout": 3,
        }
    )
    assert settings.health_path == "/healthz" and settings.version_path is None
    assert settings.smoke_tests[0].expect_status == 204
    assert ValidationSettings().timeout == 10.0


@pytest.mark.parametrize(
    "data",
    [{"criticalEndpoints": ["api"]}, {"healthPath": "health"}, {"retries": 99}, {"unknownKey": 1}],
)
def test_bad_settings_are_rejected(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ValidationSettings.model_validate(data)


def test_redact_and_normalize_version() -> None:
    assert redact("token abc and abcdef", ["abc", "abcdef", ""]) == "token *** and ***"
    assert normalize_version(" v1.2.3 ") == "1.2.3"
    assert normalize_version("vnext") == "vnext"
