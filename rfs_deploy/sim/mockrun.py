"""Evaluate the real Pulumi program under Pulumi's mock runtime, as often as you like.

The harness runs :func:`rfs_deploy.infra.program.run` (the body of ``__main__.py``) with a given
config, stack and project, and returns every registered resource (URN, type, name, parent,
inputs, outputs) and the stack outputs. Tests assert on that graph; the benchmark times it; the
sandbox passes its own :class:`pulumi.runtime.Mocks` to apply each resource to a simulated AWS.

Each run happens in a fresh worker thread with its own event loop. Pulumi keeps its runtime state
(settings, root stack, config) in context variables, and a new thread starts with an empty
context, so nothing leaks from one run into the next and a run can start from code that is
itself inside an event loop. Runs are serialised by a lock. The program runs through the SDK's
own ``run_in_stack``, as under ``pulumi up``; only the engine is replaced.

The hook contract for a caller's ``mocks``:

- ``new_resource(args)`` is called for every **custom** (provider) resource, never for
  components, one call at a time on the run's worker thread, each resource after the resources
  its inputs reference (the order of ``ProgramRun.resources``);
  ``args.typ`` is the type token (``aws:lb/targetGroup:TargetGroup``), ``args.name`` the logical
  name, ``args.inputs`` the inputs as the engine would send them to the provider (camelCase keys,
  numbers as floats, Outputs resolved). Return ``(id, state)``; ``state`` becomes the resource's
  outputs, so include the inputs and every computed property the program reads (``arn``,
  ``name``, ``arnSuffix``, ``dnsName``, ``latestVersion``...). :class:`AwsMocks` does this with
  realistic values and is meant to be subclassed.
- ``call(args)`` answers provider function calls: the program looks up its VPC's CIDR blocks
  (``aws:ec2/getVpc:getVpc``) for the test listener's default ingress; :class:`AwsMocks`
  answers with :attr:`AwsMocks.vpc_cidr`.
- An exception raised by the hook fails the run: :func:`run_program` raises it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import runpy
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockEngine, MockMonitor, MockSettings
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.settings import configure
from pulumi.runtime.stack import run_in_stack

from rfs_deploy.config.loading import NAMESPACE, read_namespace, read_other_config
from rfs_deploy.logs import get_logger
from rfs_deploy.outputs import whole_numbers

STACK_TYPE = "pulumi:pulumi:Stack"
DEFAULT_PROJECT = "rfs-deploy"
_RUN_LOCK = threading.Lock()


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RegisteredResource:
    """One resource as the program registered it."""

    urn: str
    type: str
    name: str
    #: True for provider resources, False for components.
    custom: bool
    #: The id the mocks returned (empty for components).
    id: str
    #: URN of the parent (the stack's URN for top-level resources).
    parent: str | None
    #: Inputs as the provider would see them: camelCase keys, numbers as floats.
    inputs: Mapping[str, Any]
    #: The state the mocks returned (the resource's outputs).
    outputs: Mapping[str, Any]
    #: URNs of the resources this one depends on.
    dependencies: tuple[str, ...] = ()
    #: Input names the engine keeps from the last update (``ignore_changes``).
    ignore_changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProgramRun:
    """The outcome of one evaluation: resources in registration order and the stack outputs."""

    project: str
    stack: str
    resources: tuple[RegisteredResource, ...]
    outputs: Mapping[str, Any]
    #: Outputs each component registered (``register_outputs``), keyed by URN.
    component_outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[RegisteredResource]:
        """Resources of one type token, in registration order."""
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str, type_: str | None = None) -> RegisteredResource:
        """The resource with this logical name (and type, when names repeat across types)."""
        found = [r for r in self.resources if r.name == name and (type_ is None or r.type == type_)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}" + (f" of type {type_}" if type_ else ""))
        return found[0]

    def children(self, parent: RegisteredResource | str) -> list[RegisteredResource]:
        """Direct children of a resource (or of a URN)."""
        urn = parent.urn if isinstance(parent, RegisteredResource) else parent
        return [r for r in self.resources if r.parent == urn]


# --------------------------------------------------------------------------- default mocks


def _hex(*parts: str, length: int) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


class AwsMocks(pulumi.runtime.Mocks):
    """Mocks that answer like AWS would: realistic, deterministic ids, ARNs and names.

    Names follow Pulumi's auto-naming (``<logical name>-<7 hex>``) unless the inputs give one.
    Subclass and override :meth:`new_resource`, calling ``super()`` for types you do not handle.
    """

    #: The CIDR block of every VPC the program looks up.
    vpc_cidr = "10.0.0.0/16"

    def __init__(self, region: str = "us-east-1", account_id: str = "123456789012") -> None:
        self.region = region
        self.account_id = account_id

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "aws:ec2/getVpc:getVpc":
            return self.vpc(str(args.args.get("id") or "")), []
        if args.token == "aws:lb/getLoadBalancer:getLoadBalancer":
            return self.existing_load_balancer(str(args.args.get("arn") or "")), []
        return dict(args.args), []

    def existing_load_balancer(self, arn: str) -> dict[str, Any]:
        """``aws.lb.get_load_balancer``'s answer for an ARN (a load balancer the program did not
        create): its name, ARN suffix and a DNS name made as for the ones it creates."""
        suffix = arn.split(":loadbalancer/", 1)[-1]
        name = suffix.split("/")[1] if suffix.count("/") >= 2 else suffix
        digits = str(int(_hex(name, "dns", length=8), 16))[:10]
        return {
            "arn": arn,
            "arnSuffix": suffix,
            "name": name,
            "dnsName": f"{name}-{digits}.{self.region}.elb.amazonaws.com",
            "loadBalancerType": "application",
        }

    def vpc(self, vpc_id: str) -> dict[str, Any]:
        """``aws.ec2.get_vpc``'s answer for ``vpc_id``: one IPv4 block, :attr:`vpc_cidr`."""
        return {
            "id": vpc_id,
            "arn": self.arn("ec2", f"vpc/{vpc_id}"),
            "cidrBlock": self.vpc_cidr,
            "cidrBlockAssociations": [
                {"associationId": f"vpc-cidr-assoc-{_hex(vpc_id, length=17)}", "cidrBlock": self.vpc_cidr}
            ],
            "state": "available",
            "ownerId": self.account_id,
        }

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        handler = self._handlers().get(args.typ, AwsMocks._generic)
        return handler(self, args)

    # ----------------------------------------------------------------- per type

    @staticmethod
    def _handlers() -> dict[str, Callable[[AwsMocks, pulumi.runtime.MockResourceArgs], tuple[str, dict]]]:
        return {
            "aws:lb/loadBalancer:LoadBalancer": AwsMocks._load_balancer,
            "aws:lb/targetGroup:TargetGroup": AwsMocks._target_group,
            "aws:lb/listener:Listener": AwsMocks._listener,
            "aws:lb/listenerRule:ListenerRule": AwsMocks._listener_rule,
            "aws:ec2/securityGroup:SecurityGroup": AwsMocks._security_group,
            "aws:ec2/launchTemplate:LaunchTemplate": AwsMocks._launch_template,
            "aws:autoscaling/group:Group": AwsMocks._auto_scaling_group,
            "aws:cloudwatch/metricAlarm:MetricAlarm": AwsMocks._metric_alarm,
            "aws:ec2/vpc:Vpc": AwsMocks._vpc,
            "aws:ec2/subnet:Subnet": AwsMocks._subnet,
        }

    def physical_name(self, args: pulumi.runtime.MockResourceArgs) -> str:
        """The ``name`` input, else Pulumi's auto-name for the logical name."""
        given = args.inputs.get("name")
        return str(given) if given else f"{args.name}-{_hex(args.typ, args.name, length=7)}"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def _load_balancer(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        name = self.physical_name(args)
        suffix = f"app/{name}/{_hex(args.typ, name, length=16)}"
        arn = self.arn("elasticloadbalancing", f"loadbalancer/{suffix}")
        digits = str(int(_hex(name, "dns", length=8), 16))[:10]
        scheme = "internal-" if args.inputs.get("internal") else ""
        dns = f"{scheme}{name}-{digits}.{self.region}.elb.amazonaws.com"
        state = {"name": name, "arn": arn, "arnSuffix": suffix, "dnsName": dns, "zoneId": "Z35SXDOTRQ7X7K"}
        return arn, {**args.inputs, **state}

    def _target_group(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        name = self.physical_name(args)
        suffix = f"targetgroup/{name}/{_hex(args.typ, name, length=16)}"
        arn = self.arn("elasticloadbalancing", suffix)
        return arn, {**args.inputs, "name": name, "arn": arn, "arnSuffix": suffix}

    def _listener(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        lb_arn = str(args.inputs.get("loadBalancerArn", ""))
        lb_part = lb_arn.split(":loadbalancer/", 1)[-1]
        arn = self.arn("elasticloadbalancing", f"listener/{lb_part}/{_hex(args.typ, args.name, length=16)}")
        return arn, {**args.inputs, "arn": arn}

    def _listener_rule(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        listener = str(args.inputs.get("listenerArn", "")).split(":listener/", 1)[-1]
        arn = self.arn(
            "elasticloadbalancing", f"listener-rule/{listener}/{_hex(args.typ, args.name, length=16)}"
        )
        return arn, {**args.inputs, "arn": arn}

    def _security_group(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        sg_id = f"sg-{_hex(args.typ, args.name, length=17)}"
        state = {"name": self.physical_name(args), "arn": self.arn("ec2", f"security-group/{sg_id}")}
        return sg_id, {**args.inputs, **state, "ownerId": self.account_id}

    def _launch_template(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        lt_id = f"lt-{_hex(args.typ, args.name, length=17)}"
        state = {
            "name": self.physical_name(args),
            "arn": self.arn("ec2", f"launch-template/{lt_id}"),
            "latestVersion": 1,
            "defaultVersion": 1,
        }
        return lt_id, {**args.inputs, **state}

    def _auto_scaling_group(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        name = self.physical_name(args)
        uuid = _hex(args.typ, name, length=32)
        uuid = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"
        arn = self.arn("autoscaling", f"autoScalingGroup:{uuid}:autoScalingGroupName/{name}")
        return name, {**args.inputs, "name": name, "arn": arn}

    def _metric_alarm(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        name = self.physical_name(args)
        return name, {**args.inputs, "name": name, "arn": self.arn("cloudwatch", f"alarm:{name}")}

    def _vpc(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        vpc_id = f"vpc-{_hex(args.typ, args.name, length=17)}"
        return vpc_id, {**args.inputs, "arn": self.arn("ec2", f"vpc/{vpc_id}"), "ownerId": self.account_id}

    def _subnet(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        subnet_id = f"subnet-{_hex(args.typ, args.name, length=17)}"
        state = {"arn": self.arn("ec2", f"subnet/{subnet_id}"), "ownerId": self.account_id}
        return subnet_id, {**args.inputs, **state}

    def _generic(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        name = self.physical_name(args)
        service = args.typ.split(":")[1].split("/")[0] if args.typ.count(":") >= 2 else "unknown"
        return f"{name}-id", {**args.inputs, "name": name, "arn": self.arn(service, name)}


# --------------------------------------------------------------------------- the recording monitor


class _InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each job at once in the calling thread.

    The runtime sends every engine call through ``loop.run_in_executor``. Against the real
    engine that keeps gRPC off the event loop; against an in-process mock it only moves the
    call to a pool thread. Answering inline keeps the order the runtime relies on (a resource
    registers after the resources its inputs reference), needs no event loop per pool thread,
    and lets each call finish before the next starts, so the caller's mocks are never called
    concurrently (moto and other stateful hooks need no locking of their own).
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def _finish_now(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits (serialising plain values) to completion, synchronously."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("mock state must be plain values (no Outputs or awaitables)")


class _RecordingMonitor(MockMonitor):
    """A mock monitor that records every registration and the stack outputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks, project: str, stack: str) -> None:
        super().__init__(mocks)
        self._project = project
        self._stack = stack
        self.records: list[RegisteredResource] = []
        self.stack_urn = ""
        self.stack_outputs: dict[str, Any] = {}
        self.component_outputs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """URNs as the engine makes them: the parent's full type chain, without the root stack."""
        if parent:
            parent_type = parent.split("::")[2]
            if parent_type != STACK_TYPE:
                type_ = f"{parent_type}${type_}"
        return f"urn:pulumi:{self._stack}::{self._project}::{type_}::{name}"

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == STACK_TYPE:
            self.stack_urn = urn
            return resource_pb2.RegisterResourceResponse(urn=urn)
        inputs = rpc.deserialize_properties(request.object)
        custom = bool(request.custom)
        with self._lock:
            resource_id, state = "", dict[str, Any]()
            if custom:
                args = pulumi.runtime.MockResourceArgs(
                    typ=request.type,
                    name=request.name,
                    inputs=inputs,
                    provider=request.provider,
                    resource_id=request.importId,
                    custom=True,
                )
                found_id, state = self.mocks.new_resource(args)
                resource_id = found_id or ""
            self.resources[urn] = MockMonitor.ResourceRegistration(urn, resource_id, state)
            self.records.append(
                RegisteredResource(
                    urn=urn,
                    type=request.type,
                    name=request.name,
                    custom=custom,
                    id=resource_id,
                    parent=request.parent or None,
                    inputs=inputs,
                    outputs=state,
                    dependencies=tuple(request.dependencies),
                    ignore_changes=tuple(request.ignoreChanges),
                )
            )
        props = _finish_now(rpc.serialize_properties(state, {}))
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=props)

    def RegisterResourceOutputs(self, request: Any) -> Any:
        outputs = rpc.deserialize_properties(request.outputs)
        with self._lock:
            if request.urn == self.stack_urn:
                self.stack_outputs = dict(outputs)
            else:
                self.component_outputs[request.urn] = dict(outputs)
        return super().RegisterResourceOutputs(request)


# --------------------------------------------------------------------------- running


def default_program() -> None:
    """The program ``__main__.py`` runs."""
    from rfs_deploy.infra.program import run

    run()


def main_file_program(path: str | Path) -> Callable[[], None]:
    """A program that executes a ``__main__.py`` file, as the Pulumi language host does."""
    main = Path(path)

    def program() -> None:
        runpy.run_path(str(main), run_name="__main__")

    return program


def encode_config(namespace: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Pulumi's flat config map: ``rfs-deploy:<key>`` per namespace key, structured values as JSON."""

    def encode(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    flat = {f"{NAMESPACE}:{key}": encode(value) for key, value in namespace.items()}
    flat.update({key: encode(value) for key, value in (extra or {}).items()})
    return flat


def run_program(
    namespace: Mapping[str, Any],
    *,
    stack: str = "dev",
    project: str = DEFAULT_PROJECT,
    mocks: pulumi.runtime.Mocks | None = None,
    config: Mapping[str, Any] | None = None,
    program: Callable[[], None] | None = None,
    preview: bool = False,
    env: Mapping[str, str] | None = None,
) -> ProgramRun:
    """Evaluate the program with ``namespace`` as the ``rfs-deploy:*`` config.

    ``namespace`` maps top-level keys (``network``, ``services``, ``release``, ``tags``) to
    mappings or JSON strings, e.g. the result of :func:`rfs_deploy.config.read_namespace`.
    ``config`` adds other fully qualified keys (``aws:region``). ``mocks`` defaults to
    :class:`AwsMocks`; ``program`` to the real one. Exceptions raised by the program (such as
    ``pulumi.RunError`` for invalid config) propagate unchanged. ``env`` sets environment
    variables for the run, as the engine's environment would (the update's release owner,
    :mod:`rfs_deploy.releases`); runs are serialised, so nothing else sees them.
    """
    job = _Job(
        flat_config=encode_config(namespace, config),
        stack=stack,
        project=project,
        mocks=mocks or AwsMocks(),
        program=program or default_program,
        preview=preview,
    )
    with _RUN_LOCK, _environment(env or {}):
        worker = threading.Thread(target=job.evaluate, name=f"pulumi-mockrun-{stack}")
        worker.start()
        worker.join()
    if job.error is not None:
        raise job.error
    assert job.result is not None
    return job.result


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_stack_file(
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    mocks: pulumi.runtime.Mocks | None = None,
    program: Callable[[], None] | None = None,
    preview: bool = False,
) -> ProgramRun:
    """Evaluate the program with the config of ``stacks/Pulumi.<stack>.yaml``.

    The stack name comes from the file name; ``overrides`` replaces top-level namespace keys
    (for instance ``{"release": {...}}``); other namespaces' keys (``aws:region``) pass through.
    Pulumi secrets (``secure:``) reach the program decrypted, as the engine gives them, when the
    passphrase is at hand (:mod:`rfs_deploy.config.secrets`), masked otherwise.
    """
    path = Path(path)
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    namespace = {**read_namespace(path), **(overrides or {})}
    others = read_other_config(path)
    return run_program(namespace, stack=stack, mocks=mocks, config=others, program=program, preview=preview)


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what a failed run left pending, so the loop closes cleanly."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


@dataclass
class _Job:
    flat_config: dict[str, str]
    stack: str
    project: str
    mocks: pulumi.runtime.Mocks
    program: Callable[[], None]
    preview: bool
    result: ProgramRun | None = None
    error: BaseException | None = None

    def evaluate(self) -> None:
        """Runs in a fresh thread: configure the runtime, run the program, collect the record."""
        loop = asyncio.new_event_loop()
        loop.set_default_executor(_InlineExecutor())
        asyncio.set_event_loop(loop)
        monitor = _RecordingMonitor(self.mocks, self.project, self.stack)
        try:
            configure(
                MockSettings(
                    monitor=monitor,
                    monitor_features=set(monitor.GetDeploymentInfo(None).supportedFeatures),
                    engine=MockEngine(get_logger(__name__)),
                    project=self.project,
                    stack=self.stack,
                    dry_run=self.preview,
                    organization="organization",
                    callbacks=None,
                    outputs=set(),
                    lock=threading.Lock(),
                )
            )
            pulumi.runtime.set_all_config(self.flat_config, [])
            loop.run_until_complete(run_in_stack(self.program))
            self.result = ProgramRun(
                project=self.project,
                stack=self.stack,
                resources=tuple(monitor.records),
                outputs=whole_numbers(monitor.stack_outputs),
                component_outputs=monitor.component_outputs,
            )
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc
        finally:
            _drain(loop)
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            asyncio.set_event_loop(None)
