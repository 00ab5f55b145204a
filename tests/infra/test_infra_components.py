"""The components used from a program of your own, under Pulumi's mock runtime.

Each test runs a small program (the way a user composes ``Service`` with their own resources)
through :func:`rfs_deploy.sim.mockrun.run_program` and checks the registered resources: Outputs
and StackReference outputs as inputs, an existing load balancer and security groups, the
instance profile, tags, one-line errors for bad plain values, and the config and release state
given as models or as the stack file's mappings. The own-program example runs here too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest
from infra_helpers import REPO, T_ALARM, T_LB, T_LISTENER, T_SG, ServiceView, as_plain

from rfs_deploy.config import ReleaseState, ServiceConfig
from rfs_deploy.config.loading import read_namespace, read_other_config
from rfs_deploy.infra import ArgsError, Service, ServiceArgs, export_services, read_services
from rfs_deploy.outputs import OUTPUT_NAME, parse_service_outputs
from rfs_deploy.releases import RELEASE_OUTPUT
from rfs_deploy.sim.mockrun import AwsMocks, ProgramRun, main_file_program, run_program

EXAMPLE = REPO / "examples" / "own-program"

SERVICE: dict[str, Any] = {
    "artifact": {"amis": {"v1.0.0": "ami-0aa1100000000a100", "v1.1.0": "ami-0aa1100000000a110"}},
    "instanceType": "t3.micro",
    "appPort": 8080,
    "instanceCount": 2,
    "strategy": {"type": "canary", "steps": [20, 50]},
}
RELEASE: dict[str, Any] = {
    "live": "blue",
    "blue": {"version": "v1.0.0", "capacity": 2},
    "green": {"capacity": 0},
    "weights": {"blue": 100, "green": 0},
}
CANARY_STEP: dict[str, Any] = {
    "live": "blue",
    "blue": {"version": "v1.0.0", "capacity": 2},
    "green": {"version": "v1.1.0", "capacity": 2},
    "weights": {"blue": 80, "green": 20},
}
LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/shared-alb/50dc6c495c0c9188"
ALB_SG = "sg-0123456789abcdef0"
INSTANCE_SG = "sg-0fedcba9876543210"
NETWORK_OUTPUTS = {
    "vpcId": "vpc-0aaa1111bbbb22223",
    "subnetIds": ["subnet-0aaa1111bbbb00001", "subnet-0aaa1111bbbb00002"],
}


class NetworkStackMocks(AwsMocks):
    """AwsMocks that also answer a StackReference to the network stack with its outputs."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":
            return args.name, {**args.inputs, "outputs": NETWORK_OUTPUTS}
        return super().new_resource(args)


def own_vpc() -> tuple[aws.ec2.Vpc, list[aws.ec2.Subnet]]:
    vpc = aws.ec2.Vpc("app-vpc", cidr_block="10.20.0.0/16")
    subnets = [
        aws.ec2.Subnet(
            f"app-{z}", vpc_id=vpc.id, cidr_block=f"10.20.{i}.0/24", availability_zone=f"us-east-1{z}"
        )
        for i, z in enumerate("ab")
    ]
    return vpc, subnets


def run(body: Callable[[], None], **kwargs: Any) -> ProgramRun:
    """Evaluate ``body`` as the whole program (no rfs-deploy stack config unless given)."""
    namespace = kwargs.pop("namespace", {})
    return run_program(namespace, stack="dev", program=body, **kwargs)


def on_own_vpc(**extra: Any) -> Callable[[], None]:
    """A program: a VPC and two subnets of its own, and service ``web`` on them."""

    def program() -> None:
        vpc, subnets = own_vpc()
        args = {"config": SERVICE, "release": RELEASE, **extra}
        service = Service("web", ServiceArgs(vpc_id=vpc.id, subnet_ids=[s.id for s in subnets], **args))
        pulumi.export(OUTPUT_NAME, {"web": service.outputs})

    return program


def outputs_of(result: ProgramRun) -> Any:
    return parse_service_outputs(result.outputs[OUTPUT_NAME]["web"])


# --------------------------------------------------------------------------- Inputs


def test_outputs_of_resources_in_the_same_program_reach_every_resource() -> None:
    result = run(on_own_vpc())
    web = ServiceView(result, "web")
    vpc_id = result.named("app-vpc").id
    subnet_ids = [result.named("app-a").id, result.named("app-b").id]
    assert vpc_id.startswith("vpc-") and all(s.startswith("subnet-") for s in subnet_ids)
    assert web.alb_sg.inputs["vpcId"] == vpc_id
    assert web.instance_sg.inputs["vpcId"] == vpc_id
    assert web.tg("blue").inputs["vpcId"] == web.tg("green").inputs["vpcId"] == vpc_id
    assert web.load_balancer.inputs["subnets"] == subnet_ids
    assert web.asg("blue").inputs["vpcZoneIdentifiers"] == subnet_ids
    assert web.asg("green").inputs["vpcZoneIdentifiers"] == subnet_ids
    # the component waits for the network: its resources depend on the VPC's and subnets' URNs
    assert result.named("app-vpc").urn in web.tg("blue").dependencies
    assert result.named("app-a").urn in web.load_balancer.dependencies


def test_stack_reference_outputs_are_inputs_as_they_are() -> None:
    def program() -> None:
        network = pulumi.StackReference("acme/network/prod")
        args = ServiceArgs(
            config=SERVICE,
            release=RELEASE,
            vpc_id=network.require_output("vpcId"),
            subnet_ids=network.require_output("subnetIds"),
        )
        service = Service("web", args)
        pulumi.export(OUTPUT_NAME, {"web": service.outputs})

    web = ServiceView(run(program, mocks=NetworkStackMocks()), "web")
    assert web.tg("blue").inputs["vpcId"] == NETWORK_OUTPUTS["vpcId"]
    assert web.alb_sg.inputs["vpcId"] == NETWORK_OUTPUTS["vpcId"]
    assert web.load_balancer.inputs["subnets"] == NETWORK_OUTPUTS["subnetIds"]
    assert web.asg("green").inputs["vpcZoneIdentifiers"] == NETWORK_OUTPUTS["subnetIds"]


def test_instance_subnets_given_apart_from_the_load_balancers() -> None:
    def program() -> None:
        vpc, subnets = own_vpc()
        private = aws.ec2.Subnet("private-a", vpc_id=vpc.id, cidr_block="10.20.10.0/24")
        Service(
            "web",
            ServiceArgs(
                config=SERVICE,
                release=RELEASE,
                vpc_id=vpc.id,
                subnet_ids=[s.id for s in subnets],
                instance_subnet_ids=[private.id],
            ),
        )

    result = run(program)
    web = ServiceView(result, "web")
    assert web.asg("blue").inputs["vpcZoneIdentifiers"] == [result.named("private-a").id]
    assert web.load_balancer.inputs["subnets"] == [result.named("app-a").id, result.named("app-b").id]


# --------------------------------------------------------------------------- existing resources


def test_an_existing_load_balancer_gets_the_listeners_and_no_load_balancer_is_created() -> None:
    result = run(on_own_vpc(load_balancer_arn=LB_ARN, load_balancer_security_group_ids=[ALB_SG]))
    web = ServiceView(result, "web")
    assert result.of_type(T_LB) == []
    assert [sg.name for sg in result.of_type(T_SG)] == ["web-instance-sg"]
    # both listeners on the given load balancer; the weighted forward on the production one
    assert {r.name: r.inputs["loadBalancerArn"] for r in result.of_type(T_LISTENER)} == {
        "web-listener": LB_ARN,
        "web-test-listener": LB_ARN,
    }
    weights = web.forward_weights()
    assert as_plain(weights) == {web.tg("blue").outputs["arn"]: 100, web.tg("green").outputs["arn"]: 0}
    # the instances admit the app port from the load balancer's given group
    (rule,) = web.instance_sg.inputs["ingress"]
    assert rule["securityGroups"] == [ALB_SG] and as_plain(rule["fromPort"]) == 8080
    # the alarms' LoadBalancer dimension is the given ARN's suffix
    suffix = "app/shared-alb/50dc6c495c0c9188"
    alarm = web.alarm("5xx", "blue")
    dims = alarm.inputs.get("dimensions") or alarm.inputs["metricQueries"][0]["metric"]["dimensions"]
    assert dims["LoadBalancer"] == suffix
    out = outputs_of(result)
    assert out.load_balancer_arn == LB_ARN
    assert out.load_balancer_dimension == suffix
    assert out.dns_name.startswith("shared-alb-") and out.dns_name.endswith(".us-east-1.elb.amazonaws.com")


def test_an_existing_load_balancer_keeps_a_canary_step_on_its_listener() -> None:
    result = run(
        on_own_vpc(
            release=CANARY_STEP,
            load_balancer_arn=LB_ARN,
            load_balancer_dns_name="shared.example.internal",
            load_balancer_security_group_ids=[ALB_SG],
        )
    )
    web = ServiceView(result, "web")
    assert as_plain(web.forward_weights()) == {
        web.tg("blue").outputs["arn"]: 80,
        web.tg("green").outputs["arn"]: 20,
    }
    (action,) = web.test_listener.inputs["defaultActions"]
    assert action["targetGroupArn"] == web.tg("green").outputs["arn"]
    assert outputs_of(result).dns_name == "shared.example.internal"


def test_existing_security_groups_replace_the_created_ones() -> None:
    result = run(
        on_own_vpc(load_balancer_security_group_ids=[ALB_SG], instance_security_group_ids=[INSTANCE_SG])
    )
    web = ServiceView(result, "web")
    assert result.of_type(T_SG) == []
    assert web.load_balancer.inputs["securityGroups"] == [ALB_SG]
    assert web.lt("blue").inputs["vpcSecurityGroupIds"] == [INSTANCE_SG]
    assert web.lt("green").inputs["vpcSecurityGroupIds"] == [INSTANCE_SG]


def test_existing_instance_groups_alone_keep_the_load_balancers_own_group() -> None:
    result = run(on_own_vpc(instance_security_group_ids=[INSTANCE_SG]))
    web = ServiceView(result, "web")
    assert [sg.name for sg in result.of_type(T_SG)] == ["web-alb-sg"]
    assert web.load_balancer.inputs["securityGroups"] == [web.alb_sg.id]
    assert web.lt("blue").inputs["vpcSecurityGroupIds"] == [INSTANCE_SG]


def test_existing_load_balancer_groups_alone_are_admitted_by_a_created_instance_group() -> None:
    result = run(on_own_vpc(load_balancer_security_group_ids=[ALB_SG]))
    web = ServiceView(result, "web")
    assert [sg.name for sg in result.of_type(T_SG)] == ["web-instance-sg"]
    assert web.load_balancer.inputs["securityGroups"] == [ALB_SG]
    assert web.instance_sg.inputs["ingress"][0]["securityGroups"] == [ALB_SG]
    assert web.lt("blue").inputs["vpcSecurityGroupIds"] == [web.instance_sg.id]


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("app-instances", {"name": "app-instances"}),
        (
            "arn:aws:iam::123456789012:instance-profile/app-instances",
            {"arn": "arn:aws:iam::123456789012:instance-profile/app-instances"},
        ),
    ],
)
def test_the_instance_profile_is_on_both_launch_templates(profile: str, expected: dict[str, str]) -> None:
    web = ServiceView(run(on_own_vpc(instance_profile=profile)), "web")
    for slot in ("blue", "green"):
        given = {k: v for k, v in web.lt(slot).inputs["iamInstanceProfile"].items() if v is not None}
        assert given == expected


def test_an_instance_profile_from_another_resource() -> None:
    def program() -> None:
        vpc, subnets = own_vpc()
        role = aws.iam.Role("app", assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": []}))
        profile = aws.iam.InstanceProfile("app", role=role.name)
        args = ServiceArgs(
            config=SERVICE,
            release=RELEASE,
            vpc_id=vpc.id,
            subnet_ids=[s.id for s in subnets],
            instance_profile=profile.arn,
        )
        Service("web", args)

    result = run(program)
    profile_arn = result.named("app", "aws:iam/instanceProfile:InstanceProfile").outputs["arn"]
    template = ServiceView(result, "web").lt("blue").inputs["iamInstanceProfile"]
    # an ARN goes to the arn field (the name field stays unset)
    assert template["arn"] == profile_arn and not template.get("name")


def test_without_an_instance_profile_the_launch_template_has_none() -> None:
    web = ServiceView(run(on_own_vpc()), "web")
    assert "iamInstanceProfile" not in web.lt("blue").inputs


def test_tags_reach_every_resource_with_rfs_deploys_own() -> None:
    result = run(on_own_vpc(tags={"team": "web", "cost-center": "4711"}))
    web = ServiceView(result, "web")
    for resource in (web.load_balancer, web.alb_sg, web.tg("blue"), web.listener, web.alarm("cpu", "green")):
        tags = resource.inputs["tags"]
        assert tags["team"] == "web" and tags["cost-center"] == "4711", resource.name
        assert tags["rfs-deploy:service"] == "web" and tags["rfs-deploy:stack"] == "dev"
    asg_tags = {t["key"]: t["value"] for t in web.asg("blue").inputs["tags"]}
    assert asg_tags["team"] == "web" and asg_tags["rfs-deploy:slot"] == "blue"


# --------------------------------------------------------------------------- config and release


def test_models_and_mappings_build_the_same_resources() -> None:
    from_mappings = run(on_own_vpc(release=CANARY_STEP))
    models = {
        "config": ServiceConfig.model_validate(SERVICE),
        "release": ReleaseState.model_validate(CANARY_STEP),
    }
    from_models = run(on_own_vpc(**models))
    assert [(r.urn, dict(r.inputs)) for r in from_mappings.resources] == [
        (r.urn, dict(r.inputs)) for r in from_models.resources
    ]
    web = ServiceView(from_models, "web")
    assert web.lt("green").inputs["imageId"] == "ami-0aa1100000000a110"


def failure(program: Callable[[], None]) -> str:
    with pytest.raises(pulumi.RunError) as caught:
        run(program)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"config": {**SERVICE, "instanceCount": 0}},
            "config rfs-deploy:services.web.instanceCount: Input should be greater than or equal to 1",
        ),
        ({"config": {**SERVICE, "appPortt": 80}}, "config rfs-deploy:services.web.appPortt: unknown key"),
        ({"config": "web"}, "ServiceArgs.config: must be a ServiceConfig"),
        ({"release": {**RELEASE, "live": "red"}}, "config rfs-deploy:release.web.live:"),
        (
            {"release": {**CANARY_STEP, "green": {"version": "v9.9.9", "capacity": 2}}},
            "config rfs-deploy:release.web.green.version: version 'v9.9.9' has no image",
        ),
        ({"vpc_id": "my-vpc"}, "ServiceArgs.vpc_id: 'my-vpc' is not a VPC id (vpc-...)"),
        (
            {"subnet_ids": ["subnet-0aaa1111bbbb00001"]},
            "ServiceArgs.subnet_ids: needs at least 2 subnet ids, got 1",
        ),
        ({"subnet_ids": "subnet-0aaa1111bbbb00001"}, "ServiceArgs.subnet_ids: must be a list of subnet ids"),
        (
            {"subnet_ids": ["subnet-0aaa1111bbbb00001", "subnet-x"]},
            "ServiceArgs.subnet_ids[1]: 'subnet-x' is not subnet id",
        ),
        ({"network": {"ingressCidrs": ["10.0.0.0/33"]}}, "ServiceArgs.network.ingressCidrs"),
        (
            {"load_balancer_arn": "shared-alb"},
            "ServiceArgs.load_balancer_arn: 'shared-alb' is not an Application",
        ),
        ({"load_balancer_arn": LB_ARN}, "ServiceArgs.load_balancer_security_group_ids: required with"),
        (
            {"instance_security_group_ids": ["web"]},
            "ServiceArgs.instance_security_group_ids[0]: 'web' is not",
        ),
        ({"instance_profile": "no spaces allowed"}, "ServiceArgs.instance_profile:"),
        ({"tags": {"team": 7}}, "ServiceArgs.tags.team: a tag value is a string"),
    ],
)
def test_a_bad_plain_value_is_one_line_naming_the_field(extra: dict[str, Any], expected: str) -> None:
    def program() -> None:
        args: dict[str, Any] = {
            "config": SERVICE,
            "release": RELEASE,
            "vpc_id": NETWORK_OUTPUTS["vpcId"],
            "subnet_ids": NETWORK_OUTPUTS["subnetIds"],
            **extra,
        }
        Service("web", ServiceArgs(**args))

    assert expected in failure(program)


def test_a_bad_value_registers_nothing_of_the_service() -> None:
    registered: list[str] = []

    class Recording(AwsMocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
            registered.append(args.name)
            return super().new_resource(args)

    def program() -> None:
        vpc, _ = own_vpc()
        Service("web", ServiceArgs(config={**SERVICE, "instanceCount": 0}, release=RELEASE, vpc_id=vpc.id))

    with pytest.raises(pulumi.RunError):
        run(program, mocks=Recording())
    assert not any(name.startswith("web") for name in registered)


def test_missing_network_and_bad_names_are_one_line() -> None:
    def no_network() -> None:
        Service("web", ServiceArgs(config=SERVICE, release=RELEASE))

    def bad_name() -> None:
        Service("Web_1", ServiceArgs(config=SERVICE, release=RELEASE, network=NETWORK_OUTPUTS))

    assert failure(no_network).startswith("ServiceArgs.vpc_id: required")
    assert failure(bad_name).startswith("Service name 'Web_1' must be")
    assert issubclass(ArgsError, pulumi.RunError)


def test_a_network_mapping_carries_ids_and_settings() -> None:
    def program() -> None:
        network = {**NETWORK_OUTPUTS, "internal": True, "ingressCidrs": ["10.0.0.0/8"]}
        Service("web", ServiceArgs(config=SERVICE, release=RELEASE, network=network))

    web = ServiceView(run(program), "web")
    assert web.load_balancer.inputs["internal"] is True
    assert web.load_balancer.inputs["subnets"] == NETWORK_OUTPUTS["subnetIds"]
    production = web.alb_sg.inputs["ingress"][0]
    assert production["cidrBlocks"] == ["10.0.0.0/8"]


# --------------------------------------------------------------------------- driven by rfs-deploy


def driven_program() -> None:
    vpc, subnets = own_vpc()
    driven = read_services()
    web = Service("web", driven.args("web", vpc_id=vpc.id, subnet_ids=[s.id for s in subnets]))
    export_services({"web": web}, driven.release)


def test_read_services_and_export_services_give_the_driver_its_outputs() -> None:
    namespace = {"services": {"web": SERVICE}, "release": {"web": CANARY_STEP}, "tags": {"team": "web"}}
    result = run(driven_program, namespace=namespace)
    assert as_plain(result.outputs[RELEASE_OUTPUT]) == {
        "web": ReleaseState.model_validate(CANARY_STEP).to_config()
    }
    out = outputs_of(result)
    web = ServiceView(result, "web")
    assert out.slot("green").target_group_arn == web.tg("green").outputs["arn"]
    assert out.listener_arn == web.listener.outputs["arn"]
    assert web.load_balancer.inputs["tags"]["team"] == "web"


def test_read_services_keeps_the_live_release_against_a_stale_checkout() -> None:
    live = {"web": CANARY_STEP}

    class LiveStack(AwsMocks):
        def call(
            self, args: pulumi.runtime.MockCallArgs
        ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            if args.token == "pulumi:pulumi:readStackOutputs":
                return {"outputs": {RELEASE_OUTPUT: live}}, []
            return super().call(args)

    namespace = {"services": {"web": SERVICE}, "release": {"web": RELEASE}}
    kept = run(driven_program, namespace=namespace, mocks=LiveStack())
    assert as_plain(kept.outputs[RELEASE_OUTPUT])["web"]["weights"] == {"blue": 80, "green": 20}
    # the driver releasing the service (its owner mark) applies the configured state
    owned = run(
        driven_program, namespace=namespace, mocks=LiveStack(), env={"RFS_DEPLOY_RELEASE_OWNER": "web"}
    )
    assert as_plain(owned.outputs[RELEASE_OUTPUT])["web"]["weights"] == {"blue": 100, "green": 0}


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        ({"release": {"web": RELEASE}}, "config rfs-deploy:services: missing"),
        ({"services": {"web": SERVICE}}, "config rfs-deploy:release: missing"),
        ({"services": {"web": SERVICE}, "release": {}}, "config rfs-deploy:release.web: missing"),
        (
            {"services": {"web": {**SERVICE, "instanceCount": "two"}}, "release": {"web": RELEASE}},
            "config rfs-deploy:services.web.instanceCount:",
        ),
        (
            {"services": {"web": SERVICE}, "release": {"web": RELEASE, "api": RELEASE}},
            "config rfs-deploy:release.api: names no service in services",
        ),
    ],
)
def test_read_services_errors_are_one_line(namespace: dict[str, Any], expected: str) -> None:
    with pytest.raises(pulumi.RunError) as caught:
        run(driven_program, namespace=namespace)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------- the example


def run_example(mocks: AwsMocks | None = None, config: dict[str, str] | None = None) -> ProgramRun:
    """The example as ``pulumi up`` runs it: its project name, its stack file's config."""
    stack_file = EXAMPLE / "Pulumi.dev.yaml"
    return run_program(
        read_namespace(stack_file),
        stack="dev",
        project="own-program",
        mocks=mocks,
        config={**read_other_config(stack_file), **(config or {})},
        program=main_file_program(EXAMPLE / "__main__.py"),
    )


def test_the_own_program_example_puts_the_service_on_its_own_vpc() -> None:
    result = run_example()
    web = ServiceView(result, "web")
    vpc_id = result.named("app-vpc").id
    subnets = [
        result.named("app-a", "aws:ec2/subnet:Subnet").id,
        result.named("app-b", "aws:ec2/subnet:Subnet").id,
    ]
    assert web.tg("blue").inputs["vpcId"] == vpc_id == result.outputs["vpcId"]
    assert web.load_balancer.inputs["subnets"] == subnets
    assert web.asg("blue").inputs["vpcZoneIdentifiers"] == subnets
    assert as_plain(web.asg("blue").inputs["desiredCapacity"]) == 2
    assert web.load_balancer.inputs["tags"]["app"] == "web"
    assert web.load_balancer.inputs["tags"]["team"] == "web"
    assert set(result.outputs[OUTPUT_NAME]) == {"web"}
    assert set(result.outputs[RELEASE_OUTPUT]) == {"web"}
    # the same component shape as a stack-file service: two slots, two listeners, six alarms
    assert len([r for r in result.of_type(T_ALARM) if r.name.startswith("web-")]) == 6
    assert {r.name for r in result.of_type(T_LISTENER)} == {"web-listener", "web-test-listener"}


def test_the_own_program_example_with_a_network_stack_reference() -> None:
    result = run_example(mocks=NetworkStackMocks(), config={"own-program:networkStack": "acme/network/prod"})
    web = ServiceView(result, "web")
    assert not result.of_type("aws:ec2/vpc:Vpc")
    assert web.tg("blue").inputs["vpcId"] == NETWORK_OUTPUTS["vpcId"] == result.outputs["vpcId"]
    assert web.load_balancer.inputs["subnets"] == NETWORK_OUTPUTS["subnetIds"]


def test_the_example_stack_file_is_a_valid_service_config() -> None:
    namespace = read_namespace(EXAMPLE / "Pulumi.dev.yaml")
    assert set(namespace) == {"services", "release", "tags"}
    ServiceConfig.model_validate(namespace["services"]["web"])
    ReleaseState.model_validate(namespace["release"]["web"])
