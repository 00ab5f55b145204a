"""A stand-in for ``pulumi-language-python``: the Python language host the engine launches.

Why it exists: the real host is the Go module
``github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3``, and the Go module proxy
reachable here refuses it (``403 This module version is not available`` for its version list and
for every version asked). The Pulumi CLI itself is built from ``pkg/v3`` (tools/build-engine.sh).

What it does, and nothing more: it serves Pulumi's ``LanguageRuntime`` gRPC service and runs a
program the way the real host does — it starts Pulumi's own ``pulumi-language-python-exec`` (copied
by the build from the ``sdk/v3`` module) under the project's Python, with the monitor and engine
addresses, project, stack, config (``PULUMI_CONFIG``) and secret keys
(``PULUMI_CONFIG_SECRET_KEYS``) the engine hands it. Dependency installation, plugin discovery,
code generation and packing are not done: ``make`` installs dependencies, and the engine finds
``pulumi-resource-aws`` on PATH.

Python used for the program: the ``virtualenv`` runtime option of Pulumi.yaml when set (an error
if that directory is missing, as with the real host), else ``PULUMI_PYTHON_CMD``, else ``python3``.

Usage (by the engine, through bin/pulumi-language-python)::

    langhost.py --exec-script PATH [-flags ...] ENGINE_ADDRESS
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

#: What GetPluginInfo reports: the pinned engine release, marked as this stand-in.
VERSION = os.environ.get("RFS_DEPLOY_LANGHOST_VERSION", "3.274.1+rfs-deploy-stand-in")
#: The exec script's exit code for "the error was already shown to the user".
SHOWN_ERROR_EXIT = 32


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
                "create it (make) or remove the option"
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
        return language_pb2.GetRequiredPackagesResponse()

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:
        return language_pb2.GetProgramDependenciesResponse()

    def InstallDependencies(self, request: Any, context: Any) -> Any:
        return iter(())

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
    server.wait_for_termination()


if __name__ == "__main__":
    main(sys.argv[1:])
