"""Three services behind one load balancer in the sandbox (stacks/Pulumi.shared-alb.yaml): the rules
as moto holds them, the driver's read-back of a service's rule, requests routed by host and path,
and a canary of one service while the other two keep their weights on their rules."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from rfs_deploy.aws.elbv2 import Elbv2Traffic, listener_of_rule
from rfs_deploy.config.model import SLOTS, ReleaseState
from rfs_deploy.outputs import ServiceOutputs, parse_outputs

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "stacks" / "Pulumi.shared-alb.yaml"
SERVICES = ("api", "web", "search")
PRIORITY = {"api": 109, "web": 209, "search": 59}


def by_slot(weights: dict[str, int], out: ServiceOutputs) -> dict[str, int]:
    names = {out.slot(slot).target_group_arn: slot for slot in SLOTS}
    return {names[arn]: weight for arn, weight in weights.items() if weight > 0}


@pytest.fixture
def box(tmp_path: Path) -> Any:
    from rfs_deploy.sim.sandbox import Sandbox

    path = tmp_path / STACK.name
    shutil.copyfile(STACK, path)
    sandbox = Sandbox.open(path, scenario="healthy", start=1_800_000_000.0)
    try:
        sandbox.provision()
        yield sandbox
    finally:
        sandbox.close()


def outputs(box: Any) -> dict[str, ServiceOutputs]:
    return {name: parse_outputs(box.backend.outputs(), name) for name in SERVICES}


def test_moto_holds_one_alb_with_each_services_rules_and_their_weights(box: Any) -> None:
    outs = outputs(box)
    elbv2 = box.aws.raw("elbv2")
    assert len(elbv2.describe_load_balancers()["LoadBalancers"]) == 1
    assert len({out.load_balancer_arn for out in outs.values()}) == 1
    (production,) = {out.listener_arn for out in outs.values()}
    rules = {r["RuleArn"]: r for r in elbv2.describe_rules(ListenerArn=production)["Rules"]}
    default = next(r for r in rules.values() if r["IsDefault"])
    assert default["Actions"][0]["Type"] == "fixed-response"
    for name, out in outs.items():
        assert out.rule_arn is not None and listener_of_rule(out.rule_arn) == production
        rule = rules[out.rule_arn]
        assert int(rule["Priority"]) == PRIORITY[name]
        (forward,) = rule["Actions"]
        # moto keeps the weighted forward of a rule as it was given
        weights = {g["TargetGroupArn"]: g["Weight"] for g in forward["ForwardConfig"]["TargetGroups"]}
        assert weights == {out.slot("blue").target_group_arn: 100, out.slot("green").target_group_arn: 0}
        fields = {c["Field"] for c in rule["Conditions"]}
        assert fields == ({"host-header", "path-pattern"} if name == "search" else {"host-header"})


def test_the_driver_reads_a_services_rule_and_its_ab_rules_on_the_shared_listener(box: Any) -> None:
    release = dict(box.backend.read_config().release)
    release["search"] = ReleaseState.model_validate(
        {
            "live": "blue",
            "blue": {"version": "v5.0.0", "capacity": 2},
            "green": {"version": "v5.1.0", "capacity": 2},
            "weights": {"blue": 50, "green": 50},
            "stickiness": 600,
            "variants": {"header": "X-Experiment", "cookie": "experiment", "rulePriority": 10},
        }
    )
    # as the driver does: the release state written, then the update that applies it
    box.backend.write_release(release)
    box.backend.up("an A/B test of search")
    outs = outputs(box)
    traffic = Elbv2Traffic(box.aws.boto_session().client("elbv2"))
    search = outs["search"]
    assert search.rule_arn is not None and search.test_rule_arn is not None
    assert by_slot(traffic.forward_weights(search.traffic_arn), search) == {"blue": 50, "green": 50}
    assert traffic.stickiness(search.traffic_arn) == 600
    assert by_slot(traffic.forward_weights(search.test_traffic_arn), search) == {"green": 100}
    views = traffic.rules(search.traffic_arn)
    assert [v.priority for v in views] == [50, 51, 52, 53]
    assert [v.headers for v in views] == [
        (("X-Experiment", ("a",)),),
        (("X-Experiment", ("b",)),),
        (("Cookie", ("*experiment=a", "*experiment=a;*")),),
        (("Cookie", ("*experiment=b", "*experiment=b;*")),),
    ]
    assert [by_slot(v.forward, search) for v in views] == [{"blue": 100}, {"green": 100}] * 2
    for name in ("api", "web"):
        out = outs[name]
        assert traffic.rules(out.traffic_arn) == []
        assert by_slot(traffic.forward_weights(out.traffic_arn), out) == {"blue": 100}
        assert traffic.stickiness(out.traffic_arn) is None
    # the listener itself still answers what no rule matches
    assert traffic.forward_weights(search.listener_arn) == {}


def test_requests_reach_the_service_their_host_and_path_name(box: Any) -> None:
    from rfs_deploy.sim.http import _route, sandbox_transport

    outs = outputs(box)
    listener = outs["api"].listener_arn

    def routed(url: str, **headers: str) -> str | None:
        return _route(box.world, listener, httpx.Request("GET", url, headers=headers))

    blue = {name: out.slot("blue").target_group_arn for name, out in outs.items()}
    assert routed("http://api.example.com/v1/users") == blue["api"]
    assert routed("http://www.example.com/") == blue["web"]
    # /search* on example.com is search's (priority 5, first), the rest of example.com web's
    assert routed("http://example.com/search?q=x") == blue["search"]
    assert routed("http://example.com/searching") == blue["search"]
    assert routed("http://example.com/about") == blue["web"]
    assert routed("http://www.example.com/search") == blue["web"]
    # nothing matches the load balancer's own name: the listener's fixed 404, no target group
    assert routed(f"http://{outs['api'].dns_name}/version") is None
    with httpx.Client(transport=sandbox_transport(box.world)) as client:
        assert client.get(f"{outs['api'].url}/version").json() == {"version": "v1.0.0"}
        assert client.get("http://example.com/version").json() == {"version": "v3.0.0"}
        # the idle slot runs nothing yet: the test listener's rule reaches it, with no target
        idle = client.get(f"{outs['api'].test_url}/health")
        assert (idle.status_code, idle.json()) == (503, {"error": "no healthy target"})
        # a request no service's rule matches gets the shared listener's fixed 404
        stray = client.get(f"http://{outs['api'].dns_name}/version")
        assert (stray.status_code, stray.text) == (404, "no service here")


def test_a_canary_of_one_service_moves_its_rule_while_the_others_keep_their_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rfs_deploy.connect import open_seams
    from rfs_deploy.drive import events
    from rfs_deploy.drive.driver import Driver

    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    shutil.copyfile(REPO / "Pulumi.yaml", project / "Pulumi.yaml")
    shutil.copyfile(STACK, project / "stacks" / STACK.name)
    monkeypatch.setenv("RFS_DEPLOY_PROJECT", str(project))
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    seams = open_seams("shared-alb", backend="sim", fresh=True)
    seen: list[dict[str, dict[str, int]]] = []

    def watch(event: Any) -> None:
        if isinstance(event, events.StepFinished):
            outs = {name: parse_outputs(seams.backend.outputs(), name) for name in SERVICES}
            seen.append(
                {name: by_slot(seams.traffic.forward_weights(o.traffic_arn), o) for name, o in outs.items()}
            )

    seams.listeners.append(watch)
    try:
        record = asyncio.run(Driver(seams).deploy("api", "v1.1.0", "canary"))
        final = {name: parse_outputs(seams.backend.outputs(), name) for name in SERVICES}
        rules = seams.traffic.rules(final["api"].listener_arn)
    finally:
        seams.close()
    assert record.status.value == "COMPLETED", record.errors
    api_weights = [step["api"] for step in seen]
    assert {"blue": 90, "green": 10} in api_weights and {"blue": 50, "green": 50} in api_weights
    assert api_weights[-1] == {"green": 100}
    for step in seen:
        assert step["web"] == step["search"] == {"blue": 100}
    # one rule per service on the shared production listener, at the priorities it started with
    assert sorted(view.priority for view in rules) == sorted(PRIORITY.values())
