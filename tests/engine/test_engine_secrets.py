"""A Pulumi secret set by the real CLI, through the real engine: used by validation, written nowhere.

``pulumi config set --secret --path ...`` (passphrase provider) writes the header as ``secure:``
into the stack file; the driver's PulumiBackend reads it back in plain text through the Automation
API, the program accepts it on ``pulumi up``, validation sends it (the sandbox's HTTP surface sees
it), and its plain text is in no file under the project copy, Pulumi's state or the sandbox
session, in no stack history message, in no ``--json`` document and in no report.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from engine_support import SERVICE, canary_stack, cli_history, engine_sandbox, pulumi

from rfs_deploy.cli.commands import _record_payload
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.report import write_report

KEY = f"rfs-deploy:services.{SERVICE}.validation.headers.X-Api-Key"
#: A fake credential, long and distinctive enough to be found anywhere it leaked.
API_KEY = "fake-engine-api-key-7f3a9c"


def test_a_secure_header_reaches_validation_and_is_written_nowhere(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    stack = canary_stack(source, name="secrets")
    work = tmp_path / "work"
    with engine_sandbox(stack, work, scenario="healthy") as sandbox:
        pulumi(sandbox, "config", "set", "--secret", "--path", KEY, API_KEY)
        written = (work / "stacks" / stack.name).read_text()
        assert "secure: v1:" in written and "encryptionsalt: v1:" in written
        assert API_KEY not in written

        # the Automation API (pulumi config --show-secrets) gives the driver the plain text
        config = sandbox.backend.read_config()
        assert config.service(SERVICE).validation.headers["X-Api-Key"].get_secret_value() == API_KEY

        sandbox.provision()  # pulumi up: the program takes the config with the secret in it
        seams = sandbox.seams()
        inner = seams.http_transport
        assert isinstance(inner, httpx.MockTransport)
        seen: list[str | None] = []

        async def recording(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get("X-Api-Key"))
            return await inner.handle_async_request(request)

        seams.http_transport = httpx.MockTransport(recording)
        record = asyncio.run(Driver(seams).deploy(SERVICE, "v2.0.0"))
        assert record.status is DeploymentStatus.COMPLETED, record.errors
        assert seen and set(seen) == {API_KEY}, "every validation request carried the decrypted header"

        history = cli_history(sandbox)
        assert len(history) >= 3 and all(e["result"] == "succeeded" for e in history)
        assert API_KEY not in json.dumps(history)
        assert API_KEY not in json.dumps([e.message for e in sandbox.backend.history()])
        document = json.dumps(_record_payload(record))  # what `deploy --json` prints
        assert record.deployment_id in document and API_KEY not in document
        reports = write_report(record, tmp_path / "report")
        assert reports

    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    pulumi_state = [p for p in files if ".pulumi" in p.parts]
    assert any("stacks" in p.parts for p in pulumi_state), "Pulumi's file backend holds the stack"
    assert any("history" in p.parts for p in pulumi_state), "and its update history"
    leaked = sorted(str(p.relative_to(tmp_path)) for p in files if API_KEY.encode() in p.read_bytes())
    assert leaked == []
