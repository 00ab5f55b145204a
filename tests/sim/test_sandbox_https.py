"""An HTTPS service in the sandbox: HTTPS listeners in moto, the private test listener's rule, and
a blue-green deployment whose validation and load probe go through ``https://`` on the test
listener."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sim_stacks import stack_with

from rfs_deploy.outputs import ServiceOutputs, parse_outputs

SERVICE = "api-service"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f3c5a1e-8d2b-4c61-9a7e-3b5d2f4e6a10"
EXTRA = "arn:aws:acm:us-east-1:123456789012:certificate/9a7e3b5d-2f4e-4a10-8d2b-0f3c5a1e4c61"

STACK = stack_with(
    {
        "artifact": {"amis": {"v1.0.0": "ami-0aa1100000000a100", "v2.0.0": "ami-0aa1100000000a200"}},
        "instanceCount": 2,
        "healthCheckGracePeriod": 60,
        "https": {"certificateArn": CERT, "extraCertificateArns": [EXTRA]},
        "validation": {"criticalEndpoints": ["/api/users"]},
        "strategy": {"type": "blue-green"},
    },
    capacity=2,
)


@pytest.fixture
def project(project: Path) -> Path:
    """The project, with the HTTPS stack ``https``."""
    (project / "stacks" / "Pulumi.https.yaml").write_text(yaml.safe_dump(STACK))
    return project


def deploy_watching_requests(project: Path) -> tuple[Any, ServiceOutputs, list[httpx.URL]]:
    """A blue-green deployment of the https stack in ``project``: its record, the service's
    outputs, and every URL the driver requested."""
    from rfs_deploy.connect import open_seams
    from rfs_deploy.drive.driver import Driver

    seams = open_seams("https", backend="sim", fresh=True)
    inner = seams.http_transport
    assert isinstance(inner, httpx.MockTransport)
    seen: list[httpx.URL] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return await inner.handle_async_request(request)

    seams.http_transport = httpx.MockTransport(record)
    try:
        record_ = asyncio.run(Driver(seams).deploy(SERVICE, "v2.0.0", "blue-green"))
        out = parse_outputs(seams.backend.outputs(), SERVICE)
    finally:
        seams.close()
    return record_, out, seen


def test_an_https_service_deploys_and_validates_through_the_https_test_listener(project: Path) -> None:
    record_, out, seen = deploy_watching_requests(project)
    assert record_.status.value == "COMPLETED", record_.errors
    assert out.listener_protocol == "HTTPS" and out.test_url == f"https://{out.dns_name}:8443"
    assert seen, "the deployment sent no validation request"
    # httpx leaves the scheme's own port out of a URL: 443 is None here
    reached = {(url.scheme, url.host, url.port or 443) for url in seen}
    assert reached <= {("https", out.dns_name, 8443), ("https", out.dns_name, 443)}
    assert ("https", out.dns_name, 8443) in reached
    assert {url.path for url in seen} >= {"/health", "/version", "/api/users"}


def test_with_a_host_name_the_driver_validates_through_the_name_the_certificate_covers(project: Path) -> None:
    # the load balancer's own DNS name is not on the certificate: the driver uses https.hostName
    stack = copy.deepcopy(STACK)
    stack["config"]["rfs-deploy:services"][SERVICE]["https"]["hostName"] = "api.example.com"
    (project / "stacks" / "Pulumi.https.yaml").write_text(yaml.safe_dump(stack))

    record_, out, seen = deploy_watching_requests(project)

    assert record_.status.value == "COMPLETED", record_.errors
    assert out.host_name == "api.example.com" and out.test_url == "https://api.example.com:8443"
    assert {url.host for url in seen} == {"api.example.com"}
    assert {url.path for url in seen} >= {"/health", "/version", "/api/users"}


def test_moto_holds_https_listeners_with_a_certificate_and_the_redirect(open_sandbox_https: Any) -> None:
    box = open_sandbox_https()
    out = parse_outputs(box.backend.outputs(), SERVICE)
    elbv2 = box.aws.raw("elbv2")
    listeners = {
        int(item["Port"]): item
        for item in elbv2.describe_listeners(LoadBalancerArn=out.load_balancer_arn)["Listeners"]
    }
    assert sorted(listeners) == [80, 443, 8443]
    # moto's stand-ins for the configured certificates (asking again returns the same one)
    default, extra = box.applier.moto_certificate(CERT), box.applier.moto_certificate(EXTRA)
    summaries = box.aws.raw("acm").list_certificates()["CertificateSummaryList"]
    assert {c["CertificateArn"] for c in summaries} == {default, extra}
    for port in (443, 8443):
        listener = listeners[port]
        assert listener["Protocol"] == "HTTPS"
        assert listener["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
        assert [c["CertificateArn"] for c in listener["Certificates"]] == [default, extra]
    redirect = listeners[80]
    assert redirect["Protocol"] == "HTTP"
    (action,) = redirect["DefaultActions"]
    assert action["Type"] == "redirect"
    assert action["RedirectConfig"]["Protocol"] == "HTTPS" and action["RedirectConfig"]["Port"] == "443"
    assert action["RedirectConfig"]["StatusCode"] == "HTTP_301"


def test_the_test_port_admits_the_vpc_and_the_runners_group_only(open_sandbox_https: Any) -> None:
    box = open_sandbox_https()
    ec2 = box.aws.raw("ec2")
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.0.0.0/16"]}])["Vpcs"]
    # the driver's runner: a security group of its own in the VPC, added to the stack
    runner = ec2.create_security_group(GroupName="ci-runner", Description="ci", VpcId=vpc["VpcId"])["GroupId"]
    network = dict(box.backend.namespace["network"])
    box.backend.namespace["network"] = {**network, "testIngressSecurityGroups": [runner]}
    box.backend.up("let the runner reach the test listener")
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{SERVICE}-alb-sg*"]}])
    (alb_sg,) = groups["SecurityGroups"]
    by_port: dict[int, set[str]] = {}
    for perm in alb_sg["IpPermissions"]:
        found = by_port.setdefault(int(perm["FromPort"]), set())
        found |= {r["CidrIp"] for r in perm.get("IpRanges", [])}
        found |= {g["GroupId"] for g in perm.get("UserIdGroupPairs", [])}
    assert by_port[443] == by_port[80] == {"0.0.0.0/0"}
    assert by_port[8443] == {vpc["CidrBlock"], runner}


def test_the_sandboxs_http_surface_answers_as_an_alb_would(open_sandbox_https: Any) -> None:
    from rfs_deploy.sim.http import sandbox_transport

    box = open_sandbox_https()
    out = parse_outputs(box.backend.outputs(), SERVICE)
    with httpx.Client(transport=sandbox_transport(box.world)) as client:
        assert client.get(f"{out.url}/health").status_code == 200
        # the test listener routes to the idle slot, which runs nothing before a deployment
        idle = client.get(f"{out.test_url}/health")
        assert (idle.status_code, idle.json()) == (503, {"error": "no healthy target"})
        assert client.get(f"https://{out.dns_name}/version").json() == {"version": "v1.0.0"}
        moved = client.get(f"http://{out.dns_name}/api/users?page=2")
        assert moved.status_code == 301
        assert moved.headers["location"] == f"https://{out.dns_name}/api/users?page=2"
        assert client.get(f"http://{out.dns_name}:8443/health").status_code == 400


@pytest.fixture
def open_sandbox_https(tmp_path: Path) -> Any:
    from rfs_deploy.sim.sandbox import Sandbox

    opened: list[Sandbox] = []

    def factory(**network: Any) -> Sandbox:
        stack = yaml.safe_load(yaml.safe_dump(STACK))
        stack["config"]["rfs-deploy:network"].update(network)
        path = tmp_path / f"Pulumi.https{len(opened)}.yaml"
        path.write_text(yaml.safe_dump(stack))
        box = Sandbox.open(path, scenario="healthy", start=1_800_000_000.0)
        opened.append(box)
        box.provision()
        return box

    yield factory
    for box in reversed(opened):
        box.close()


def test_the_provider_doubles_invoke_answers_the_vpc_lookup_from_moto(open_sandbox_https: Any) -> None:
    """What the real engine asks the provider double for ``aws.ec2.get_vpc`` (the engine runs in
    tests/engine; here the double's handler is called as the engine calls it)."""
    from pulumi.provider.experimental import provider as p

    from rfs_deploy.sim.engine import ApplierService
    from rfs_deploy.sim.provider import ApplierClient, AwsProviderDouble, plain_map, to_property

    box = open_sandbox_https()
    configured = STACK["config"]["rfs-deploy:network"]["vpcId"]
    service = ApplierService(box.applier).start()
    try:
        double = AwsProviderDouble(ApplierClient(service.url))
        request = p.InvokeRequest("aws:ec2/getVpc:getVpc", {"id": to_property(configured)})
        answer = asyncio.run(double.invoke(request))
        assert answer.return_value is not None
        vpc = plain_map(answer.return_value)
        assert (vpc["id"], vpc["cidrBlock"]) == (configured, "10.0.0.0/16")
        assert [a["cidrBlock"] for a in vpc["cidrBlockAssociations"]] == ["10.0.0.0/16"]
        unknown = p.InvokeRequest("aws:ec2/getSubnet:getSubnet", {"id": to_property("subnet-1")})
        with pytest.raises(RuntimeError, match="does not model the provider function aws:ec2/getSubnet"):
            asyncio.run(double.invoke(unknown))
    finally:
        service.stop()
