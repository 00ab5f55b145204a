"""The AWS provider test double and the applier service, without the engine (these always run).

The provider's handlers are called as the engine calls them (Check, Diff, Create, Update, Delete
with property values), and forward to a real sandbox's applier over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import PROJECT, START
from pulumi.provider.experimental import provider as p
from pulumi.provider.experimental.property_value import Computed, PropertyValue

from rfs_deploy.sim.engine import ApplierService
from rfs_deploy.sim.provider import (
    ApplierClient,
    AwsProviderDouble,
    autoname,
    changed_keys,
    plain_map,
    to_properties,
    to_property,
)
from rfs_deploy.sim.sandbox import Sandbox

SG = "urn:pulumi:dev::rfs-deploy::aws:ec2/securityGroup:SecurityGroup::web"
VPC = "vpc-0a1b2c3d4e5f60718"  # the production stack's (configured) VPC id


@pytest.fixture
def double() -> Iterator[tuple[AwsProviderDouble, Sandbox, ApplierService]]:
    box = Sandbox.open(PROJECT / "stacks" / "Pulumi.production.yaml", start=START)
    service = ApplierService(box.applier).start()
    try:
        box.applier.network.ensure(box.aws, box.backend.read_config().network)
        yield AwsProviderDouble(ApplierClient(service.url)), box, service
    finally:
        service.stop()
        box.close()


def props(**values: object) -> dict[str, PropertyValue]:
    return {k: to_property(v) for k, v in values.items()}


def test_values_convert_both_ways_with_numbers_as_floats() -> None:
    state = {"port": 80, "on": True, "tags": {"a": "b"}, "ids": ["x", 2], "none": None}
    converted = to_properties(state, {})
    assert converted["port"].value == 80.0 and isinstance(converted["port"].value, float)
    assert converted["on"].value is True
    assert plain_map(converted) == {
        "port": 80.0,
        "on": True,
        "tags": {"a": "b"},
        "ids": ["x", 2.0],
        "none": None,
    }


def test_outputs_keep_the_secretness_of_their_inputs() -> None:
    inputs = {"userData": PropertyValue("#!/bin/bash", is_secret=True), "name": PropertyValue("lt")}
    out = to_properties({"userData": "#!/bin/bash", "name": "lt", "arn": "arn:x"}, inputs)
    assert out["userData"].is_secret and not out["name"].is_secret and not out["arn"].is_secret


def test_diff_ignores_computed_state_and_sees_changed_removed_and_unknown_inputs() -> None:
    olds = {"name": "a", "port": 80.0, "arn": "arn:x", "latestVersion": 2.0, "old": "gone"}
    assert changed_keys(olds, {"name": "a", "port": 80.0, "old": "gone"}, []) == []
    assert changed_keys(olds, {"name": "a", "port": 81.0, "old": "gone"}, []) == ["port"]
    assert changed_keys(olds, {"name": "a", "port": 80.0}, []) == ["old"]
    assert changed_keys(olds, {"name": "a", "port": 80.0}, ["old"]) == []
    unknown = plain_map({"port": PropertyValue(Computed())})
    assert changed_keys({"port": 80.0}, unknown, []) == ["port"]


def test_check_autonames_once_and_keeps_the_name_across_updates(double: tuple) -> None:
    provider, _, _ = double
    first = asyncio.run(provider.check(p.CheckRequest(SG, {}, props(vpcId=VPC), b"")))
    assert first.inputs is not None and first.inputs["name"].value == autoname(SG, "web")
    later = asyncio.run(provider.check(p.CheckRequest(SG, props(name="web-1234567"), props(vpcId=VPC), b"")))
    assert later.inputs is not None and later.inputs["name"].value == "web-1234567"
    given = asyncio.run(provider.check(p.CheckRequest(SG, {}, props(name="mine", vpcId=VPC), b"")))
    assert given.inputs is not None and given.inputs["name"].value == "mine"


def test_create_update_delete_go_to_moto_through_the_sandboxs_applier(double: tuple) -> None:
    provider, box, service = double
    ec2 = box.aws.raw("ec2")
    ingress = [{"protocol": "tcp", "fromPort": 80.0, "toPort": 80.0, "cidrBlocks": ["0.0.0.0/0"]}]
    inputs = props(name="web-sg", vpcId=VPC, description="web", ingress=ingress, tags={"team": "web"})

    created = asyncio.run(provider.create(p.CreateRequest(SG, inputs, 60.0, False)))
    group_id = created.resource_id
    assert group_id and group_id.startswith("sg-")
    assert created.properties["vpcId"].value == VPC, "the program sees its own network ids"
    [group] = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    assert group["VpcId"] == box.applier.network.ids[VPC] and group["IpPermissions"][0]["FromPort"] == 80
    assert box.applier.resources["aws:ec2/securityGroup:SecurityGroup::web"].urn == SG

    wider = [{**ingress[0], "fromPort": 443.0, "toPort": 443.0}]
    news = props(name="web-sg", vpcId=VPC, description="web", ingress=wider, tags={"team": "web"})
    diff = asyncio.run(provider.diff(p.DiffRequest(SG, group_id, created.properties, news, [])))
    assert diff.changes and diff.diffs == ["ingress"] and not diff.replaces
    asyncio.run(provider.update(p.UpdateRequest(SG, group_id, created.properties, news, 60.0, [], False)))
    [group] = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    assert [perm["FromPort"] for perm in group["IpPermissions"]] == [443]

    asyncio.run(provider.delete(p.DeleteRequest(SG, group_id, news, 60.0)))
    assert not ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [group_id]}])[
        "SecurityGroups"
    ]
    assert service.received == 3


def test_an_unmodelled_type_or_a_wrong_token_is_refused(double: tuple) -> None:
    provider, _, service = double
    other = "urn:pulumi:dev::rfs-deploy::aws:s3/bucket:Bucket::logs"
    with pytest.raises(RuntimeError, match="does not model aws:s3/bucket:Bucket"):
        asyncio.run(provider.create(p.CreateRequest(other, props(bucket="logs"), 60.0, False)))
    intruder = ApplierClient(service.url.rsplit("/", 1)[0] + "/wrong")
    with pytest.raises(RuntimeError, match="wrong token"):
        intruder.call("delete", type="aws:ec2/securityGroup:SecurityGroup", name="web")


def test_the_plugin_refuses_to_start_without_a_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfs_deploy.sim import provider

    monkeypatch.delenv(provider.APPLIER_ENV, raising=False)
    with pytest.raises(SystemExit, match="never real AWS"):
        provider.main(["127.0.0.1:1"])


def test_the_double_is_named_plainly(tmp_path: Path) -> None:
    launcher = (PROJECT / "tools" / "pulumi-resource-aws").read_text()
    assert "TEST DOUBLE" in launcher and "never calls AWS" in launcher


@pytest.mark.parametrize("plugin", ["language-host", "provider"])
def test_a_plugin_exits_when_the_engine_is_gone(plugin: str) -> None:
    """A killed `pulumi` must not leave its plugins (and a running program) behind."""
    with socket.socket() as probe:  # a loopback port nobody listens on: the engine is gone
        probe.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{probe.getsockname()[1]}"
    if plugin == "language-host":
        script = PROJECT / "tools" / "engine" / "langhost.py"
        argv = [sys.executable, str(script), "--exec-script", "/nonexistent", gone]
    else:
        argv = [sys.executable, "-m", "rfs_deploy.sim.provider", gone]
    env = {**os.environ, "RFS_DEPLOY_TEST_APPLIER": "http://127.0.0.1:1/unused"}
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip().isdigit(), "served a port"
        assert child.wait(timeout=60) == 1
    finally:
        child.kill()
