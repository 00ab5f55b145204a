"""Entry point of `pulumi up`: the program lives in rfs_deploy.infra.program."""

from rfs_deploy.infra.program import run

run()
