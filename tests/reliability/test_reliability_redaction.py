"""Secrets in log records and URL credentials.

rfs-deploy installs no log handlers: the program using it does, often ``basicConfig(level=DEBUG)``
on the root logger. Every record of an rfs_deploy logger must therefore be redacted before any
handler sees it — its message, its arguments and the traceback it carries (the exception's
message, chained exceptions, the source lines of its frames). And a URL written with
credentials (``postgres://app:PASSWORD@db``) has its password redacted everywhere text is
reported — hook details, hook output, log records, deployment records, reports, JSON — whether
or not the password is a known secret value.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rfs_deploy
from rfs_deploy.config.model import ValidationSettings
from rfs_deploy.config.secrets import redact, remember
from rfs_deploy.connect import open_seams
from rfs_deploy.drive.command_hook import CommandHook
from rfs_deploy.drive.context import Hooks
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.hooks import HookPhase, HttpValidationHook, run_hooks
from rfs_deploy.logs import RedactingFilter
from rfs_deploy.report import write_report

REPO = Path(__file__).resolve().parents[2]
SECRET = "planted-secret-123"
#: A password that is no known secret value: only its place in a URL says it is one.
URL_PASSWORD = "Url-Only-Pa55"
DATABASE_URL = f"postgres://app:{URL_PASSWORD}@db.internal:5432/billing"


@pytest.fixture
def root_debug_log() -> Iterator[io.StringIO]:
    """What a program's ``logging.basicConfig(level=DEBUG)`` would print (root handler, DEBUG)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", SECRET)
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)


def hooks_run(*hooks: Any) -> Any:
    context = {"service": "api-service", "version": "v2.0.0"}
    return asyncio.run(run_hooks(list(hooks), context, HookPhase.PRE_DEPLOYMENT))


# --------------------------------------------------------------------------- log records


def test_a_hook_exception_quoting_a_secret_is_redacted_in_the_debug_log_not_only_the_report(
    root_debug_log: io.StringIO, secret_env: None
) -> None:
    def leaky(context: Any) -> None:
        raise RuntimeError(f"login refused for password {SECRET}")

    report = hooks_run(leaky)
    log = root_debug_log.getvalue()

    assert not report.ok and "***" in report.results[0].detail
    assert "hook leaky raised" in log and "Traceback" in log and "RuntimeError" in log  # still useful
    assert SECRET not in log and SECRET not in report.results[0].detail


def test_a_traceback_is_redacted_in_its_frames_source_lines_and_chained_exceptions(
    root_debug_log: io.StringIO, secret_env: None
) -> None:
    def leaky(context: Any) -> None:
        try:
            {"planted-secret-123": 1}["missing"]  # the secret in the source line of a frame
        except KeyError as exc:
            raise ConnectionError("planted-secret-123 rejected") from exc

    hooks_run(leaky)
    log = root_debug_log.getvalue()

    assert "direct cause of the following exception" in log and "ConnectionError" in log
    assert '{"***": 1}["missing"]' in log  # the frame's source line is there, redacted
    assert SECRET not in log


def test_a_remembered_secret_and_a_url_password_are_redacted_in_records_of_any_rfs_deploy_logger(
    root_debug_log: io.StringIO,
) -> None:
    remember(["remembered-header-value"])
    for name in ("rfs_deploy.drive.hooks", "rfs_deploy.metrics.cloudwatch", "rfs_deploy.sim.engine"):
        logger = importlib.import_module(name).log
        logger.debug("sending %s to %s", "remembered-header-value", DATABASE_URL)
        logger.warning("stack: %s", ["a", "remembered-header-value"], stack_info=True)
    log = root_debug_log.getvalue()

    assert log.count("sending *** to postgres://app:***@db.internal:5432/billing") == 3
    assert "Stack (most recent call last)" in log
    assert "remembered-header-value" not in log and URL_PASSWORD not in log


def test_a_value_decrypted_from_the_stack_file_is_redacted_in_any_later_log_record(
    root_debug_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rfs_deploy.config.loading import read_namespace
    from rfs_deploy.config.secrets import PASSPHRASE_ENV

    # written by the real Pulumi CLI (see tests/config/test_secrets.py): a secret tag set with --path
    monkeypatch.setenv(PASSPHRASE_ENV, "test-passphrase-not-real")
    owner = read_namespace(REPO / "tests" / "config" / "stacks" / "Pulumi.secrets.yaml")["tags"]["owner"]
    assert owner == "fake-owner-4567"
    importlib.import_module("rfs_deploy.drive.context").log.warning("tag rejected: owner=%s", owner)

    assert "tag rejected: owner=***" in root_debug_log.getvalue() and owner not in root_debug_log.getvalue()


def every_rfs_deploy_module() -> list[str]:
    names = ["rfs_deploy"]
    for info in pkgutil.walk_packages(rfs_deploy.__path__, "rfs_deploy."):
        if not info.name.endswith("__main__"):  # importing it would run the CLI
            names.append(info.name)
    return names


def test_every_logger_of_the_package_redacts() -> None:
    """A module that made its logger with plain ``logging.getLogger`` would log unredacted."""
    for name in every_rfs_deploy_module():
        importlib.import_module(name)
    loggers = {
        name: logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("rfs_deploy.") and isinstance(logger, logging.Logger)
    }
    assert len(loggers) >= 7  # hooks, validation, context, pulumi_backend, cloudwatch, session, engine
    plain = [
        name
        for name, logger in loggers.items()
        if not any(isinstance(f, RedactingFilter) for f in logger.filters)
    ]
    assert plain == []


# --------------------------------------------------------------------------- URL credentials


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DATABASE_URL, "postgres://app:***@db.internal:5432/billing"),
        ("redis://:t0ken-value@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "url='https://ci:p@ss:w0rd@git.example.com/repo.git'",
            "url='https://ci:***@git.example.com/repo.git'",
        ),
        ('{"a": "amqp://u:pw99@mq/vhost","b":"x@y"}', '{"a": "amqp://u:***@mq/vhost","b":"x@y"}'),
        # no credentials: untouched
        ("s3://billing-releases/billing-v2.tar.gz", "s3://billing-releases/billing-v2.tar.gz"),
        ("ssh://git@github.com/org/repo", "ssh://git@github.com/org/repo"),
        ("http://host:8080/path?next=a@b", "http://host:8080/path?next=a@b"),
    ],
)
def test_url_passwords_are_redacted_known_or_not(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_json_like_value_is_redacted_string_by_string(secret_env: None) -> None:
    from rfs_deploy.config.secrets import redact_value

    # keys are names (fields, headers), kept so the value reads back; values are redacted
    value = {"errors": [f"stopped: {DATABASE_URL}", ("x", SECRET)], "token": SECRET, "n": 2.5, "ok": None}
    assert redact_value(value) == {
        "errors": ["stopped: postgres://app:***@db.internal:5432/billing", ["x", "***"]],
        "token": "***",
        "n": 2.5,
        "ok": None,
    }


def test_a_url_password_in_the_environment_is_redacted_in_hook_output_details_and_logs(
    root_debug_log: io.StringIO, secret_env: None
) -> None:
    # the URL echoed whole, and its password alone (cut out by the shell): both redacted
    echo = CommandHook('echo "db is $DATABASE_URL"; echo "${DATABASE_URL#*app:}" | cut -d@ -f1; exit 3')

    def raising(context: Any) -> None:
        raise OSError(f"cannot connect to {DATABASE_URL}")

    command = hooks_run(echo).results[0]
    python = hooks_run(raising).results[0]
    log = root_debug_log.getvalue()

    assert "db is postgres://app:***@db.internal:5432/billing" in command.value.output
    assert command.value.output.splitlines()[-1] == "***"
    assert python.detail == "raised OSError: cannot connect to postgres://app:***@db.internal:5432/billing"
    assert URL_PASSWORD not in command.value.output + command.detail + python.detail + log


def test_a_url_password_in_a_validation_url_is_redacted_in_the_details_and_the_log(
    root_debug_log: io.StringIO,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"connection refused by {request.url}", request=request)

    settings = ValidationSettings(retries=0, health_path="/health")
    hook = HttpValidationHook(settings, transport=httpx.MockTransport(refuse))
    context = {"base_url": f"http://ops:{URL_PASSWORD}@api.internal", "version": "v2.0.0"}
    report = asyncio.run(run_hooks([hook], context, HookPhase.VALIDATION))

    details = json.dumps(report.results[0].value.as_dict()) + report.results[0].detail
    assert not report.ok and "connection refused" in details
    assert URL_PASSWORD not in details + root_debug_log.getvalue()


def test_a_url_password_is_redacted_in_what_the_http_client_logs_of_a_validation(
    root_debug_log: io.StringIO,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": "v2.0.0"})
        return httpx.Response(200, text="ok")

    hook = HttpValidationHook(ValidationSettings(), transport=httpx.MockTransport(answer))
    context = {"base_url": f"http://ops:{URL_PASSWORD}@api.internal", "version": "v2.0.0"}
    report = asyncio.run(run_hooks([hook], context, HookPhase.VALIDATION))
    log = root_debug_log.getvalue()

    assert report.ok and "httpx INFO HTTP Request: GET http://ops:***@api.internal/health" in log
    assert URL_PASSWORD not in log


def test_a_validation_header_quoted_by_a_failing_request_is_redacted_in_the_retry_log(
    root_debug_log: io.StringIO,
) -> None:
    header = "hdr-value-4711"  # a header from the stack config: not in the environment

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"no route, key {request.headers['x-api-key']}", request=request)

    settings = ValidationSettings(retries=1, backoff=0.001, headers={"X-Api-Key": header})
    hook = HttpValidationHook(settings, transport=httpx.MockTransport(broken))
    report = asyncio.run(
        run_hooks([hook], {"base_url": "http://api.internal", "version": "v2"}, "validation")
    )
    log = root_debug_log.getvalue()

    assert not report.ok and "retrying in" in log and "cannot connect (no route, key ***)" in log
    assert header not in log + json.dumps(report.results[0].value.as_dict())


def test_a_url_password_never_reaches_the_record_its_json_the_report_or_history(
    tmp_path: Path, state: Path, secret_env: None, root_debug_log: io.StringIO
) -> None:
    def migrate(context: Any) -> None:
        raise RuntimeError(f"migration failed on {DATABASE_URL} (password {SECRET})")

    seams = open_seams(
        "production", backend="sim", scenario="healthy", hooks=Hooks(pre_deployment=[migrate]), fresh=True
    )
    try:
        record = asyncio.run(Driver(seams).deploy("api-service", "v2.0.0", "blue-green"))
        history = [entry.message for entry in seams.backend.history()]
    finally:
        seams.close()
    paths = write_report(record, tmp_path / "reports")

    assert record.status.value == "ROLLED_BACK" and record.steps == []  # stopped before any change
    assert any("postgres://app:***@db.internal" in error for error in record.errors)
    texts = [json.dumps(record.to_json()), *history, root_debug_log.getvalue()]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in paths]
    texts += [p.read_text() for p in state.rglob("*.json")]
    assert [t for t in texts if URL_PASSWORD in t or SECRET in t] == []


def test_record_texts_quoting_an_exception_are_redacted_wherever_the_record_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record's errors quote exceptions from Pulumi, AWS or the driver (``stopped: {exc}``):
    a URL's password or a known secret in them never reaches the saved record, the status view,
    ``--json`` output, the printed summary or the report."""
    from rfs_deploy.cli import emit
    from rfs_deploy.cli.views import _record_fields
    from rfs_deploy.drive.records import DeploymentRecord, DeploymentStatus, RecordStore

    monkeypatch.setenv("DEPLOY_API_TOKEN", "tok-9f8e7d6c5b4a")
    record = DeploymentRecord(
        deployment_id="ab12cd34",
        stack="production",
        service="api-service",
        version="v2.0.0",
        previous_version="v1.0.0",
        strategy="canary",
        started_at=1000.0,
    )
    record.status = DeploymentStatus.FAILED
    record.errors.append("stopped: update failed: dial postgres://app:Pa55word-x@db:5432/app refused")
    record.errors.append("hook notify raised: 401 for token tok-9f8e7d6c5b4a")
    record.recovery = "rfs-deploy resume --stack production"

    store = RecordStore(tmp_path / "records")
    store.save(record)
    write_report(record, tmp_path / "report")
    fields = _record_fields(record)
    args = type("Args", (), {"json": False})()
    emit(args, fields, "\n".join(record.errors))  # type: ignore[arg-type]
    printed = capsys.readouterr().out

    texts = [p.read_text(errors="replace") for p in (tmp_path / "records").glob("*.json")]
    texts += [(tmp_path / "report" / "ab12cd34.html").read_text(), json.dumps(fields), printed]
    for text in texts:
        assert "Pa55word-x" not in text and "tok-9f8e7d6c5b4a" not in text
    assert "postgres://app:***@db:5432/app" in texts[0] and "postgres://app:***@db" in printed
    assert record.errors[0].endswith("refused")  # the record in memory keeps what happened


def test_redaction_never_rewrites_names_so_a_record_still_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret-looking variable whose value is also a field name or an identifier (the stack's
    name): keys and identifiers are left alone, free text is still redacted."""
    from rfs_deploy.drive.records import DeploymentRecord, RecordStore

    monkeypatch.setenv("SORT_KEY", "errors")
    monkeypatch.setenv("STAGE_TOKEN", "production")
    record = DeploymentRecord(
        deployment_id="ab12cd35",
        stack="production",
        service="api-service",
        version="v2.0.0",
        previous_version="v1.0.0",
        strategy="canary",
        started_at=1000.0,
    )
    record.errors.append("token production was refused")
    store = RecordStore(tmp_path / "records")
    store.save(record)
    loaded = store.load("ab12cd35")
    assert loaded.stack == "production" and loaded.errors == ["token *** was refused"]
