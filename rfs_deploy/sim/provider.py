"""TEST DOUBLE of the ``pulumi-resource-aws`` plugin: the sandbox's applier behind Pulumi's provider
protocol, for running the program through the real Pulumi engine. It never talks to AWS.

The real AWS provider cannot be built or downloaded here, so the engine is given this plugin
instead (``tools/pulumi-resource-aws`` launches it; the engine finds it on PATH). It is built on
``pulumi.provider.experimental`` and answers the engine's Check / Diff / Create / Read / Update /
Delete for the resource types the program uses (those :class:`~rfs_deploy.sim.applier.MotoApplier`
models). Create, Update and Delete are forwarded, as JSON over HTTP on 127.0.0.1, to the
:class:`~rfs_deploy.sim.engine.ApplierService` of the sandbox process that owns moto and the
physics (``RFS_DEPLOY_TEST_APPLIER`` holds its URL). That process applies them with the very
applier the mock-runtime sandbox uses, so moto's resources, the launch-template versions and
instance launches the physics needs, and the saved session all stay in one place.

What differs from the real provider, on purpose:

* every change is an in-place update (Diff never asks for a replacement); the applier updates
  each modelled type in place (a launch template change is a new template version, as in AWS);
* autonaming: a missing ``name`` becomes ``<logical name>-<7 hex>`` from a hash of the URN
  (stable, so a rebuilt moto gets the same names), not a random suffix;
* previews do not call the plugin (``supportsPreview`` is false); Read returns the state as is;
* Invoke answers only the provider functions the program calls (``aws:ec2/getVpc:getVpc``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from pulumi.provider.experimental import provider as p
from pulumi.provider.experimental.property_value import Computed, PropertyValue

#: Environment variable with the applier service's URL (set by the sandbox for the engine).
APPLIER_ENV = "RFS_DEPLOY_TEST_APPLIER"
#: Types whose ``name`` input the AWS provider fills in when the program leaves it out.
AUTONAMED = frozenset(
    {
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:lb/loadBalancer:LoadBalancer",
        "aws:lb/targetGroup:TargetGroup",
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:autoscaling/group:Group",
        "aws:autoscaling/policy:Policy",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
    }
)
#: State keys the applier computes (not inputs): ignored when diffing old state with new inputs.
COMPUTED_KEYS = frozenset(
    {"arn", "arnSuffix", "dnsName", "zoneId", "ownerId", "latestVersion", "defaultVersion"}
)
#: Seconds one forwarded operation may take.
TIMEOUT = 300.0


class Unknown:
    """A value the engine does not know yet (a preview's computed input)."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


def plain(value: PropertyValue) -> Any:
    """A property value as plain JSON-like Python (numbers stay floats, as the engine sends them)."""
    inner = value.value
    if isinstance(inner, Computed):
        return Unknown()
    if isinstance(inner, Mapping):
        return {key: plain(item) for key, item in inner.items()}
    if isinstance(inner, tuple):
        return [plain(item) for item in inner]
    return inner


def plain_map(values: Mapping[str, PropertyValue]) -> dict[str, Any]:
    return {key: plain(value) for key, value in values.items()}


def to_property(value: Any, secret: bool = False) -> PropertyValue:
    """Plain Python (as the applier returns it) to a property value."""
    if isinstance(value, Mapping):
        inner: Any = {str(k): to_property(v) for k, v in value.items()}
    elif isinstance(value, list | tuple):
        inner = [to_property(v) for v in value]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        inner = float(value)
    else:
        inner = value
    return PropertyValue(inner, is_secret=secret)


def to_properties(state: Mapping[str, Any], inputs: Mapping[str, PropertyValue]) -> dict[str, PropertyValue]:
    """The state to return; an output keeps the secretness of the input of the same name."""
    secret = {key for key, value in inputs.items() if value.is_secret}
    return {key: to_property(value, key in secret) for key, value in state.items()}


def resource_type(urn: str) -> str:
    """The resource's own type from its URN (the URN's type part also names its parents' types)."""
    return urn.split("::")[2].rsplit("$", 1)[-1]


def autoname(urn: str, name: str) -> str:
    """``<logical name>-<7 hex>``, stable for a URN."""
    return f"{name}-{hashlib.sha256(urn.encode()).hexdigest()[:7]}"


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any], ignore: list[str]) -> list[str]:
    """Input keys whose value differs between the old state and the new inputs."""
    keys = set(news) | {k for k in olds if k not in COMPUTED_KEYS}
    return sorted(k for k in keys - set(ignore) if news.get(k) != olds.get(k))


class ApplierClient:
    """Forwards one operation to the applier service and returns its answer."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        body = json.dumps({"op": op, **fields}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                answer: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read() or b"{}")
            raise RuntimeError(answer.get("error") or f"applier service answered {exc.code}") from exc
        except urllib.error.URLError as exc:
            raise RuntimeError(f"the sandbox's applier service at {self.url} is unreachable") from exc
        return answer


class AwsProviderDouble(p.Provider):
    """The provider (see the module docstring)."""

    def __init__(self, client: ApplierClient) -> None:
        self.client = client

    async def configure(self, request: p.ConfigureRequest) -> p.ConfigureResponse:
        return p.ConfigureResponse(accept_secrets=True, supports_preview=False, accept_resources=True)

    async def check(self, request: p.CheckRequest) -> p.CheckResponse:
        news = dict(request.new_inputs)
        if resource_type(request.urn) in AUTONAMED and news.get("name", PropertyValue.null()).value in (
            None,
            "",
        ):
            old = request.old_inputs.get("name")
            given = old.value if old is not None and isinstance(old.value, str) else None
            news["name"] = PropertyValue(given or autoname(request.urn, request.name))
        return p.CheckResponse(inputs=news)

    async def diff(self, request: p.DiffRequest) -> p.DiffResponse:
        keys = changed_keys(
            plain_map(request.old_state), plain_map(request.new_inputs), request.ignore_changes
        )
        detail = {k: p.PropertyDiff(p.PropertyDiffKind.UPDATE, input_diff=True) for k in keys}
        return p.DiffResponse(changes=bool(keys), diffs=keys, detailed_diff=detail)

    async def create(self, request: p.CreateRequest) -> p.CreateResponse:
        answer = self._apply("create", request.urn, request.name, "", request.properties)
        return p.CreateResponse(answer["id"], to_properties(answer["outputs"], request.properties))

    async def update(self, request: p.UpdateRequest) -> p.UpdateResponse:
        answer = self._apply("update", request.urn, request.name, request.resource_id, request.news)
        return p.UpdateResponse(to_properties(answer["outputs"], request.news))

    async def invoke(self, request: p.InvokeRequest) -> p.InvokeResponse:
        """Provider functions (``aws.ec2.get_vpc``), answered by the applier service from moto."""
        answer = self.client.call("invoke", token=request.tok, args=plain_map(request.args))
        return p.InvokeResponse(return_value={k: to_property(v) for k, v in answer["outputs"].items()})

    async def delete(self, request: p.DeleteRequest) -> None:
        self.client.call(
            "delete",
            urn=request.urn,
            type=resource_type(request.urn),
            name=request.name,
            id=request.resource_id,
        )

    def _apply(
        self, op: str, urn: str, name: str, id_: str, inputs: Mapping[str, PropertyValue]
    ) -> dict[str, Any]:
        values = plain_map(inputs)
        physical = str(values.get("name") or autoname(urn, name))
        type_ = resource_type(urn)
        return self.client.call(op, urn=urn, type=type_, name=name, id=id_, physical=physical, inputs=values)


def plugin_version() -> str:
    """The version reported to the engine: the installed pulumi-aws SDK's (what the program asks for)."""
    try:
        return importlib.metadata.version("pulumi-aws")
    except importlib.metadata.PackageNotFoundError:
        return "7.0.0"


def watch_engine(address: str, interval: float = 1.0, misses: int = 3) -> None:
    """Exit once the engine at ``host:port`` stops accepting connections (a killed ``pulumi``
    must not leave its plugins running)."""
    host, _, port = address.rpartition(":")
    missed = 0
    while missed < misses:
        time.sleep(interval)
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2.0):
                missed = 0
        except OSError:
            missed += 1
    os._exit(1)


def main(argv: list[str]) -> None:
    """Serve the provider (the engine's plugin handshake: print the port, serve until killed)."""
    from pulumi.provider.experimental.server import main as serve

    url = os.environ.get(APPLIER_ENV)
    if not url:
        raise SystemExit(
            f"pulumi-resource-aws (rfs-deploy test double): {APPLIER_ENV} is not set; this plugin only "
            "serves a sandbox started by rfs_deploy.sim.engine, never real AWS"
        )
    engine = next((arg for arg in argv if not arg.startswith("-")), None)
    if engine is not None:
        threading.Thread(target=watch_engine, args=(engine,), name="engine-health", daemon=True).start()
    serve(argv, plugin_version(), AwsProviderDouble(ApplierClient(url)))


if __name__ == "__main__":
    main(sys.argv[1:])
