"""The sandbox through the real Pulumi engine: the CLI built by tools/build-engine.sh runs the program.

What is real here: the Pulumi CLI and engine (with its state backend and locking), Pulumi's Python
SDK and program launcher, the rfs-deploy program, and :class:`~rfs_deploy.drive.pulumi_backend.
PulumiBackend` driving it through the Automation API. What is a double: the AWS provider (the test
plugin of :mod:`rfs_deploy.sim.provider`), moto standing in for AWS, and the sandbox physics
standing in for traffic and metrics. The language host is a stand-in too (tools/engine/langhost.py):
the Go module of the real one is refused by the module proxy here.

One process owns the world, as with the mock-runtime sandbox: :class:`~rfs_deploy.sim.Sandbox`
(moto in-process, physics, applier, saved session). Beside it run

* a moto server on 127.0.0.1 (:class:`MotoServer`) over the *same* moto state: the driver's AWS
  adapters call it over HTTP (with the sandbox's gap handlers for what moto lacks), and Pulumi's S3
  state backend can keep the stack in one of its buckets;
* the :class:`ApplierService`, where the provider double, started by the engine, sends its
  creates, updates and deletes, applied by the sandbox's own :class:`~rfs_deploy.sim.applier.
  MotoApplier`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rfs_deploy.aws import AwsAdapters, AwsSession
from rfs_deploy.config import ReleaseState, StackConfig
from rfs_deploy.drive.context import Seams
from rfs_deploy.drive.protocols import HistoryEntry, UpdateResult
from rfs_deploy.drive.pulumi_backend import PulumiBackend
from rfs_deploy.errors import InvalidInput
from rfs_deploy.logs import get_logger
from rfs_deploy.metrics.cloudwatch import CloudWatchProvider
from rfs_deploy.outputs import OUTPUT_NAME, ServiceOutputs, parse_service_outputs
from rfs_deploy.sim.applier import MotoApplier, resource_key
from rfs_deploy.sim.aws import fake_environment
from rfs_deploy.sim.provider import APPLIER_ENV
from rfs_deploy.sim.sandbox import Sandbox
from rfs_deploy.sim.scenario import Scenario

log = get_logger(__name__)

#: Directory holding the built ``pulumi`` (default: ``<project>/bin``).
ENGINE_BIN_ENV = "RFS_DEPLOY_ENGINE_BIN"
#: Protects only the sandbox stack's (fake) secrets; not a secret itself.
SANDBOX_PASSPHRASE = "rfs-deploy-sandbox"
STATE_BUCKET = "rfs-deploy-pulumi-state"


def engine_bin(project: Path) -> Path | None:
    """The directory with an executable ``pulumi`` built for the sandbox, or None."""
    directory = Path(os.environ.get(ENGINE_BIN_ENV) or project / "bin")
    binary = directory / "pulumi"
    return directory if binary.is_file() and os.access(binary, os.X_OK) else None


# --------------------------------------------------------------------------- moto server


class MotoServer:
    """moto's threaded server on 127.0.0.1, sharing the in-process moto state of the sandbox."""

    def __init__(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:  # flask is moto's `server` extra
            raise InvalidInput("the moto server needs moto[server] (pip install 'moto[server]')") from exc
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.port = 0

    def start(self) -> MotoServer:
        self._server.start()
        self.port = int(self._server.get_host_and_port()[1])
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def s3_backend_url(self, bucket: str, region: str) -> str:
        """Pulumi's S3 state backend URL for ``bucket`` on this server (gocloud.dev s3blob options)."""
        return f"s3://{bucket}?endpoint={self.url}&disable_https=true&use_path_style=true&region={region}"


# --------------------------------------------------------------------------- applier service


class ApplierService:
    """JSON over HTTP on 127.0.0.1: the provider double's creates, updates and deletes, applied by
    the sandbox's applier (one at a time). The URL carries a random token."""

    def __init__(self, applier: MotoApplier) -> None:
        self.applier = applier
        self._lock = threading.Lock()
        #: Operations received so far, function calls included (tests wait on it while holding
        #: the service).
        self.received = 0
        self._token = secrets.token_hex(8)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="applier-service", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self._token}"

    def start(self) -> ApplierService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold every operation until the block ends (an update in flight stays in flight)."""
        with self._lock:
            yield

    def authorised(self, path: str) -> bool:
        return path.strip("/") == self._token

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one operation: ``create`` / ``update`` -> {id, outputs}; ``delete`` -> {};
        ``invoke`` (a provider function: ``token``, ``args``) -> {outputs}."""
        if request["op"] == "invoke":
            # a lookup (the VPC's CIDR blocks) is the first call of an update: it counts as received
            self.received += 1
            with self._lock:
                return {"outputs": self.applier.invoke(str(request["token"]), request.get("args") or {})}
        op, type_, name = request["op"], request["type"], request["name"]
        if not self.applier.handles(type_):
            raise ValueError(f"the AWS provider test double does not model {type_}")
        self.received += 1
        with self._lock:
            if op in ("create", "update"):
                id_, state = self.applier.apply(type_, name, request["physical"], request["inputs"])
                self.applier.resources[resource_key(type_, name)].urn = request.get("urn", "")
                return {"id": id_, "outputs": state}
            if op == "delete":
                res = self.applier.resources.pop(resource_key(type_, name), None)
                if res is not None:
                    self.applier.kinds[res.type].delete(res)
                    if self.applier.on_change is not None:
                        self.applier.on_change()
                return {}
        raise ValueError(f"unknown operation {op!r}")


def _handler_for(service: ApplierService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if not service.authorised(self.path):
                self._answer(403, {"error": "wrong token"})
                return
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self._answer(200, service.handle(request))
            except Exception as exc:
                log.warning("applier service: %s", exc, exc_info=True)
                self._answer(500, {"error": f"{type(exc).__name__}: {exc}"})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("applier service: " + format, *args)

    return Handler


# --------------------------------------------------------------------------- stack backend


class EngineBackend:
    """The StackBackend of the engine sandbox: :class:`PulumiBackend` as it is, plus what the
    sandbox needs around an update (the network in moto, warm instances on the first update,
    the outputs the physics routes traffic by)."""

    def __init__(self, pulumi: PulumiBackend, box: Sandbox) -> None:
        self.pulumi = pulumi
        self.box = box
        self.stack_name = pulumi.stack_name
        self._outputs: dict[str, Any] | None = None

    def read_config(self) -> StackConfig:
        return self.pulumi.read_config()

    def write_release(self, release: Mapping[str, ReleaseState]) -> None:
        self.pulumi.write_release(release)

    def up(self, message: str, on_event: Callable[[str], None] | None = None) -> UpdateResult:
        config = self.pulumi.read_config()
        if config.network is not None:
            self.box.applier.network.ensure(self.box.aws, config.network)
        first = not any(entry.result == "succeeded" for entry in self.pulumi.history())
        self.box.applier.warm = first
        try:
            result = self.pulumi.up(message, on_event)
        finally:
            self.box.applier.warm = False
            self._outputs = None
            self.box.save()
        return result

    def history(self, limit: int | None = None) -> list[HistoryEntry]:
        return self.pulumi.history(limit)

    def outputs(self) -> dict[str, Any]:
        if self._outputs is None:
            self._outputs = self.pulumi.outputs()
        return dict(self._outputs)

    def export(self) -> dict[str, Any]:
        return self.pulumi.export()

    def topology(self) -> dict[str, ServiceOutputs]:
        """What the physics routes traffic by: each service's outputs of the last update."""
        services = self.outputs().get(OUTPUT_NAME)
        if not isinstance(services, dict):
            return {}
        return {name: parse_service_outputs(value) for name, value in services.items()}


# --------------------------------------------------------------------------- the whole


@dataclass
class EngineSandbox:
    """A sandbox whose stack updates run through the real engine (see the module docstring)."""

    box: Sandbox
    moto: MotoServer
    service: ApplierService
    backend: EngineBackend
    work_dir: Path
    bin_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def provision(self, message: str = "sandbox: create the stack") -> UpdateResult | None:
        """The stack's first update when it has none (instances start warm); None otherwise."""
        if any(entry.result == "succeeded" for entry in self.backend.history()):
            return None
        return self.backend.up(message)

    def new_backend(self) -> EngineBackend:
        """Another backend on the same stack, as a second driver process would have."""
        pulumi = self.backend.pulumi
        again = PulumiBackend(
            pulumi.stack_name, self.work_dir, pulumi_root=self.bin_dir.parent, env_vars=self.env,
            pulumi_home=str(self.work_dir / "pulumi-home"),
        )  # fmt: skip
        return EngineBackend(again, self.box)

    def adapters(self) -> AwsAdapters:
        """The production AWS adapters over the moto server, with the sandbox's gap handlers."""
        session = AwsSession(
            self.box.aws.region, boto_session=self.box.aws.boto_session(), endpoint_url=self.moto.url
        )
        return AwsAdapters.from_session(session)

    def seams(self, backend: EngineBackend | None = None) -> Seams:
        """Seams for the driver; closing them closes this sandbox. With another ``backend`` (a
        second driver on the same stack, :meth:`new_backend`) closing them closes nothing."""
        aws = self.adapters()
        return Seams(
            backend=backend or self.backend,
            metrics=CloudWatchProvider.from_session(aws.session),
            traffic=aws.traffic,
            fleet=aws.fleet,
            images=aws.images,
            alarms=aws.alarms,
            clock=self.box.clock,
            http_transport=self.box.http_transport(),
            closer=self.close if backend is None else None,
        )

    def close(self) -> None:
        self.service.stop()
        self.moto.stop()
        self.box.close()


def prepare_project(project: Path, work_dir: Path, stack_file: Path) -> None:
    """A working copy of the project for the engine (``pulumi config`` writes the stack file):
    Pulumi.yaml, the entry point and the stack file, each kept when already there; ``.venv`` is
    this Python's environment (Pulumi.yaml names it as the program's virtualenv)."""
    for directory in (work_dir, work_dir / "stacks", work_dir / "state"):
        directory.mkdir(parents=True, exist_ok=True)
    copies = {
        project / "Pulumi.yaml": work_dir / "Pulumi.yaml",
        project / "__main__.py": work_dir / "__main__.py",
        stack_file: work_dir / "stacks" / stack_file.name,
    }
    for source, target in copies.items():
        if not target.exists():
            shutil.copyfile(source, target)
    venv = work_dir / ".venv"
    if not venv.exists():
        venv.symlink_to(sys.prefix, target_is_directory=True)


def engine_environment(bin_dir: Path, work_dir: Path, applier_url: str, region: str) -> dict[str, str]:
    """Variables for every CLI call (never logged; no real credential among them)."""
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_PYTHON_CMD": sys.executable,
        "PULUMI_CONFIG_PASSPHRASE": SANDBOX_PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_BACKEND_URL": f"file://{work_dir / 'state'}",
        APPLIER_ENV: applier_url,
        **fake_environment(region),
    }


def open_engine_sandbox(
    stack_file: str | Path,
    work_dir: str | Path,
    *,
    scenario: str | Path | Scenario | None = None,
    project: str | Path | None = None,
    bin_dir: str | Path | None = None,
    state: str = "file",
    start: float | None = None,
) -> EngineSandbox:
    """A started engine sandbox for ``stacks/Pulumi.<stack>.yaml``, kept in ``work_dir`` (project
    copy, file state, sandbox session: a later call with the same ``work_dir`` resumes it).
    ``state="s3"`` keeps the Pulumi state in a bucket of the moto server instead (gone with it).
    ``project`` (default: two levels above the stack file) gives Pulumi.yaml and the entry point;
    ``start`` is the virtual clock's start (default: now)."""
    path = Path(stack_file).resolve()
    project_dir = Path(project).resolve() if project is not None else path.parent.parent
    if not (project_dir / "Pulumi.yaml").is_file():
        project_dir = Path(__file__).resolve().parents[2]  # the checkout this package runs from
    found = Path(bin_dir).resolve() if bin_dir is not None else engine_bin(project_dir)
    if found is None or not (found / "pulumi").is_file():
        raise InvalidInput("no Pulumi engine built: run `make engine` (tools/build-engine.sh)")
    found = found.resolve()
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    work = Path(work_dir).resolve()
    prepare_project(project_dir, work, path)
    box = Sandbox.open(path, scenario=scenario, session_dir=work / "session", start=start)
    moto = service = None
    try:
        moto = MotoServer().start()
        service = ApplierService(box.applier).start()
        env = engine_environment(found, work, service.url, box.aws.region)
        if state == "s3":
            box.aws.raw("s3").create_bucket(Bucket=STATE_BUCKET)
            env["PULUMI_BACKEND_URL"] = moto.s3_backend_url(STATE_BUCKET, box.aws.region)
        pulumi = PulumiBackend(
            stack, work, create=True, pulumi_root=found.parent, env_vars=env,
            pulumi_home=str(work / "pulumi-home"),
        )  # fmt: skip
        backend = EngineBackend(pulumi, box)
        box.world.topology = backend.topology
        return EngineSandbox(box, moto, service, backend, work, found, env)
    except BaseException:
        if service is not None:
            service.stop()
        if moto is not None:
            moto.stop()
        box.close()
        raise
