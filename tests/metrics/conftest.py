"""Fixtures for the metrics provider tests: fake AWS credentials, moto, a local CloudWatch."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from moto import mock_aws

from rfs_deploy.aws import AwsSession

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Fake credentials and no way to reach real AWS or the user's own AWS config."""
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def session(moto: None) -> AwsSession:
    return AwsSession(REGION, max_attempts=2)


# --------------------------------------------------------------------------- a local CloudWatch


@dataclass
class FakeCloudWatch:
    """A CloudWatch endpoint on 127.0.0.1 speaking the JSON protocol botocore picks for it.

    ``replies`` is a script of (HTTP status, JSON body) answers, one per request received;
    ``received`` records (X-Amz-Target, JSON body) of each request.
    """

    url: str
    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _handler(fake: FakeCloudWatch) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            fake.received.append((self.headers.get("X-Amz-Target", ""), json.loads(body or b"{}")))
            status, reply = fake.replies.pop(0) if fake.replies else (500, {"message": "script ran out"})
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake_cloudwatch() -> Iterator[FakeCloudWatch]:
    fake = FakeCloudWatch(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
