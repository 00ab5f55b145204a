"""The service's HTTP surface in the sandbox, for the validation step: an ``httpx.MockTransport``.

``http://<dns name>:<port>/...`` (``https://`` when the listeners are HTTPS) reaches the listener on
that port of the service whose load balancer has that DNS name (the stack outputs). No TLS is
spoken: a request's scheme must match the listener's protocol, as on an ALB (plain HTTP to an
HTTPS listener is a 400), and the HTTP-to-HTTPS redirect listener answers its 301. The request
is routed like the ALB would: a listener rule whose header condition matches, else the default
action's target group with the largest weight; then to a healthy instance of it. Behind a shared
load balancer a service answers on its hosts (and the DNS name), and the shared listener's rules
match host-header and path-pattern conditions too (no rule matching: the listener's fixed 404).
That instance answers:

* ``/health``  200 ``{"status": "healthy"}`` (503 when the target group has no healthy target)
* ``/version`` 200 ``{"version": "<the instance's release version>"}``
* the scenario's critical endpoints: 500 when the version lists them as failing; otherwise 500
  with the instance's current error rate, else 200 — and, like any real server could, a W3C
  ``Server-Timing: total;dur=<ms>`` header with a latency drawn from the instance's latency
  distribution (the load probe reads it: a mock transport answers in no wall time at all)
* anything else: 404

Each request goes to one of the target group's healthy instances at random, and the draws come
from their own generator (seeded by the scenario), so HTTP traffic never shifts the physics'.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from rfs_deploy.aws.elbv2 import forward_action, forward_targets, header_conditions
from rfs_deploy.outputs import ServiceOutputs

if TYPE_CHECKING:
    from rfs_deploy.sim.world import World


def sandbox_transport(world: World) -> httpx.MockTransport:
    """A transport answering the stack's services as the sandbox's instances would."""
    rng = np.random.default_rng([world.scenario.seed, 1])

    def handle(request: httpx.Request) -> httpx.Response:
        found = _service(world, request.url.host)
        if found is None:
            raise httpx.ConnectError(f"sandbox: no load balancer named {request.url.host}", request=request)
        out = found
        scheme = request.url.scheme
        port = request.url.port or (443 if scheme == "https" else 80)
        if port == out.listener_port:
            listener = out.listener_arn
        elif port == out.test_listener_port:
            listener = out.test_listener_arn
        else:
            redirect = _redirect(world, out, port, request)
            if redirect is not None:
                return redirect
            raise httpx.ConnectError(
                f"sandbox: {request.url.host} has no listener on port {port}", request=request
            )
        if scheme != out.scheme:
            # what an ALB does: plain HTTP to an HTTPS listener is a 400, TLS to an HTTP one fails
            if scheme == "http":
                return httpx.Response(400, text="The plain HTTP request was sent to HTTPS port")
            raise httpx.ConnectError(
                f"sandbox: the listener on {request.url.host}:{port} does not speak TLS", request=request
            )
        target_group = _route(world, listener, request)
        if target_group is None:
            fixed = _fixed_response(world, listener)
            if fixed is not None:
                return fixed
            return httpx.Response(503, json={"error": "no target group behind the listener"})
        serving = [(i, c) for i, c in world.targets(target_group) if c.in_service]
        if not serving:
            return httpx.Response(503, json={"error": "no healthy target"})
        instance, conduct = serving[int(rng.integers(len(serving)))]
        behaviour = world.scenario.behaviour(instance.version, world.baseline_version)
        path = request.url.path
        if path == "/health":
            return httpx.Response(200, json={"status": "healthy"})
        if path == "/version":
            return httpx.Response(200, json={"version": instance.version})
        if path in world.scenario.endpoints:
            latency = math.exp(rng.normal(conduct.mu, conduct.sigma))
            timing = {"server-timing": f"total;dur={latency * 1000:.1f}"}
            if path in behaviour.failing_endpoints or rng.random() < conduct.error_rate:
                body = {"error": "internal error", "version": instance.version}
                return httpx.Response(500, json=body, headers=timing)
            return httpx.Response(200, json={"ok": True, "version": instance.version}, headers=timing)
        return httpx.Response(404, json={"error": "not found"})

    return httpx.MockTransport(handle)


def _service(world: World, host: str) -> ServiceOutputs | None:
    # a service behind a shared load balancer answers on its hosts too (its rules pick it there)
    services = list(world.topology().values())
    routed = next((out for out in services if _matches(host, out.hosts)), None)
    # https.hostName: a name the stack's DNS points at the service's own load balancer
    named = next((out for out in services if host in (out.host_name, out.dns_name)), None)
    return routed or named


def _redirect(world: World, out: ServiceOutputs, port: int, request: httpx.Request) -> httpx.Response | None:
    """The answer of a redirect listener on ``port`` (the HTTP-to-HTTPS one), if it has one."""
    listeners = world.aws.raw("elbv2").describe_listeners(LoadBalancerArn=out.load_balancer_arn)["Listeners"]
    listener = next((item for item in listeners if int(item["Port"]) == port), None)
    if listener is None or request.url.scheme != str(listener.get("Protocol", "HTTP")).lower():
        return None
    action = next((a for a in listener.get("DefaultActions", []) if a.get("Type") == "redirect"), None)
    if action is None:
        return None
    config = action.get("RedirectConfig", {})
    target = request.url.copy_with(
        scheme=str(config.get("Protocol", "#{protocol}")).replace("#{protocol}", request.url.scheme).lower(),
        port=int(str(config.get("Port", "#{port}")).replace("#{port}", str(port))),
    )
    status = 301 if config.get("StatusCode", "HTTP_301") == "HTTP_301" else 302
    return httpx.Response(status, headers={"location": str(target)})


def _route(world: World, listener_arn: str, request: httpx.Request) -> str | None:
    """The target group the ALB would send ``request`` to (header rules first, then the heaviest)."""
    elbv2 = world.aws.raw("elbv2")
    rules = sorted(
        (r for r in elbv2.describe_rules(ListenerArn=listener_arn)["Rules"] if not r.get("IsDefault")),
        key=lambda r: int(r["Priority"]),
    )
    for rule in rules:
        if _rule_matches(rule.get("Conditions", []), request):
            forward = forward_targets(forward_action(rule.get("Actions", [])))
            if forward:
                return max(forward, key=lambda arn: forward[arn])
    listener = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
    forward = forward_targets(forward_action(listener.get("DefaultActions", [])))
    live = {arn: w for arn, w in forward.items() if w > 0}
    return max(live, key=lambda arn: live[arn]) if live else None


def _fixed_response(world: World, listener_arn: str) -> httpx.Response | None:
    """The listener's fixed-response default action (a shared load balancer's 404), if it has one."""
    listener = world.aws.raw("elbv2").describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
    action = next((a for a in listener.get("DefaultActions", []) if a.get("Type") == "fixed-response"), None)
    if action is None:
        return None
    config = action.get("FixedResponseConfig", {})
    return httpx.Response(
        int(config.get("StatusCode", "503")),
        text=str(config.get("MessageBody", "")),
        headers={"content-type": str(config.get("ContentType", "text/plain"))},
    )


def _rule_matches(conditions: Sequence[Mapping[str, Any]], request: httpx.Request) -> bool:
    """Whether every condition of a rule holds (http-header, host-header, path-pattern); a rule
    with none of them matches nothing here."""
    headers = header_conditions(conditions)
    hosts = [c["HostHeaderConfig"].get("Values", []) for c in conditions if c.get("Field") == "host-header"]
    paths = [c["PathPatternConfig"].get("Values", []) for c in conditions if c.get("Field") == "path-pattern"]
    if not (headers or hosts or paths):
        return False
    host = request.headers.get("host", request.url.host).split(":", 1)[0]
    return (
        all(_matches(request.headers.get(name, ""), values) for name, values in headers)
        and all(_matches(host, values) for values in hosts)
        # paths match case-sensitively, as on an ALB
        and all(any(fnmatch.fnmatchcase(request.url.path, p) for p in values) for values in paths)
    )


def _matches(value: str, patterns: Sequence[str]) -> bool:
    """ALB header matching: case-insensitive, with ``*`` and ``?`` wildcards."""
    return bool(value) and any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in patterns)
