"""The dashboard's HTTP server: one page, a JSON state it polls, and the buttons.

Security model (docs/dashboard.md): the server listens on a loopback address only; every request
must carry the random token the command printed (the page's own request in its query string, the
page's API calls in the ``X-RFS-Token`` header), compared in constant time, else 403. A button is
a POST that must carry the token in the header and a JSON body: a page of another origin can
neither read the token nor set that header without a CORS preflight, which this server never
answers. No request line is logged (the page's URL holds the token).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rfs_deploy.config.secrets import redact
from rfs_deploy.dashboard.page import TOKEN_HEADER, render_page

#: What the buttons run (``rfs-deploy ACTION --stack S --service X``).
ACTIONS = ("promote", "pause", "abort")
#: How often the state is read at most, whatever the number of pages polling it.
STATE_INTERVAL = 1.0
#: A service name as the buttons accept it (never an option: it is an argument of a command).
_SERVICE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
#: Lines of a command's stderr kept for the page.
_LOG_LINES = 40
_MAX_BODY = 4096


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Action:
    """One button press: the command it runs and, once it ended, its exit code and output."""

    id: int
    action: str
    service: str
    argv: list[str]
    started_at: float
    ended_at: float | None = None
    exit_code: int | None = None
    #: The command's result line(s) (stdout), else its last stderr line.
    outcome: str = ""
    log: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "service": self.service,
            "command": " ".join(["rfs-deploy", *self.argv_shown()]),
            "running": self.exit_code is None,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
            "outcome": self.outcome,
            "log": self.log,
        }

    def argv_shown(self) -> list[str]:
        """The command's arguments after the interpreter and ``-m rfs_deploy``."""
        try:
            return self.argv[self.argv.index("rfs_deploy") + 1 :]
        except ValueError:
            return self.argv[1:]


class Actions:
    """The buttons' commands: one at a time (the commands lock the stack anyway), each a child
    process in its own session, so a Ctrl-C that stops the dashboard does not cancel it."""

    def __init__(self, argv: Callable[[str, str], list[str]]) -> None:
        self._argv = argv
        self._lock = threading.Lock()
        self._all: list[Action] = []

    def start(self, action: str, service: str) -> Action | None:
        """The started action; None while another one runs."""
        with self._lock:
            if any(a.exit_code is None for a in self._all):
                return None
            started = Action(len(self._all) + 1, action, service, self._argv(action, service), time.time())
            self._all.append(started)
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        return started

    def _run(self, action: Action) -> None:
        try:
            done = subprocess.run(
                action.argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
                check=False,
            )
            code, out, err = done.returncode, done.stdout, done.stderr
        except OSError as exc:
            code, out, err = 4, "", f"could not run the command: {exc}"
        out_lines = [redact(line) for line in out.strip().splitlines() if line.strip()]
        err_lines = [redact(line) for line in err.strip().splitlines() if line.strip()]
        with self._lock:
            action.outcome = "\n".join(out_lines) or (err_lines[-1] if err_lines else "(no output)")
            action.log = err_lines[-_LOG_LINES:]
            action.ended_at = time.time()
            action.exit_code = code

    def running(self) -> list[Action]:
        with self._lock:
            return [a for a in self._all if a.exit_code is None]

    def to_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a.to_json() for a in reversed(self._all)]


class StateReader:
    """The deployments the page shows, read at most every :data:`STATE_INTERVAL` seconds and
    by one thread at a time (the reader opens the backend; pages poll every second)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._cached: dict[str, Any] | None = None
        self._at = 0.0

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._at >= STATE_INTERVAL:
                try:
                    self._cached = {"error": None, **self._read()}
                except Exception as exc:  # the page says what went wrong and keeps polling
                    message = " ".join(str(exc).split()) or type(exc).__name__
                    previous = self._cached or {"deployments": []}
                    self._cached = {**previous, "error": redact(message)}
                self._at = time.monotonic()
            return self._cached


class Dashboard(ThreadingHTTPServer):
    """The server: ``stack`` is what the page is about; ``read`` gives the state (see
    :class:`StateReader`), ``argv(action, service)`` the command a button runs."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(
        self,
        address: tuple[str, int],
        stack: str,
        read: Callable[[], dict[str, Any]],
        argv: Callable[[str, str], list[str]],
        token: str | None = None,
    ) -> None:
        self.stack = stack
        self.token = token or new_token()
        self.state = StateReader(read)
        self.actions = Actions(argv)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"http://{shown}:{port}/?token={self.token}"

    def authorized(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


class _Handler(BaseHTTPRequestHandler):
    server: Dashboard
    server_version = "rfs-deploy-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: a request line holds the token."""

    # ------------------------------------------------------------------ requests

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        given = self.headers.get(TOKEN_HEADER) or next(iter(query.get("token", [])), None)
        if not self.server.authorized(given):
            return self._refuse()
        if url.path == "/":
            nonce = secrets.token_urlsafe(16)
            self._send(HTTPStatus.OK, render_page(self.server.stack, nonce).encode(), "text/html", nonce)
        elif url.path == "/api/state":
            self._json(HTTPStatus.OK, self._state())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {url.path}"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if not self.server.authorized(self.headers.get(TOKEN_HEADER)):
            return self._refuse()
        if url.path != "/api/action":
            return self._json(HTTPStatus.NOT_FOUND, {"error": f"no such action endpoint: {url.path}"})
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send a JSON body"})
        body = self._body()
        if body is None:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": "the body is not a JSON object"})
        action, service = body.get("action"), body.get("service")
        if action not in ACTIONS:
            return self._json(
                HTTPStatus.BAD_REQUEST, {"error": f"action must be one of {', '.join(ACTIONS)}"}
            )
        if not isinstance(service, str) or not _SERVICE.match(service):
            return self._json(HTTPStatus.BAD_REQUEST, {"error": "service must be a service name"})
        started = self.server.actions.start(action, service)
        if started is None:
            return self._json(HTTPStatus.CONFLICT, {"error": "another command is still running"})
        self._json(HTTPStatus.ACCEPTED, started.to_json())

    def do_PUT(self) -> None:
        self._not_allowed()

    def do_DELETE(self) -> None:
        self._not_allowed()

    def do_PATCH(self) -> None:
        self._not_allowed()

    def do_OPTIONS(self) -> None:  # no CORS preflight is ever answered
        self._not_allowed()

    # ------------------------------------------------------------------ helpers

    def _state(self) -> dict[str, Any]:
        return {
            "stack": self.server.stack,
            "now": time.time(),
            **self.server.state.get(),
            "actions": self.server.actions.to_json(),
        }

    def _body(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if length <= 0 or length > _MAX_BODY:
            return None
        try:
            data = json.loads(self.rfile.read(length))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _not_allowed(self) -> None:
        if not self.server.authorized(self.headers.get(TOKEN_HEADER)):
            return self._refuse()
        self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method not allowed"})

    def _refuse(self) -> None:
        self._json(HTTPStatus.FORBIDDEN, {"error": "forbidden: open the URL the dashboard printed"})

    def _json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload, default=str).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, kind: str, nonce: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        sources = f"'nonce-{nonce}'" if nonce else "'none'"
        self.send_header(
            "Content-Security-Policy",
            f"default-src 'none'; script-src {sources}; style-src {sources}; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def serve(server: Dashboard, ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (KeyboardInterrupt propagates; the caller closes the server)."""
    if ready is not None:
        ready(server.url)
    server.serve_forever(poll_interval=0.2)


def loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (the only kind the dashboard listens on)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__: Sequence[str] = ("ACTIONS", "TOKEN_HEADER", "Action", "Dashboard", "loopback", "new_token", "serve")
