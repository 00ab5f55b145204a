"""Invalid stack config stops everything with one line naming the key and the reason (SPEC P1).

Each case starts from the production stack's ``rfs-deploy`` namespace, breaks one thing, and
expects the exact key and a reason fragment. The same messages reach a ``pulumi up`` user: the
program turns them into ``pulumi.RunError`` (checked under the mock runtime at the end).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from rfs_deploy.config import load_stack_config, load_stack_file, read_namespace
from rfs_deploy.errors import ConfigError, InvalidInput
from rfs_deploy.sim.mockrun import run_program

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "stacks" / "Pulumi.production.yaml"
BASE = read_namespace(PRODUCTION)

Namespace = dict[str, Any]


def svc(ns: Namespace) -> dict[str, Any]:
    return ns["services"]["api-service"]


def rel(ns: Namespace) -> dict[str, Any]:
    return ns["release"]["api-service"]


def rename_service(ns: Namespace, new: str) -> None:
    ns["services"][new] = ns["services"].pop("api-service")
    ns["release"][new] = ns["release"].pop("api-service")


#: (id, how to break the config, the key named, a fragment of the reason)
CASES: list[tuple[str, Callable[[Namespace], Any], str, str]] = [
    # traffic weights
    ("weight above 100", lambda ns: rel(ns).update(weights={"blue": 0, "green": 101}),
     "release.api-service.weights.green", "less than or equal to 100"),
    ("negative weight", lambda ns: rel(ns).update(weights={"blue": -30, "green": 130}),
     "release.api-service.weights.blue", "greater than or equal to 0"),
    ("weights not summing to 100",
     lambda ns: rel(ns).update(weights={"blue": 70, "green": 20}, green={"version": "v2.0.0", "capacity": 1}),
     "release.api-service", "weights must sum to 100, not 90"),
    ("weights naming one slot", lambda ns: rel(ns).update(weights={"blue": 100}),
     "release.api-service", "weights must name both blue and green"),
    ("weight on a slot without capacity", lambda ns: rel(ns).update(weights={"blue": 50, "green": 50}),
     "release.api-service", "slot green has weight 50 but no capacity"),
    ("live slot without capacity", lambda ns: rel(ns).update(blue={"version": "v1.0.0", "capacity": 0}),
     "release.api-service", "no capacity"),
    ("unknown live slot", lambda ns: rel(ns).update(live="purple"),
     "release.api-service.live", "'blue' or 'green'"),
    ("stickiness of 0", lambda ns: rel(ns).update(stickiness=0),
     "release.api-service.stickiness", "greater than or equal to 1"),
    # strategies
    ("unknown strategy", lambda ns: svc(ns).update(strategy={"type": "linear"}),
     "services.api-service.strategy", "unknown strategy 'linear'; use one of 'blue-green', 'canary'"),
    ("canary increment of 0", lambda ns: svc(ns)["strategy"].update(canaryIncrement=0),
     "services.api-service.strategy.canaryIncrement", "greater than or equal to 1"),
    ("canary steps descending", lambda ns: svc(ns)["strategy"].update(steps=[50, 20]),
     "services.api-service.strategy.steps", "strictly ascending"),
    ("rolling batch of 0", lambda ns: svc(ns).update(strategy={"type": "rolling", "batchSize": 0}),
     "services.api-service.strategy.batchSize", "greater than or equal to 1"),
    ("a/b split of 100", lambda ns: svc(ns).update(strategy={"type": "ab-test", "split": 100}),
     "services.api-service.strategy.split", "less than or equal to 99"),
    # versions and images
    ("release version with no image", lambda ns: rel(ns).update(green={"version": "v9.9.9", "capacity": 2}),
     "release.api-service.green.version", "version 'v9.9.9' has no image: add it to services.api-service"),
    ("capacity without a version", lambda ns: rel(ns).update(green={"capacity": 2}),
     "release.api-service.green", "a slot with capacity needs a version"),
    ("artifact without any image", lambda ns: svc(ns).update(artifact={"userData": "x"}),
     "services.api-service.artifact", "give amis (one per version), defaultAmi or lookupTag"),
    ("malformed AMI id", lambda ns: svc(ns)["artifact"]["amis"].update({"v3": "ami-XYZ"}),
     "services.api-service.artifact.amis.v3", "is not an AMI id"),
    ("user data with another placeholder", lambda ns: svc(ns)["artifact"].update(userData="echo ${foo}"),
     "services.api-service.artifact", "userData may only use ${version}"),
    # misspelt keys
    ("misspelt service key", lambda ns: svc(ns).update(instanceCont=3),
     "services.api-service.instanceCont", "unknown key; did you mean 'instanceCount'?"),
    ("misspelt top-level key", lambda ns: ns.update(servics=ns["services"]),
     "servics", "unknown key; did you mean 'services'?"),
    ("misspelt strategy key", lambda ns: svc(ns)["strategy"].update(canaryIntervall=30),
     "services.api-service.strategy.canaryIntervall", "did you mean 'canaryInterval'?"),
    ("misspelt release key", lambda ns: rel(ns).update(wieghts={"blue": 100, "green": 0}),
     "release.api-service.wieghts", "did you mean 'weights'?"),
    ("misspelt health check key", lambda ns: svc(ns).update(healthCheck={"pathh": "/x"}),
     "services.api-service.healthCheck.pathh", "did you mean 'path'?"),
    # services and release state
    ("release for an unknown service", lambda ns: ns["release"].update(other=copy.deepcopy(rel(ns))),
     "release.other", "names no service in services"),
    ("service without a release state", lambda ns: ns["services"].update(other=copy.deepcopy(svc(ns))),
     "release.other", "every service needs a release state"),
    ("service name too long", lambda ns: rename_service(ns, "a" * 16),
     "services", "must be 1-15 characters"),
    ("service name with capitals", lambda ns: rename_service(ns, "Api"),
     "services", "starting with a letter"),
    # service settings
    ("same port for both listeners", lambda ns: svc(ns).update(listenerPort=8443),
     "services.api-service", "listenerPort and testListenerPort must differ"),
    ("health check timeout not below interval",
     lambda ns: svc(ns).update(healthCheck={"interval": 10, "timeout": 10}),
     "services.api-service.healthCheck", "timeout must be shorter than interval"),
    ("error rate above 1", lambda ns: svc(ns).update(analysis={"maxErrorRate": 2}),
     "services.api-service.analysis.maxErrorRate", "less than or equal to 1"),
    ("instance count of 0", lambda ns: svc(ns).update(instanceCount=0),
     "services.api-service.instanceCount", "greater than or equal to 1"),
    # network
    ("malformed VPC id", lambda ns: ns["network"].update(vpcId="vpc-XYZ"),
     "network.vpcId", "should match pattern"),
    ("a single subnet", lambda ns: ns["network"].update(subnetIds=["subnet-0a1b"]),
     "network.subnetIds", "at least 2 items"),
    ("ingress that is not a CIDR block", lambda ns: ns["network"].update(ingressCidrs=["everyone"]),
     "network.ingressCidrs", "'everyone' is not a CIDR block"),
    ("ingress with host bits", lambda ns: ns["network"].update(ingressCidrs=["10.0.0.1/8"]),
     "network.ingressCidrs", "has host bits set"),
    ("network that is not JSON", lambda ns: ns.update(network='{"vpcId": '), "network", "not valid JSON"),
]  # fmt: skip


def broken(mutate: Callable[[Namespace], Any]) -> Namespace:
    ns = copy.deepcopy(BASE)
    mutate(ns)
    return ns


@pytest.mark.parametrize(("mutate", "key", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_line_naming_key_and_reason(mutate: Callable[[Namespace], Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_stack_config(broken(mutate))
    err = caught.value
    message = str(err)
    assert "\n" not in message
    assert err.key == f"rfs-deploy:{key}"
    assert message.startswith(f"config rfs-deploy:{key}: ")
    assert reason in err.reason
    assert isinstance(err, InvalidInput) and err.exit_code == 2


def test_several_problems_are_counted_on_the_same_line() -> None:
    ns = broken(lambda ns: (svc(ns).update(instanceCount=0), ns["network"].update(vpcId="vpc-XYZ")))
    with pytest.raises(ConfigError, match=r"\(\+1 more\)$"):
        load_stack_config(ns)


@pytest.mark.parametrize("path", sorted((REPO / "stacks").glob("Pulumi.*.yaml")), ids=lambda p: p.name)
def test_every_stack_file_is_valid(path: Path) -> None:
    assert load_stack_file(path).services


def test_an_unreadable_stack_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_stack_file(bad)
    assert "is not valid YAML" in str(caught.value) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------- through the program

PROGRAM_CASES = [c for c in CASES if c[0] in {
    "weights not summing to 100", "unknown strategy", "canary increment of 0",
    "release version with no image", "misspelt service key", "network that is not JSON",
}]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "key", "reason"), [c[1:] for c in PROGRAM_CASES], ids=[c[0] for c in PROGRAM_CASES]
)
def test_the_program_stops_with_a_run_error_carrying_the_line(
    mutate: Callable[[Namespace], Any], key: str, reason: str
) -> None:
    ns = broken(mutate)
    with pytest.raises(ConfigError) as expected:
        load_stack_config(ns)
    with pytest.raises(pulumi.RunError) as caught:
        run_program(ns, stack="production")
    assert str(caught.value) == str(expected.value)
    assert str(caught.value).startswith(f"config rfs-deploy:{key}: ")
    assert reason in str(caught.value)


def test_a_bad_config_registers_no_resource() -> None:
    from rfs_deploy.sim.mockrun import AwsMocks

    class Counting(AwsMocks):
        calls = 0

        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
            Counting.calls += 1
            return super().new_resource(args)

    with pytest.raises(pulumi.RunError):
        run_program(broken(lambda ns: svc(ns).update(strategy={"type": "linear"})), mocks=Counting())
    assert Counting.calls == 0
