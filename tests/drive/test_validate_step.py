"""The validate step's settings: the seed's deploy.healthCheckTimeout bounds each check."""

from __future__ import annotations

from rfs_deploy.config import ServiceConfig
from rfs_deploy.drive.validate_step import validation_settings

BASE = {"artifact": {"defaultAmi": "ami-0123456789abcdef0"}}


def test_checks_take_the_deploy_health_check_timeout() -> None:
    service = ServiceConfig.model_validate({**BASE, "deploy": {"healthCheckTimeout": 4}})
    assert validation_settings(service).timeout == 4.0


def test_an_explicit_validation_timeout_wins() -> None:
    service = ServiceConfig.model_validate(
        {**BASE, "deploy": {"healthCheckTimeout": 4}, "validation": {"timeout": 7}}
    )
    assert validation_settings(service).timeout == 7.0
