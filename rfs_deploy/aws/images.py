"""Finding a release's AMI by tag (``artifact.lookupTag``): EC2 DescribeImages."""

from __future__ import annotations

from typing import Any

from rfs_deploy.aws.session import AwsSession, aws_errors


class Ec2Images:
    """ImageFinder over EC2 DescribeImages: this account's images only (``Owners=self``)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def from_session(cls, session: AwsSession) -> Ec2Images:
        return cls(session.client("ec2"))

    def find(self, tag: str, value: str) -> str | None:
        """The newest available image of this account tagged ``tag=value``; None when none is."""
        with aws_errors("EC2 DescribeImages"):
            pages = self._client.get_paginator("describe_images").paginate(
                Owners=["self"],
                Filters=[
                    {"Name": f"tag:{tag}", "Values": [value]},
                    {"Name": "state", "Values": ["available"]},
                ],
            )
            images = [image for page in pages for image in page.get("Images", [])]
        if not images:
            return None
        newest = max(images, key=lambda image: (image.get("CreationDate") or "", image["ImageId"]))
        return str(newest["ImageId"])
