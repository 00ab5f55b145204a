"""rfs-deploy: progressive delivery for AWS as a Pulumi program."""

__version__ = "0.1.0"
