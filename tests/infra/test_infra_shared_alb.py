"""Several services behind one load balancer, under the mock runtime (stacks/Pulumi.shared-alb.yaml).

One ALB whose listeners answer 404 by default; per service a rule with its host/path conditions
and its weighted forward at priority 10p + 9, a rule on the test listener to its idle slot, and
during an A/B test its four forced-variant rules at 10p .. 10p + 3; priorities that stay put when
a service is added; collisions and other routing mistakes refused with one line.
"""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest
from infra_helpers import REPO, T_ALARM, T_LB, T_LISTENER, T_RULE, T_SG, T_TG, as_plain

from rfs_deploy.config import load_stack_config, read_namespace
from rfs_deploy.config.model import SLOTS, ReleaseState
from rfs_deploy.errors import ConfigError
from rfs_deploy.infra.args import ArgsError
from rfs_deploy.infra.routing import SharedAlb, SharedAlbArgs
from rfs_deploy.infra.service import Service, ServiceArgs
from rfs_deploy.outputs import OUTPUT_NAME, parse_outputs, parse_service_outputs
from rfs_deploy.sim.mockrun import ProgramRun, run_program

SHARED = REPO / "stacks" / "Pulumi.shared-alb.yaml"
BASE = read_namespace(SHARED)
SERVICES = ("api", "web", "search")
#: routing.priority per service in the stack file
PRIORITY = {"api": 10, "web": 20, "search": 5}

Namespace = dict[str, Any]


def namespace() -> Namespace:
    return copy.deepcopy(BASE)


def run(ns: Namespace | None = None) -> ProgramRun:
    return run_program(ns if ns is not None else namespace(), stack="shared-alb")


@pytest.fixture(scope="module")
def steady() -> ProgramRun:
    return run()


def rule(run_: ProgramRun, name: str) -> dict[str, Any]:
    return as_plain(run_.named(name, T_RULE).inputs)


def conditions(inputs: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for condition in inputs["conditions"]:
        for key, value in condition.items():
            found[key] = value
    return found


def test_one_load_balancer_with_404_listeners_and_no_listener_of_any_service(steady: ProgramRun) -> None:
    (lb,) = steady.of_type(T_LB)
    assert lb.name == "edge-alb"
    listeners = {r.name: as_plain(r.inputs) for r in steady.of_type(T_LISTENER)}
    assert set(listeners) == {"edge-listener", "edge-test-listener"}
    for listener, port in ((listeners["edge-listener"], 80), (listeners["edge-test-listener"], 8443)):
        assert listener["port"] == port and listener["loadBalancerArn"] == lb.id
        (action,) = listener["defaultActions"]
        assert action["type"] == "fixed-response"
        assert action["fixedResponse"]["statusCode"] == "404"
    component = steady.named("edge", "rfs-deploy:aws:SharedLoadBalancer")
    assert {r.name for r in steady.children(component)} == {
        "edge-alb-sg",
        "edge-alb",
        "edge-listener",
        "edge-test-listener",
    }
    for name in SERVICES:
        service = steady.named(name, "rfs-deploy:aws:Service")
        assert {(r.type, r.name) for r in steady.children(service)} == {
            (T_SG, f"{name}-instance-sg"),
            ("rfs-deploy:aws:Slot", f"{name}-blue"),
            ("rfs-deploy:aws:Slot", f"{name}-green"),
            ("rfs-deploy:aws:Routes", f"{name}-routes"),
        }


def test_every_service_has_a_rule_with_its_conditions_and_priority_on_each_listener(
    steady: ProgramRun,
) -> None:
    production = steady.named("edge-listener", T_LISTENER).id
    test = steady.named("edge-test-listener", T_LISTENER).id
    config = load_stack_config(BASE)
    for name in SERVICES:
        routing = config.services[name].routing
        assert routing is not None
        wanted: dict[str, Any] = {}
        if routing.hosts:
            wanted["hostHeader"] = {"values": routing.hosts}
        if routing.paths:
            wanted["pathPattern"] = {"values": routing.paths}
        own, idle_rule = rule(steady, f"{name}-rule"), rule(steady, f"{name}-test-rule")
        assert own["listenerArn"] == production and idle_rule["listenerArn"] == test
        assert own["priority"] == idle_rule["priority"] == PRIORITY[name] * 10 + 9
        assert conditions(own) == conditions(idle_rule) == wanted
        release = config.release[name]
        tg = {slot: steady.named(f"{name}-tg-{slot}", T_TG).id for slot in SLOTS}
        (forward,) = own["actions"]
        assert forward["type"] == "forward"
        assert {g["arn"]: g["weight"] for g in forward["forward"]["targetGroups"]} == {
            tg[slot]: release.weights[slot] for slot in SLOTS
        }
        (to_idle,) = idle_rule["actions"]
        assert to_idle == {"type": "forward", "targetGroupArn": tg[release.idle]}
    priorities = [r.inputs["priority"] for r in steady.of_type(T_RULE)]
    assert len(priorities) == 2 * len(SERVICES)


def test_the_instances_admit_the_shared_load_balancers_group_and_alarms_use_its_dimension(
    steady: ProgramRun,
) -> None:
    shared_sg = steady.named("edge-alb-sg", T_SG)
    lb = steady.named("edge-alb", T_LB)
    for name in SERVICES:
        (app_rule,) = as_plain(steady.named(f"{name}-instance-sg", T_SG).inputs["ingress"])
        assert app_rule["securityGroups"] == [shared_sg.id]
        for slot in SLOTS:
            alarm = steady.named(f"{name}-p99-{slot}", T_ALARM).inputs
            assert alarm["dimensions"]["LoadBalancer"] == lb.outputs["arnSuffix"]


def test_outputs_name_the_shared_listeners_and_the_services_rules(steady: ProgramRun) -> None:
    lb = steady.named("edge-alb", T_LB)
    for name in SERVICES:
        out = parse_outputs(steady.outputs, name)
        assert (out.load_balancer_arn, out.dns_name) == (lb.outputs["arn"], lb.outputs["dnsName"])
        assert out.listener_arn == steady.named("edge-listener", T_LISTENER).id
        assert out.test_listener_arn == steady.named("edge-test-listener", T_LISTENER).id
        assert out.rule_arn == out.traffic_arn == steady.named(f"{name}-rule", T_RULE).id
        assert out.test_rule_arn == out.test_traffic_arn == steady.named(f"{name}-test-rule", T_RULE).id
        assert (out.listener_port, out.test_listener_port) == (80, 8443)
    web = parse_outputs(steady.outputs, "web")
    assert web.hosts == ("www.example.com", "example.com")
    assert web.url == "http://www.example.com:80" and web.test_url == "http://www.example.com:8443"


def test_outputs_written_before_shared_load_balancers_still_read() -> None:
    own = run_program(read_namespace(REPO / "stacks" / "Pulumi.production.yaml"), stack="production")
    (name,) = own.outputs[OUTPUT_NAME]
    value = dict(own.outputs[OUTPUT_NAME][name])
    assert not {"ruleArn", "testRuleArn", "hosts", "paths"} & set(value)
    out = parse_service_outputs(value)
    assert (out.rule_arn, out.hosts, out.traffic_arn) == (None, (), out.listener_arn)
    assert out.url == f"http://{out.dns_name}:{out.listener_port}"


def test_a_canary_step_changes_its_rule_only(steady: ProgramRun) -> None:
    ns = namespace()
    ns["release"]["api"] = {
        "live": "blue",
        "blue": {"version": "v1.0.0", "capacity": 4},
        "green": {"version": "v1.1.0", "capacity": 4},
        "weights": {"blue": 90, "green": 10},
        "stickiness": 300,
    }
    moved = run(ns)
    (forward,) = rule(moved, "api-rule")["actions"]
    tg = {slot: moved.named(f"api-tg-{slot}", T_TG).id for slot in SLOTS}
    assert {g["arn"]: g["weight"] for g in forward["forward"]["targetGroups"]} == {
        tg["blue"]: 90,
        tg["green"]: 10,
    }
    assert forward["forward"]["stickiness"] == {"enabled": True, "duration": 300}
    assert rule(moved, "api-test-rule")["actions"] == [{"type": "forward", "targetGroupArn": tg["green"]}]
    for name in ("web", "search"):
        assert rule(moved, f"{name}-rule") == rule(steady, f"{name}-rule")
    for listener in ("edge-listener", "edge-test-listener"):
        assert as_plain(moved.named(listener).inputs) == as_plain(steady.named(listener).inputs)


def test_ab_rules_sit_in_the_services_block_above_its_rule_with_its_conditions() -> None:
    ns = namespace()
    ns["release"]["search"] = {
        "live": "blue",
        "blue": {"version": "v5.0.0", "capacity": 2},
        "green": {"version": "v5.1.0", "capacity": 2},
        "weights": {"blue": 50, "green": 50},
        "variants": {"header": "X-Experiment", "cookie": "experiment", "rulePriority": 10},
    }
    result = run(ns)
    tg = {slot: result.named(f"search-tg-{slot}", T_TG).id for slot in SLOTS}
    expected = {
        "header-a": (50, "X-Experiment", ["a"], "blue"),
        "header-b": (51, "X-Experiment", ["b"], "green"),
        "cookie-a": (52, "Cookie", ["*experiment=a", "*experiment=a;*"], "blue"),
        "cookie-b": (53, "Cookie", ["*experiment=b", "*experiment=b;*"], "green"),
    }
    for key, (priority, header, values, slot) in expected.items():
        inputs = rule(result, f"search-rule-{key}")
        assert inputs["priority"] == priority
        assert inputs["listenerArn"] == result.named("edge-listener", T_LISTENER).id
        assert conditions(inputs) == {
            "hostHeader": {"values": ["example.com"]},
            "pathPattern": {"values": ["/search*"]},
            "httpHeader": {"httpHeaderName": header, "values": values},
        }
        assert inputs["actions"] == [{"type": "forward", "targetGroupArn": tg[slot]}]
    # the service's own rule still comes after them in its block, and the others have none
    assert rule(result, "search-rule")["priority"] == 59
    assert not [r for r in result.of_type(T_RULE) if r.name.startswith(("api-rule-", "web-rule-"))]


def test_adding_a_service_renumbers_no_other_rule(steady: ProgramRun) -> None:
    ns = namespace()
    ns["services"]["admin"] = {
        "artifact": {"defaultAmi": "ami-0cc3300000000d100"},
        "instanceCount": 1,
        "routing": {"loadBalancer": "edge", "hosts": ["admin.example.com"], "priority": 7},
    }
    ns["release"]["admin"] = {"live": "blue", "blue": {"version": "v1", "capacity": 1}}
    grown = run(ns)
    assert rule(grown, "admin-rule")["priority"] == 79
    for name in SERVICES:
        for suffix in ("rule", "test-rule"):
            before, after = rule(steady, f"{name}-{suffix}"), rule(grown, f"{name}-{suffix}")
            assert after == before
    assert len(grown.of_type(T_LB)) == 1


def _refused(ns: Namespace) -> str:
    with pytest.raises(ConfigError) as expected:
        load_stack_config(ns)
    with pytest.raises(pulumi.RunError) as caught:
        run(ns)
    message = str(caught.value)
    assert message == str(expected.value)
    assert "\n" not in message
    return message


def test_two_services_with_one_priority_are_refused_with_one_line() -> None:
    ns = namespace()
    ns["services"]["web"]["routing"]["priority"] = 10
    message = _refused(ns)
    assert message.startswith("config rfs-deploy:services.web.routing.priority: ")
    assert "10 is also services.api's on load balancer edge" in message


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (
            lambda ns: ns["services"]["api"]["routing"].update(loadBalancer="core"),
            "services.api.routing.loadBalancer",
            "'core' is not in loadBalancers (has: edge)",
        ),
        (
            lambda ns: ns["services"]["api"]["routing"].pop("loadBalancer"),
            "services.api.routing.loadBalancer",
            "missing",
        ),
        (
            lambda ns: ns["services"]["web"].update(listenerPort=8080),
            "services.web.listenerPort",
            "set it on loadBalancers.edge",
        ),
        (lambda ns: ns["loadBalancers"].update(api={}), "loadBalancers.api", "is also a service's name"),
        (
            lambda ns: ns["services"]["api"]["routing"].update(hosts=[]),
            "services.api.routing",
            "routing needs hosts or paths",
        ),
        (
            lambda ns: ns["services"]["api"]["routing"].update(paths=["/a", "/b", "/c"]),
            "services.api.routing",
            "at most 3 hosts and paths",
        ),
        (
            lambda ns: ns["services"]["api"]["routing"].update(priority=5000),
            "services.api.routing.priority",
            "less than or equal to 4999",
        ),
    ],
    ids=[
        "unknown-lb",
        "no-lb",
        "own-port",
        "lb-named-like-a-service",
        "no-conditions",
        "too-many",
        "priority",
    ],
)
def test_routing_mistakes_are_one_line_naming_the_key(change: Any, key: str, reason: str) -> None:
    ns = namespace()
    change(ns)
    message = _refused(ns)
    assert message.startswith(f"config rfs-deploy:{key}"), message
    assert reason in message


def test_stacks_without_load_balancers_have_none_shared() -> None:
    result = run_program(read_namespace(REPO / "stacks" / "Pulumi.platform.yaml"), stack="platform")
    assert not result.of_type("rfs-deploy:aws:SharedLoadBalancer")
    assert not result.of_type("rfs-deploy:aws:Routes")


# --------------------------------------------------------------------------- a program of your own

NETWORK = {
    "vpcId": "vpc-0c3d4e5f60718293a",
    "subnetIds": ["subnet-0c3d4e5f607180001", "subnet-0c3d4e5f607180002"],
}


def _service_config(priority: int, host: str) -> dict[str, Any]:
    return {
        "artifact": {"defaultAmi": "ami-0cc3300000000a100"},
        "instanceCount": 1,
        "routing": {"hosts": [host], "priority": priority},
    }


def own_program() -> None:
    from rfs_deploy.config.model import Network, SharedLoadBalancer

    network = Network.model_validate(NETWORK)
    edge = SharedAlb("edge", SharedAlbArgs(SharedLoadBalancer(), network, {"team": "own"}))
    release = ReleaseState.model_validate({"live": "blue", "blue": {"version": "v1", "capacity": 1}})
    for name, priority in (("one", 1), ("two", 2)):
        Service(
            name,
            ServiceArgs(
                config=_service_config(priority, f"{name}.example.com"),
                release=release,
                network=NETWORK,
                load_balancer_arn=edge.load_balancer.arn,
                load_balancer_dns_name=edge.load_balancer.dns_name,
                load_balancer_security_group_ids=[edge.security_group.id],
                listener_arn=edge.production.arn,
                test_listener_arn=edge.test.arn,
            ),
        )


def test_a_program_of_your_own_puts_services_behind_its_shared_load_balancer() -> None:
    result = run_program({}, stack="own", program=own_program)
    assert len(result.of_type(T_LB)) == 1
    listener = result.named("edge-listener", T_LISTENER).id
    for name, priority in (("one", 1), ("two", 2)):
        inputs = rule(result, f"{name}-rule")
        assert (inputs["priority"], inputs["listenerArn"]) == (priority * 10 + 9, listener)
        assert conditions(inputs) == {"hostHeader": {"values": [f"{name}.example.com"]}}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"routing": False, "listener_arn": True}, "ServiceArgs.listener_arn: only with config.routing"),
        ({"routing": True, "listener_arn": False}, "ServiceArgs.listener_arn: required with config.routing"),
    ],
    ids=["listeners-without-routing", "routing-without-listeners"],
)
def test_component_args_refuse_half_a_routing(given: dict[str, bool], message: str) -> None:
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012"
    listener = f"{arn}:listener/app/edge/0123456789abcdef/0123456789abcdef"
    config = _service_config(1, "one.example.com")
    if not given["routing"]:
        config.pop("routing")

    def program() -> None:
        Service(
            "one",
            ServiceArgs(
                config=config,
                release={"live": "blue", "blue": {"version": "v1", "capacity": 1}},
                network=NETWORK,
                load_balancer_arn=f"{arn}:loadbalancer/app/edge/0123456789abcdef",
                load_balancer_security_group_ids=["sg-0123456789abcdef0"],
                listener_arn=listener if given["listener_arn"] else None,
                test_listener_arn=listener,
            ),
        )

    with pytest.raises(ArgsError) as caught:
        run_program({}, stack="own", program=program)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f3c5a1e-8d2b-4c61-9a7e-3b5d2f4e6a10"
EXTRA = "arn:aws:acm:us-east-1:123456789012:certificate/9a7e3b5d-2f4e-4a10-8d2b-0f3c5a1e4c61"


def test_https_on_the_shared_load_balancer_is_every_services_protocol() -> None:
    ns = namespace()
    ns["loadBalancers"]["edge"] = {"https": {"certificateArn": CERT, "extraCertificateArns": [EXTRA]}}
    result = run(ns)
    listeners = {r.name: as_plain(r.inputs) for r in result.of_type(T_LISTENER)}
    assert set(listeners) == {"edge-listener", "edge-test-listener", "edge-redirect-listener"}
    for name, port in (("edge-listener", 443), ("edge-test-listener", 8443)):
        assert (listeners[name]["port"], listeners[name]["protocol"]) == (port, "HTTPS")
        assert listeners[name]["certificateArn"] == CERT
    (redirect,) = listeners["edge-redirect-listener"]["defaultActions"]
    assert (redirect["type"], redirect["redirect"]["port"]) == ("redirect", "443")
    certificates = result.of_type("aws:lb/listenerCertificate:ListenerCertificate")
    assert sorted(c.name for c in certificates) == ["edge-listener-cert-1", "edge-test-listener-cert-1"]
    for name in SERVICES:
        out = parse_outputs(result.outputs, name)
        assert (out.listener_protocol, out.listener_port, out.test_listener_port) == ("HTTPS", 443, 8443)
    ports = sorted(rule["fromPort"] for rule in as_plain(result.named("edge-alb-sg", T_SG).inputs["ingress"]))
    assert ports == [80, 443, 8443]


def test_the_shared_test_listener_admits_the_vpc_not_the_production_ingress(steady: ProgramRun) -> None:
    from rfs_deploy.sim.mockrun import AwsMocks

    by_port = {
        rule["fromPort"]: rule for rule in as_plain(steady.named("edge-alb-sg", T_SG).inputs["ingress"])
    }
    assert sorted(by_port) == [80, 8443]
    assert by_port[80]["cidrBlocks"] == ["0.0.0.0/0"]
    assert by_port[8443]["cidrBlocks"] == [AwsMocks.vpc_cidr]


def test_a_service_without_routing_keeps_its_own_load_balancer_beside_the_shared_one() -> None:
    ns = namespace()
    ns["services"]["solo"] = {"artifact": {"defaultAmi": "ami-0cc3300000000d100"}, "instanceCount": 1}
    ns["release"]["solo"] = {"live": "blue", "blue": {"version": "v1", "capacity": 1}}
    result = run(ns)
    assert sorted(r.name for r in result.of_type(T_LB)) == ["edge-alb", "solo-alb"]
    out = parse_outputs(result.outputs, "solo")
    assert out.rule_arn is None and out.traffic_arn == result.named("solo-listener", T_LISTENER).id
    (action,) = result.named("solo-listener", T_LISTENER).inputs["defaultActions"]
    assert action["type"] == "forward"
    assert not [r for r in result.of_type(T_RULE) if r.name.startswith("solo-")]
