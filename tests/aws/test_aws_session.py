"""AwsSession: region, retry policy, credentials; aws_errors: botocore -> rfs-deploy errors."""

from __future__ import annotations

import socket

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.stub import Stubber

from rfs_deploy.aws import AwsSession, CloudWatchAlarms, aws_errors, connect
from rfs_deploy.aws.session import NO_CREDENTIALS
from rfs_deploy.errors import AwsError, ConfigError, MissingCredentials


def test_clients_use_standard_retry_mode_with_the_requested_attempts() -> None:
    session = AwsSession("eu-west-1", max_attempts=7)
    client = session.client("cloudwatch")
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 7}
    assert session.client("cloudwatch") is client  # cached


def test_region_comes_from_the_environment_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-2")
    assert AwsSession().region == "ap-northeast-2"
    assert AwsSession("us-west-2").region == "us-west-2"


def test_no_region_is_a_config_error_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigError) as info:
        AwsSession()
    assert info.value.key == "aws:region"
    assert "\n" not in str(info.value)


def test_max_attempts_counts_the_first_attempt() -> None:
    with pytest.raises(ValueError):
        AwsSession("us-east-1", max_attempts=0)


def test_no_credentials_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    with pytest.raises(MissingCredentials) as info:
        connect("us-east-1")
    assert str(info.value) == NO_CREDENTIALS
    assert info.value.exit_code == 2


def test_unknown_profile_is_missing_credentials() -> None:
    with pytest.raises(MissingCredentials, match="nope"):
        AwsSession("us-east-1", profile="nope")


def test_no_credentials_at_call_time_is_translated() -> None:
    with pytest.raises(MissingCredentials) as info, aws_errors("CloudWatch DescribeAlarms"):
        raise NoCredentialsError()
    assert isinstance(info.value.__cause__, NoCredentialsError)


def test_client_error_becomes_aws_error_with_code_and_cause() -> None:
    client = AwsSession("us-east-1").client("cloudwatch")
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_alarms",
            service_error_code="AccessDenied",
            service_message="User is not authorized\nto perform cloudwatch:DescribeAlarms",
            http_status_code=403,
        )
        with pytest.raises(AwsError) as info:
            CloudWatchAlarms(client).firing(["api-5xx"])
    message = str(info.value)
    assert message.startswith("CloudWatch DescribeAlarms failed: AccessDenied: User is not authorized")
    assert "\n" not in message
    assert isinstance(info.value.__cause__, ClientError)


def test_rejected_credentials_say_so() -> None:
    client = AwsSession("us-east-1").client("cloudwatch")
    with Stubber(client) as stub:
        stub.add_client_error("describe_alarms", service_error_code="ExpiredToken", http_status_code=403)
        with pytest.raises(AwsError, match="AWS rejected the credentials"):
            CloudWatchAlarms(client).firing(["api-5xx"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_endpoint_becomes_aws_error() -> None:
    session = AwsSession("us-east-1", max_attempts=1, endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(AwsError, match="cannot reach AWS") as info:
        CloudWatchAlarms.from_session(session).firing(["api-5xx"])
    assert isinstance(info.value.__cause__, EndpointConnectionError)
