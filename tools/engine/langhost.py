"""A stand-in for ``pulumi-language-python``: the Python language host the engine launches.

Why it exists: the real host is the Go module
``github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3``, and the Go module proxy
reachable here refuses it (``403 This module version is not available`` for its version list and
for every version asked). The Pulumi CLI itself is built from ``pkg/v3`` (tools/build-engine.sh).

What it does, and nothing more: it serves Pulumi's ``LanguageRuntime`` gRPC service and

* runs a program the way the real host does — it starts Pulumi's own ``pulumi-language-python-exec``
  (copied by the build from the ``sdk/v3`` module) under the project's Python, with the monitor and
  engine addresses, project, stack, config (``PULUMI_CONFIG``) and secret keys
  (``PULUMI_CONFIG_SECRET_KEYS``) the engine hands it;
* installs dependencies (``InstallDependencies``, what ``pulumi install`` calls) as the real host's
  ``pip`` toolchain does: ``python -m venv`` on the ``virtualenv`` option's directory, ``pip install
  --upgrade pip setuptools wheel``, then ``pip install -r requirements.txt`` in the program
  directory (nothing more when there is no requirements.txt), pip's output streamed back as the
  RPC's stdout and stderr; without a ``virtualenv`` option pip runs on that Python itself;
* creates that virtualenv the same way when it is missing or empty the first time the engine asks
  which packages the program needs (``GetRequiredPackages``, at the start of ``pulumi up`` or
  ``preview``), as the real host does, its output sent to the engine's log.

Only the ``pip`` toolchain is supported (``uv`` and ``poetry`` are refused with an error), and
``--use-language-version-tools`` (pyenv) is refused. Plugin discovery, code generation and packing
are not done: ``GetRequiredPackages`` reports no packages, and the engine finds
``pulumi-resource-aws`` on PATH.

Python used for the program: the ``virtualenv`` runtime option of Pulumi.yaml when set (an error
if that directory is missing, as with the real host), else ``PULUMI_PYTHON_CMD``, else ``python3``.
The virtualenv is created by ``PULUMI_PYTHON_CMD``, else ``python3``, else ``python`` on PATH.

Usage (by the engine, through bin/pulumi-language-python)::

    langhost.py --exec-script PATH [-flags ...] ENGINE_ADDRESS
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, language_pb2, language_pb2_grpc, plugin_pb2

#: What GetPluginInfo reports: the pinned engine release, marked as this stand-in.
VERSION = os.environ.get("RFS_DEPLOY_LANGHOST_VERSION", "3.274.1+rfs-deploy-stand-in")
#: The exec script's exit code for "the error was already shown to the user".
SHOWN_ERROR_EXIT = 32


class InstallError(Exception):
    """Dependency installation failed; the message is the RPC's error."""


def runtime_options(info: Any) -> dict[str, Any]:
    """The ``runtime.options`` of Pulumi.yaml, as the engine passes them."""
    return json_format.MessageToDict(info.options) if info is not None and info.HasField("options") else {}


def virtualenv_path(options: dict[str, Any], root: str) -> Path | None:
    """The ``virtualenv`` option resolved against the project root, or None when unset."""
    venv = options.get("virtualenv")
    if not venv:
        return None
    return Path(venv) if os.path.isabs(venv) else Path(root) / venv


def is_virtualenv(path: Path) -> bool:
    """Whether ``path`` holds a Python (what the real host checks)."""
    return (path / "bin" / "python").is_file()


def base_python() -> str:
    """The Python that creates virtualenvs: ``PULUMI_PYTHON_CMD``, else python3, else python."""
    names = (
        [os.environ["PULUMI_PYTHON_CMD"]] if os.environ.get("PULUMI_PYTHON_CMD") else ["python3", "python"]
    )
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise InstallError(f"failed to locate any of {names} on your PATH; install Python 3.11 or later")


def activated_env(venv: Path | None) -> dict[str, str]:
    """This process's environment with ``venv`` activated (as the real toolchain's commands get it)."""
    env = dict(os.environ)
    if venv is not None:
        env.pop("PYTHONHOME", None)
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    return env


#: One piece of output: (stream, bytes), stream "stdout" or "stderr".
Output = tuple[str, bytes]


def stream_command(argv: list[str], cwd: str, env: dict[str, str]) -> Iterator[Output | int]:
    """Run ``argv``; yield its stdout and stderr as they come, then its exit code."""
    child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pieces: queue.Queue[Output | None] = queue.Queue()

    def pump(name: str, pipe: Any) -> None:
        try:
            while chunk := os.read(pipe.fileno(), 65536):
                pieces.put((name, chunk))
        finally:
            pieces.put(None)

    pumps = [
        threading.Thread(target=pump, args=(name, pipe), daemon=True)
        for name, pipe in (("stdout", child.stdout), ("stderr", child.stderr))
    ]
    for thread in pumps:
        thread.start()
    open_streams = len(pumps)
    while open_streams:
        piece = pieces.get()
        if piece is None:
            open_streams -= 1
        else:
            yield piece
    yield child.wait()


def install_dependencies(directory: str, venv: Path | None) -> Iterator[Output]:
    """What the real host's pip toolchain does for ``pulumi install`` (see the module docstring);
    raises :class:`InstallError` with the real toolchain's messages."""

    def say(message: str) -> Output:
        return ("stdout", f"{message}\n".encode())

    if venv is not None:
        if not venv.is_absolute():
            raise InstallError(f"virtual environment path must be absolute: {venv}")
        yield say("Creating virtual environment...")
        created = subprocess.run(
            [base_python(), "-m", "venv", str(venv)], capture_output=True, check=False, env=dict(os.environ)
        )
        if created.returncode != 0:
            output = created.stdout + created.stderr
            if output:
                yield ("stderr", output + b"\n")
            raise InstallError(f"creating virtual environment at '{venv}': exit status {created.returncode}")
        yield say("Finished creating virtual environment")
    python = str(venv / "bin" / "python") if venv is not None else base_python()

    def pip_install(what: str, *args: str) -> Iterator[Output]:
        argv = [python, "-m", "pip", "install", *args]
        errors = bytearray()
        code = 0
        for piece in stream_command(argv, directory, activated_env(venv)):
            if isinstance(piece, int):
                code = piece
                continue
            if piece[0] == "stderr":
                errors += piece[1]
            yield piece
        if code != 0:
            detail = errors.decode(errors="replace").strip()
            message = f"{what} via '{' '.join(argv)}': exit status {code}"
            raise InstallError(f"{message}: {detail}" if detail else message)

    yield say("Updating pip, setuptools, and wheel in virtual environment...")
    yield from pip_install("updating pip, setuptools, and wheel", "--upgrade", "pip", "setuptools", "wheel")
    yield say("Finished updating")
    if not (Path(directory) / "requirements.txt").exists():
        return  # as the real toolchain: no requirements.txt, nothing more to install
    yield say("Installing dependencies in virtual environment...")
    yield from pip_install("installing dependencies", "-r", "requirements.txt")
    yield say("Finished installing dependencies")


def check_toolchain(options: dict[str, Any], use_language_version_tools: bool = False) -> None:
    """Refuse what this stand-in does not do (see the module docstring)."""
    toolchain = options.get("toolchain") or "pip"
    if toolchain != "pip":
        raise InstallError(
            "the stand-in Python language host supports only toolchain 'pip' "
            f"(Pulumi.yaml says {toolchain!r})"
        )
    if use_language_version_tools:
        raise InstallError("the stand-in Python language host cannot use language version tools (pyenv)")


def program_python(info: Any, root: str) -> tuple[str, dict[str, str]]:
    """(python executable, extra environment) for running the program."""
    options = json_format.MessageToDict(info.options) if info is not None else {}
    venv = options.get("virtualenv")
    if venv:
        path = Path(venv) if os.path.isabs(venv) else Path(root) / venv
        python = path / "bin" / "python"
        if not python.exists():
            raise FileNotFoundError(
                f"The virtual environment {path} does not exist (virtualenv in Pulumi.yaml); "
                "create it (pulumi install) or remove the option"
            )
        bindir = str(path / "bin")
        return str(python), {"VIRTUAL_ENV": str(path), "PATH": bindir + os.pathsep + os.environ["PATH"]}
    return os.environ.get("PULUMI_PYTHON_CMD") or "python3", {}


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    """The LanguageRuntime service (see the module docstring)."""

    def __init__(self, engine: str, exec_script: str) -> None:
        self.engine = engine
        self.exec_script = exec_script
        self.children: set[subprocess.Popen[bytes]] = set()

    def Handshake(self, request: Any, context: Any) -> Any:
        if request.engine_address:
            self.engine = request.engine_address
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=VERSION)

    def GetRequiredPlugins(self, request: Any, context: Any) -> Any:
        return language_pb2.GetRequiredPluginsResponse()

    def GetRequiredPackages(self, request: Any, context: Any) -> Any:
        info = request.info if request.HasField("info") else None
        if info is not None:
            try:
                self.ensure_virtualenv(info)
            except (InstallError, OSError) as exc:
                context.abort(grpc.StatusCode.UNKNOWN, str(exc))
        return language_pb2.GetRequiredPackagesResponse()

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:
        return language_pb2.GetProgramDependenciesResponse()

    def InstallDependencies(self, request: Any, context: Any) -> Iterator[Any]:
        info = request.info if request.HasField("info") else None
        root = (info.root_directory if info is not None else "") or request.directory
        directory = (info.program_directory if info is not None else "") or request.directory or root
        options = runtime_options(info)
        try:
            check_toolchain(options, request.use_language_version_tools)
            yield language_pb2.InstallDependenciesResponse(stdout=b"Installing dependencies...\n\n")
            for stream, data in install_dependencies(directory, virtualenv_path(options, root)):
                yield language_pb2.InstallDependenciesResponse(**{stream: data})
            yield language_pb2.InstallDependenciesResponse(stdout=b"Finished installing dependencies\n\n")
        except (InstallError, OSError) as exc:
            context.abort(grpc.StatusCode.UNKNOWN, str(exc))

    def ensure_virtualenv(self, info: Any) -> None:
        """Create and fill the ``virtualenv`` option's directory when it is missing or empty (the
        real host's EnsureVenv), its output sent to the engine's log; nothing when it is there."""
        options = runtime_options(info)
        venv = virtualenv_path(options, info.root_directory)
        if venv is None or is_virtualenv(venv):
            return
        if venv.exists() and not venv.is_dir():
            raise InstallError(
                f"the 'virtualenv' option in Pulumi.yaml is set to {str(venv)!r} but it is not a directory"
            )
        if venv.is_dir() and any(venv.iterdir()):
            return  # not a virtualenv, but not empty either: Run says so
        check_toolchain(options)
        log = self.engine_log()
        for stream, data in install_dependencies(info.program_directory or info.root_directory, venv):
            log(stream, data)

    def engine_log(self) -> Callable[[str, bytes], None]:
        """A writer of install output to the engine's log, as ephemeral messages of one stream."""
        stub = engine_pb2_grpc.EngineStub(grpc.insecure_channel(self.engine))
        stream_id = random.randint(1, 2**31 - 1)

        def write(stream: str, data: bytes) -> None:
            severity = engine_pb2.LogSeverity.ERROR if stream == "stderr" else engine_pb2.LogSeverity.INFO
            stub.Log(
                engine_pb2.LogRequest(
                    severity=severity,
                    message=data.decode(errors="replace"),
                    streamId=stream_id,
                    ephemeral=True,
                )
            )

        return write

    def RuntimeOptionsPrompts(self, request: Any, context: Any) -> Any:
        return language_pb2.RuntimeOptionsResponse()

    def About(self, request: Any, context: Any) -> Any:
        return language_pb2.AboutResponse(executable=sys.executable, version=sys.version.split()[0])

    def Cancel(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    def Run(self, request: Any, context: Any) -> Any:
        info = request.info if request.HasField("info") else None
        root = (info.root_directory if info is not None else "") or request.pwd
        try:
            python, extra_env = program_python(info, root)
        except FileNotFoundError as exc:
            return language_pb2.RunResponse(error=str(exc))
        env = {
            **os.environ,
            **extra_env,
            "PULUMI_CONFIG": json.dumps(dict(request.config)),
            "PULUMI_CONFIG_SECRET_KEYS": json.dumps(list(request.configSecretKeys)),
        }
        program = request.program or (info.program_directory if info is not None else ".")
        argv = [
            python, "-u", self.exec_script,
            "--project", request.project,
            "--root_directory", root,
            "--stack", request.stack,
            "--pwd", request.pwd,
            "--dry_run", "true" if request.dryRun else "false",
            "--parallel", str(request.parallel),
            "--monitor", request.monitor_address,
            "--engine", self.engine,
        ]  # fmt: skip
        if request.organization:
            argv += ["--organization", request.organization]
        argv += [program, *request.args]
        child = subprocess.Popen(argv, env=env, cwd=request.pwd or None)
        self.children.add(child)
        try:
            code = child.wait()
        finally:
            self.children.discard(child)
        if code == 0:
            return language_pb2.RunResponse()
        if code == SHOWN_ERROR_EXIT:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"Program exited with non-zero exit code: {code}")


def parse_args(argv: list[str]) -> tuple[str, str]:
    """(exec script, engine address) from the launcher's and the engine's arguments."""
    exec_script, engine, rest = "", "", list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--exec-script":
            exec_script = rest.pop(0)
        elif not arg.startswith("-"):
            engine = arg
    if not exec_script or not engine:
        raise SystemExit("usage: langhost.py --exec-script PATH [flags] ENGINE_ADDRESS")
    return exec_script, engine


def engine_alive(address: str, timeout: float = 2.0) -> bool:
    """Whether the engine still accepts connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def watch_engine(host: LanguageHost, interval: float = 1.0, misses: int = 3) -> None:
    """Exit, ending a running program, once the engine is gone (as the real hosts' health check
    does): a killed ``pulumi`` must not leave its language host and program behind."""
    missed = 0
    while missed < misses:
        time.sleep(interval)
        missed = 0 if engine_alive(host.engine) else missed + 1
    for child in list(host.children):
        child.kill()
    os._exit(1)


def main(argv: list[str]) -> None:
    """Serve on a free loopback port, print it (the plugin handshake) and wait."""
    exec_script, engine = parse_args(argv)
    host = LanguageHost(engine, exec_script)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(host, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    threading.Thread(target=watch_engine, args=(host,), name="engine-health", daemon=True).start()
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        # The engine closes its plugins with SIGINT: stop quietly (no traceback in its output).
        server.stop(grace=None)


if __name__ == "__main__":
    main(sys.argv[1:])
