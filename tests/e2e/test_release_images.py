"""A version's AMI given for one deployment (``--ami``) or found by tag (``artifact.lookupTag``),
in the sandbox: the launch template boots it, the release state keeps it, rollbacks restore it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml
from e2e_world import REPO

from rfs_deploy.cli import main
from rfs_deploy.connect import open_seams
from rfs_deploy.drive.driver import Driver
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.errors import InvalidInput
from rfs_deploy.outputs import parse_outputs

BAKED = "ami-0bab3d0000000300"


def project_with(tmp_path: Path, **artifact: object) -> Path:
    """A copy of the project whose production stack has ``artifact`` for api-service."""
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.production.yaml").read_text())
    doc["config"]["rfs-deploy:services"]["api-service"]["artifact"] = artifact
    (root / "stacks" / "Pulumi.production.yaml").write_text(yaml.safe_dump(doc))
    return root


def launch_image(seams, slot: str) -> str:  # type: ignore[no-untyped-def]
    """The AMI of ``slot``'s launch template's newest version, as EC2 holds it."""
    import boto3

    out = parse_outputs(seams.backend.outputs(), "api-service").slot(slot)
    asg = boto3.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[out.asg_name])
    template = asg["AutoScalingGroups"][0]["LaunchTemplate"]["LaunchTemplateId"]
    versions = boto3.client("ec2").describe_launch_template_versions(LaunchTemplateId=template)
    newest = max(versions["LaunchTemplateVersions"], key=lambda v: v["VersionNumber"])
    return str(newest["LaunchTemplateData"]["ImageId"])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = project_with(tmp_path, amis={"v1.0.0": "ami-0ee5500000000e100"})
    monkeypatch.setenv("RFS_DEPLOY_PROJECT", str(root))
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    return root


def test_a_deployment_brings_its_own_ami_and_a_rollback_restores_the_old_one(project: Path) -> None:
    seams = open_seams("production", backend="sim", fresh=True)
    try:
        with pytest.raises(InvalidInput, match="has no image"):
            Driver(seams).plan("api-service", "v2.0.0")
        record = asyncio.run(Driver(seams).deploy("api-service", "v2.0.0", "blue-green", image=BAKED))
        assert record.status is DeploymentStatus.COMPLETED, record.errors
        release = seams.backend.read_config().release["api-service"]
        assert release.slot(release.live).version == "v2.0.0"
        assert release.slot(release.live).image == BAKED
        assert launch_image(seams, release.live) == BAKED

        back = asyncio.run(Driver(seams).rollback("api-service"))
        assert back.status is DeploymentStatus.ROLLED_BACK, back.errors
        restored = seams.backend.read_config().release["api-service"]
        assert restored.slot(restored.live).version == "v1.0.0"
        assert restored.slot(restored.live).image is None
        assert launch_image(seams, restored.live) == "ami-0ee5500000000e100"
    finally:
        seams.close()


def test_a_bad_ami_is_one_line_and_exit_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--backend", "sim", "plan", "--stack", "production", "--service", "api-service"]
    with pytest.raises(SystemExit) as caught:
        main([*args, "--version", "v2.0.0", "--ami", "not-an-ami"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an AMI id" in err[0]


def test_the_ami_is_found_by_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project_with(tmp_path, amis={"v1.0.0": "ami-0ee5500000000e100"}, lookupTag="Version")
    monkeypatch.setenv("RFS_DEPLOY_PROJECT", str(root))
    monkeypatch.setenv("RFS_DEPLOY_STATE", str(tmp_path / "state"))
    seams = open_seams("production", backend="sim", fresh=True)
    try:
        with pytest.raises(InvalidInput, match=re.escape("no AMI of this account is tagged Version=v2.0.0")):
            Driver(seams).plan(
                "api-service",
                "v2.0.0",
                image=Driver(seams)._image(
                    seams.backend.read_config().service("api-service"), "v2.0.0", None
                ),
            )
        import boto3

        ec2 = boto3.client("ec2")
        for name in ("build-41", "build-42"):
            image = ec2.register_image(Name=f"api-{name}", RootDeviceName="/dev/xvda")["ImageId"]
            ec2.create_tags(Resources=[image], Tags=[{"Key": "Version", "Value": "v2.0.0"}])
        newest = max(
            ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:Version", "Values": ["v2.0.0"]}])[
                "Images"
            ],
            key=lambda i: (i.get("CreationDate") or "", i["ImageId"]),
        )["ImageId"]
        record = asyncio.run(Driver(seams).deploy("api-service", "v2.0.0", "blue-green"))
        assert record.status is DeploymentStatus.COMPLETED, record.errors
        release = seams.backend.read_config().release["api-service"]
        assert release.slot(release.live).image == newest
        assert launch_image(seams, release.live) == newest
    finally:
        seams.close()
