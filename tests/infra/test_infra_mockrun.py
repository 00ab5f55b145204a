"""The mock-runtime harness: isolation between runs, the caller's mocks hook, errors, entry points."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pulumi
import pytest
from infra_helpers import PRODUCTION, REPO, STACK_FILES, T_ASG, T_LT, T_TG

from rfs_deploy.config import read_namespace
from rfs_deploy.sim.mockrun import AwsMocks, ProgramRun, main_file_program, run_program, run_stack_file


def graph(run: ProgramRun) -> list[tuple[str, str, str, Any]]:
    return sorted((r.urn, r.id, str(r.parent), repr(sorted(r.inputs.items()))) for r in run.resources)


def test_runs_are_repeatable_and_isolated() -> None:
    first = run_stack_file(PRODUCTION)
    other = run_stack_file(REPO / "stacks" / "Pulumi.platform.yaml")
    again = run_stack_file(PRODUCTION)
    assert graph(first) == graph(again)
    assert first.outputs == again.outputs
    assert {r.urn.split("::")[0] for r in other.resources} == {"urn:pulumi:platform"}
    assert set(other.outputs["services"]) == {"api-service", "checkout", "search", "recommender"}
    assert set(again.outputs["services"]) == {"api-service"}


def test_urns_parents_and_names() -> None:
    run = run_stack_file(PRODUCTION)
    service = run.named("api-service", "rfs-deploy:aws:Service")
    assert service.urn == "urn:pulumi:production::rfs-deploy::rfs-deploy:aws:Service::api-service"
    assert service.parent == "urn:pulumi:production::rfs-deploy::pulumi:pulumi:Stack::rfs-deploy-production"
    tg = run.named("api-service-tg-blue")
    assert tg.urn.endswith(
        "rfs-deploy:aws:Service$rfs-deploy:aws:Slot$aws:lb/targetGroup:TargetGroup::api-service-tg-blue"
    )
    assert tg.parent == run.named("api-service-blue").urn
    assert not service.custom and tg.custom


def test_default_mocks_answer_like_aws() -> None:
    run = run_stack_file(PRODUCTION)
    tg = run.named("api-service-tg-blue").outputs
    assert tg["name"].startswith("api-service-tg-blue-") and len(tg["name"]) <= 32
    assert tg["arnSuffix"] == f"targetgroup/{tg['name']}/{tg['arn'].rsplit('/', 1)[1]}"
    assert tg["arn"] == f"arn:aws:elasticloadbalancing:us-east-1:123456789012:{tg['arnSuffix']}"
    lb = run.named("api-service-alb").outputs
    assert lb["arnSuffix"].startswith(f"app/{lb['name']}/")
    assert lb["dnsName"].endswith(".us-east-1.elb.amazonaws.com")
    listener = run.named("api-service-listener").outputs
    assert listener["arn"].startswith(lb["arn"].replace(":loadbalancer/", ":listener/") + "/")
    assert run.named("api-service-lt-blue").id.startswith("lt-")
    assert run.named("api-service-alb-sg").id.startswith("sg-")


class RecordingMocks(AwsMocks):
    """A caller's hook: records what it is asked and stamps its own ARNs on target groups."""

    def __init__(self) -> None:
        super().__init__(region="eu-west-1", account_id="999988887777")
        self.seen: list[pulumi.runtime.MockResourceArgs] = []
        self.active = 0
        self.overlapped = False

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.active += 1
        self.overlapped |= self.active > 1
        try:
            self.seen.append(args)
            resource_id, state = super().new_resource(args)
            if args.typ == T_TG:
                state = {**state, "arn": f"{state['arn']}-custom"}
                resource_id = state["arn"]
            return resource_id, state
        finally:
            self.active -= 1


def test_caller_mocks_see_custom_resources_in_dependency_order() -> None:
    mocks = RecordingMocks()
    run = run_stack_file(PRODUCTION, mocks=mocks)
    assert [a.name for a in mocks.seen] == [r.name for r in run.resources if r.custom]
    assert not mocks.overlapped
    assert all(a.custom for a in mocks.seen)
    order = [a.name for a in mocks.seen]
    for slot in ("blue", "green"):
        asg = order.index(f"api-service-asg-{slot}")
        assert order.index(f"api-service-tg-{slot}") < asg and order.index(f"api-service-lt-{slot}") < asg
    lt = next(a for a in mocks.seen if a.typ == T_LT)
    assert {"imageId", "instanceType", "vpcSecurityGroupIds"} <= set(lt.inputs)
    asg = next(a for a in mocks.seen if a.typ == T_ASG)
    assert isinstance(asg.inputs["desiredCapacity"], float)
    # What the hook returns is what the program reads: the outputs carry the hook's ARNs.
    blue = run.outputs["services"]["api-service"]["slots"]["blue"]
    assert blue["targetGroupArn"].endswith("-custom") and ":eu-west-1:999988887777:" in blue["targetGroupArn"]
    assert run.named("api-service-asg-blue").inputs["targetGroupArns"] == [blue["targetGroupArn"]]


def test_program_errors_propagate_unchanged() -> None:
    def broken() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_program(read_namespace(PRODUCTION), program=broken)
    # and the next run is unaffected
    assert run_stack_file(PRODUCTION).outputs["services"]


def test_main_file_is_the_same_program() -> None:
    via_main = run_stack_file(PRODUCTION, program=main_file_program(REPO / "__main__.py"))
    assert graph(via_main) == graph(run_stack_file(PRODUCTION))


def test_runs_from_inside_an_event_loop_and_from_several_threads() -> None:
    async def inside() -> ProgramRun:
        return run_stack_file(PRODUCTION)

    assert asyncio.run(inside()).outputs["services"]

    results: dict[str, ProgramRun] = {}

    def worker(path: Any) -> None:
        results[path.name] = run_stack_file(path)

    threads = [threading.Thread(target=worker, args=(p,)) for p in STACK_FILES[:3]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for path in STACK_FILES[:3]:
        assert set(results[path.name].outputs["services"]) == set(read_namespace(path)["services"])


def test_preview_runs_the_same_program() -> None:
    run = run_stack_file(PRODUCTION, preview=True)
    assert len(run.resources) == len(run_stack_file(PRODUCTION).resources)


def test_config_values_may_be_json_strings() -> None:
    import json

    namespace = {key: json.dumps(value) for key, value in read_namespace(PRODUCTION).items()}
    assert graph(run_program(namespace, stack="production")) == graph(run_stack_file(PRODUCTION))


def test_a_failing_hook_fails_the_run_with_its_own_error() -> None:
    class Refusing(AwsMocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
            if args.typ == T_ASG:
                raise LookupError("the simulated account has no capacity")
            return super().new_resource(args)

    with pytest.raises(LookupError, match="no capacity"):
        run_stack_file(PRODUCTION, mocks=Refusing())
    assert run_stack_file(PRODUCTION).outputs["services"]


def test_a_stack_without_a_network_loads_but_the_shipped_program_refuses_it_with_one_line() -> None:
    # rfs-deploy:network is optional for the driver (a program of your own brings its network);
    # the shipped program needs it and says so in one line
    from rfs_deploy.config import load_stack_config

    namespace = read_namespace(PRODUCTION)
    del namespace["network"]
    assert load_stack_config(namespace).network is None
    with pytest.raises(pulumi.RunError) as caught:
        run_program(namespace)
    assert str(caught.value) == (
        "config rfs-deploy:network: missing: the shipped program puts every service in this VPC"
    )
