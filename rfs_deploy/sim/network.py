"""The stack's existing network, recreated in moto.

The stack config names a VPC and subnets that exist in the user's account (``network.vpcId``,
``subnetIds``). moto cannot create resources with chosen ids, so the sandbox creates a VPC and
one subnet per configured subnet (each in its own availability zone) and translates the
configured ids to moto's in every input it sends; the program keeps seeing its own ids.
"""

from __future__ import annotations

from typing import Any

from rfs_deploy.config.model import Network
from rfs_deploy.sim.aws import SimulatedAws, seed_ids, unseed_ids


class NetworkMap:
    """Configured network id -> moto id."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def ensure(self, aws: SimulatedAws, network: Network) -> None:
        """Create the configured VPC and subnets in moto once (ids are seeded: stable on rebuild)."""
        ec2 = aws.raw("ec2")
        if network.vpc_id not in self.ids or not _exists(ec2, self.ids[network.vpc_id]):
            # moto builds its EC2 backend (default VPC and all) lazily on the first call: make
            # that call unseeded, so the seeded ids below do not depend on whether this process
            # ran a sandbox before (a session made by a second sandbox could not be reopened)
            ec2.describe_vpcs()
            seed_ids(f"network::{network.vpc_id}")
            try:
                self.ids[network.vpc_id] = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            finally:
                unseed_ids()
        vpc = self.ids[network.vpc_id]
        wanted = list(dict.fromkeys([*network.subnet_ids, *(network.instance_subnet_ids or [])]))
        # the region's zones in moto, in order (eu-west-1 has three: a fourth subnet shares "a")
        zones = sorted(z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"])
        for index, subnet in enumerate(wanted):
            if subnet in self.ids:
                continue
            seed_ids(f"network::{subnet}")
            try:
                created = ec2.create_subnet(
                    VpcId=vpc,
                    CidrBlock=f"10.0.{index}.0/24",
                    AvailabilityZone=zones[index % len(zones)],
                )
            finally:
                unseed_ids()
            self.ids[subnet] = created["Subnet"]["SubnetId"]

    def translate(self, value: Any) -> Any:
        """``value`` with every configured id replaced by moto's (deeply)."""
        if isinstance(value, str):
            return self.ids.get(value, value)
        if isinstance(value, list):
            return [self.translate(v) for v in value]
        if isinstance(value, dict):
            return {k: self.translate(v) for k, v in value.items()}
        return value

    def reset(self) -> None:
        self.ids.clear()


def _exists(ec2: Any, vpc_id: str) -> bool:
    return bool(ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Vpcs"])
