"""HTTPS listeners under the mock runtime: certificate and TLS policy, the redirect listener, extra
certificates, the outputs the driver reads, and one-line errors for bad HTTPS settings."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pulumi
import pytest
from infra_helpers import PRODUCTION, T_LISTENER, ServiceView, as_plain

from rfs_deploy.config import load_stack_config, read_namespace
from rfs_deploy.config.model import DEFAULT_SSL_POLICY
from rfs_deploy.errors import ConfigError
from rfs_deploy.outputs import parse_outputs
from rfs_deploy.sim.mockrun import ProgramRun, run_program

BASE = read_namespace(PRODUCTION)
SERVICE = "api-service"
IAM_CERT = "arn:aws:iam::123456789012:server-certificate/x"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f3c5a1e-8d2b-4c61-9a7e-3b5d2f4e6a10"
EXTRA = "arn:aws:acm:us-east-1:123456789012:certificate/9a7e3b5d-2f4e-4a10-8d2b-0f3c5a1e4c61"
T_CERT = "aws:lb/listenerCertificate:ListenerCertificate"

Namespace = dict[str, Any]


def namespace(https: dict[str, Any] | None = None, **service: Any) -> Namespace:
    ns = copy.deepcopy(BASE)
    if https is not None:
        ns["services"][SERVICE]["https"] = https
    ns["services"][SERVICE].update(service)
    return ns


def with_network(**keys: Any) -> Namespace:
    ns = namespace()
    ns["network"] = {**ns["network"], **keys}
    return ns


def run(ns: Namespace) -> tuple[ProgramRun, ServiceView]:
    result = run_program(ns, stack="production")
    return result, ServiceView(result, SERVICE)


def ports_of_rules(view: ServiceView) -> dict[int, list[dict[str, Any]]]:
    rules: dict[int, list[dict[str, Any]]] = {}
    for rule in as_plain(view.alb_sg.inputs["ingress"]):
        rules.setdefault(rule["fromPort"], []).append(rule)
    return rules


def test_a_certificate_makes_both_listeners_https_with_the_default_policy() -> None:
    result, view = run(namespace({"certificateArn": CERT}))
    for listener, port in ((view.listener, 443), (view.test_listener, 8443)):
        assert listener.inputs["protocol"] == "HTTPS"
        assert as_plain(listener.inputs["port"]) == port
        assert listener.inputs["certificateArn"] == CERT
        assert listener.inputs["sslPolicy"] == DEFAULT_SSL_POLICY == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    # the traffic split is the same weighted forward as over HTTP
    (action,) = view.listener.inputs["defaultActions"]
    assert action["type"] == "forward" and len(action["forward"]["targetGroups"]) == 2
    assert not result.of_type(T_CERT)


def test_the_redirect_listener_answers_http_on_80_with_a_301_to_the_https_port() -> None:
    _, view = run(namespace({"certificateArn": CERT}))
    redirect = view.get("redirect-listener", T_LISTENER)
    assert (redirect.inputs["protocol"], as_plain(redirect.inputs["port"])) == ("HTTP", 80)
    assert "certificateArn" not in redirect.inputs
    (action,) = redirect.inputs["defaultActions"]
    assert action["type"] == "redirect"
    assert action["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}


def test_a_given_listener_port_and_policy_are_kept_and_the_redirect_follows_the_port() -> None:
    https = {"certificateArn": CERT, "sslPolicy": "ELBSecurityPolicy-TLS13-1-3-2021-06", "redirectPort": 8080}
    _, view = run(namespace(https, listenerPort=9443))
    assert as_plain(view.listener.inputs["port"]) == 9443
    assert view.test_listener.inputs["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-3-2021-06"
    redirect = view.get("redirect-listener", T_LISTENER)
    assert as_plain(redirect.inputs["port"]) == 8080
    assert redirect.inputs["defaultActions"][0]["redirect"]["port"] == "9443"


def test_without_redirect_there_is_no_plain_http_listener_and_no_port_80_rule() -> None:
    result, view = run(namespace({"certificateArn": CERT, "redirectHttp": False}))
    names = {r.name for r in result.of_type(T_LISTENER)}
    assert names == {f"{SERVICE}-listener", f"{SERVICE}-test-listener"}
    assert sorted(ports_of_rules(view)) == [443, 8443]


def test_extra_certificates_go_on_both_listeners() -> None:
    result, view = run(namespace({"certificateArn": CERT, "extraCertificateArns": [EXTRA]}))
    attached = {r.name: r.inputs for r in result.of_type(T_CERT)}
    assert attached == {
        f"{SERVICE}-listener-cert-1": {"listenerArn": view.listener.outputs["arn"], "certificateArn": EXTRA},
        f"{SERVICE}-test-listener-cert-1": {
            "listenerArn": view.test_listener.outputs["arn"],
            "certificateArn": EXTRA,
        },
    }


def test_the_production_ingress_covers_the_https_and_redirect_ports_only() -> None:
    ns = namespace({"certificateArn": CERT})
    _, view = run(ns)
    cidrs = BASE["network"].get("ingressCidrs", ["0.0.0.0/0"])
    rules = ports_of_rules(view)
    assert sorted(rules) == [80, 443, 8443]
    for port in (80, 443):
        (rule,) = rules[port]
        assert sorted(rule.get("cidrBlocks", []) + rule.get("ipv6CidrBlocks", [])) == sorted(cidrs)
    (test_rule,) = rules[8443]
    assert test_rule["cidrBlocks"] == ["10.0.0.0/16"]


def test_the_outputs_say_https_and_the_driver_builds_https_urls() -> None:
    result, view = run(namespace({"certificateArn": CERT}))
    out = parse_outputs(result.outputs, SERVICE)
    assert out.listener_protocol == "HTTPS"
    dns = view.load_balancer.outputs["dnsName"]
    assert (out.url, out.test_url) == (f"https://{dns}:443", f"https://{dns}:8443")


def test_plain_http_stays_exactly_as_before() -> None:
    result, view = run(namespace())
    listeners = {r.name: r for r in result.of_type(T_LISTENER)}
    assert set(listeners) == {f"{SERVICE}-listener", f"{SERVICE}-test-listener"}
    for listener in listeners.values():
        assert listener.inputs["protocol"] == "HTTP"
        assert "certificateArn" not in listener.inputs and "sslPolicy" not in listener.inputs
    assert as_plain(view.listener.inputs["port"]) == 80
    out = parse_outputs(result.outputs, SERVICE)
    assert out.listener_protocol == "HTTP" and out.url.startswith("http://")


def test_outputs_without_a_protocol_are_read_as_http() -> None:
    result, _ = run(namespace())
    services = copy.deepcopy(dict(result.outputs["services"]))
    del services[SERVICE]["listenerProtocol"]
    out = parse_outputs({"services": services}, SERVICE)
    assert out.listener_protocol == "HTTP" and out.test_url.startswith("http://")


#: (id, the service's https setting and other keys, the key named, a fragment of the reason)
ERRORS: list[tuple[str, Callable[[], Namespace], str, str]] = [
    ("an IAM certificate", lambda: namespace({"certificateArn": IAM_CERT}),
     "services.api-service.https.certificateArn", "is not an ACM certificate ARN"),
    ("a bare id", lambda: namespace({"certificateArn": "0f3c5a1e-8d2b-4c61-9a7e-3b5d2f4e6a10"}),
     "services.api-service.https.certificateArn", "arn:aws:acm:<region>:<account>:certificate/<id>"),
    ("a bad extra certificate", lambda: namespace({"certificateArn": CERT, "extraCertificateArns": ["x"]}),
     "services.api-service.https.extraCertificateArns.0", "is not an ACM certificate ARN"),
    ("no certificate", lambda: namespace({"sslPolicy": DEFAULT_SSL_POLICY}),
     "services.api-service.https.certificateArn", "Field required"),
    ("a policy that is no TLS policy", lambda: namespace({"certificateArn": CERT, "sslPolicy": "TLS1.3"}),
     "services.api-service.https.sslPolicy", "ELBSecurityPolicy-"),
    ("the redirect on the test port", lambda: namespace({"certificateArn": CERT, "redirectPort": 8443}),
     "services.api-service", "https.redirectPort 8443 is also listenerPort or testListenerPort"),
    ("a host name that is no host name", lambda: namespace({"certificateArn": CERT, "hostName": "a b"}),
     "services.api-service.https.hostName", "should match pattern"),
    ("a test CIDR that is no CIDR", lambda: with_network(testIngressCidrs=["vpc"]),
     "network.testIngressCidrs", "'vpc' is not a CIDR block"),
    ("a test group that is no group",
     lambda: with_network(testIngressSecurityGroups=["bastion"]),
     "network.testIngressSecurityGroups.0", "is not a security group id"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "key", "reason"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_https_and_test_ingress_settings_are_one_line(
    make: Callable[[], Namespace], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_stack_config(make())
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"config rfs-deploy:{key}: ")
    assert reason in message


def test_the_program_stops_on_a_bad_certificate_with_the_same_line() -> None:
    ns = namespace({"certificateArn": "arn:aws:acm:us-east-1:123456789012:cert/x"})
    with pytest.raises(ConfigError) as expected:
        load_stack_config(ns)
    with pytest.raises(pulumi.RunError) as caught:
        run_program(ns, stack="production")
    assert str(caught.value) == str(expected.value)
