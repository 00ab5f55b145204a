"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 (docs/webhooks.md), shared by
the driver's and the command line's webhook tests. Every body it gets is checked against the
event schema, docs/webhook-event.schema.json, when it closes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "webhook-event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class Receiver:
    """A webhook receiver: a real HTTP server on 127.0.0.1 in a thread. ``answer(n)`` is the
    status of the n-th request (from 0; 0 closes the connection without an answer). It answers
    at most ``limit`` requests (503 after that) and records every body with its headers."""

    def __init__(self, answer: Callable[[int], int] = lambda n: 200, limit: int = 400) -> None:
        self.requests: list[tuple[dict[str, Any], dict[str, str], int]] = []
        self.limit = limit
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                with lock:
                    n = len(receiver.requests)
                    status = answer(n) if n < receiver.limit else 503
                    receiver.requests.append((body, dict(self.headers), status))
                if status == 0:
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def delivered(self) -> list[dict[str, Any]]:
        """The bodies answered 2xx, first copy of each id only (as a receiver dedupes)."""
        seen: set[str] = set()
        out = []
        for body, _, status in self.requests:
            key = body.get("id", json.dumps(body, sort_keys=True))
            if 200 <= status < 300 and key not in seen:
                seen.add(key)
                out.append(body)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        assert len(self.requests) <= self.limit + 1  # bounded: the test never floods it
        for body, _, _ in self.requests:
            if "text" not in body:
                VALIDATOR.validate(body)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(answer: Callable[[int], int] = lambda n: 200, limit: int = 400) -> Receiver:
        made.append(Receiver(answer, limit))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()
