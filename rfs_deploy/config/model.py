"""The stack config model: the single source of truth for every key.

A stack's config lives under the Pulumi namespace ``rfs-deploy`` with four top-level keys,
``network``, ``services``, ``release`` and ``tags`` (the field names of :class:`StackConfig`).
Inside them keys are camelCase (``healthCheck.healthyThreshold``); Python uses the snake_case
field names. The Pulumi program reads the whole model; the driver writes only ``release``.

Units: durations are seconds, rates are fractions (0.05 = 5 %), weights and percentages are
whole percent, latency is seconds, CPU is percent.

Bounds: every number has a lower and an upper bound (a duration at most :data:`MAX_DURATION`,
a week, unless a tighter AWS limit applies); a boolean is not a number (``canaryInterval: true``
is refused, not taken as 1 s), and NaN and infinity are refused. Strings matched against a
pattern must match all of it (``re.fullmatch``; pydantic's ``pattern=`` anchors ``$`` at the end
of the text, never before a final newline). A release version must match :data:`VERSION_PATTERN`.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import operator
import re
from collections.abc import Callable
from string import Template
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from rfs_deploy.config.base import MAX_DURATION, Duration, Int, Model, Num
from rfs_deploy.config.hooks import ServiceHooks
from rfs_deploy.config.strategies import PROBED_NAMES, STRATEGIES, StrategySettings
from rfs_deploy.config.strategies import STRATEGY_NAMES as STRATEGY_NAMES
from rfs_deploy.config.strategies.ab_test import ABTest as ABTest
from rfs_deploy.config.strategies.blue_green import BlueGreen as BlueGreen
from rfs_deploy.config.strategies.canary import Canary as Canary
from rfs_deploy.config.strategies.rolling import Rolling
from rfs_deploy.config.webhooks import WebhookList

SlotName = Literal["blue", "green"]
SLOTS: tuple[SlotName, SlotName] = ("blue", "green")

#: Service names become parts of AWS resource names: target groups allow 32 characters and
#: Pulumi auto-names ``<name>-tg-green`` with an 8-character suffix, so 32 - 8 - 9 = 15.
SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,14}")

#: A release version: a letter or digit, then letters, digits and ``. _ + -``, at most 128
#: characters (``v2.0.0``, ``2026.12.01-rc1``, ``1.4.0+build.7``). It names AMIs and tags and is
#: substituted into ``artifact.userData``, a root shell script: none of these characters means
#: anything to a shell, so ``${version}`` is safe anywhere in it.
VERSION_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
_VERSION = re.compile(VERSION_PATTERN)
#: An AMI id: ``ami-`` and 8 or 17 hex digits (older and newer ids), no more.
AMI_PATTERN = r"ami-[0-9a-f]{8,17}"
_AMI = re.compile(AMI_PATTERN)


def shown(value: object, limit: int = 60) -> str:
    """``value`` for an error line: its repr (newlines escaped), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_version(value: object) -> str:
    """``value`` when it is a release version (:data:`VERSION_PATTERN`); else ValueError saying so."""
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise ValueError(
            f"version {shown(value)} is not a version: 1-128 letters, digits and '.', '_', '+', '-', "
            "starting with a letter or digit"
        )
    return value


def _id_check(pattern: re.Pattern[str], what: str) -> Callable[[object], str]:
    """A check returning its value when ``pattern`` matches all of it; else ValueError "is not
    ``what``"."""

    def check(value: object) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"{shown(value)} is not {what}")
        return value

    return check


#: ``value`` when it is an AMI id (:data:`AMI_PATTERN`); else ValueError saying so.
check_ami = _id_check(_AMI, "an AMI id (ami- and 8 or 17 hex digits)")


#: A release version (see :data:`VERSION_PATTERN`).
Version = Annotated[str, AfterValidator(check_version)]
#: An AMI id.
AmiId = Annotated[str, AfterValidator(check_ami)]
#: An absolute URL path sent in HTTP requests: printable ASCII without spaces, bounded.
UrlPath = Annotated[str, Field(pattern=r"^/[!-~]*$", max_length=2048)]

#: An ACM certificate ARN: ``arn:<partition>:acm:<region>:<account>:certificate/<id>``.
CERTIFICATE_ARN_PATTERN = r"arn:aws(-[a-z]+)*:acm:[a-z0-9-]{1,32}:[0-9]{12}:certificate/[A-Za-z0-9-]{1,128}"
_CERTIFICATE_ARN = re.compile(CERTIFICATE_ARN_PATTERN)
#: A security group id.
SECURITY_GROUP_PATTERN = r"sg-[0-9a-f]{8,17}"
_SECURITY_GROUP = re.compile(SECURITY_GROUP_PATTERN)


#: ``value`` when it is an ACM certificate ARN; else ValueError saying so.
check_certificate_arn = _id_check(
    _CERTIFICATE_ARN, "an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)"
)
#: ``value`` when it is a security group id; else ValueError saying so.
check_security_group = _id_check(_SECURITY_GROUP, "a security group id (sg- and 8 or 17 hex digits)")


#: An ACM certificate ARN.
CertificateArn = Annotated[str, AfterValidator(check_certificate_arn)]
#: A security group id.
SecurityGroupId = Annotated[str, AfterValidator(check_security_group)]


def other_slot(slot: SlotName) -> SlotName:
    return "green" if slot == "blue" else "blue"


# --------------------------------------------------------------------------- network & service


class Network(Model):
    """An existing VPC and the subnets the load balancers and fleets use."""

    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{1,17}$")
    subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{1,17}$")]] = Field(
        min_length=2, max_length=64
    )
    #: Subnets for instances; defaults to ``subnetIds``.
    instance_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{1,17}$")]] | None = Field(
        default=None, min_length=1, max_length=64
    )
    internal: bool = False
    ingress_cidrs: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=lambda: ["0.0.0.0/0"], min_length=1, max_length=60
    )
    #: Who may reach the test listeners (the idle slot): CIDR blocks. Unset: the VPC's own CIDR
    #: blocks (looked up); ``[]``: none (only ``testIngressSecurityGroups``). Never
    #: ``ingressCidrs`` unless listed here too (docs/listeners.md).
    test_ingress_cidrs: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=60)
    #: Security groups whose members may reach the test listeners (a driver's runner, a bastion).
    test_ingress_security_groups: list[SecurityGroupId] = Field(default_factory=list, max_length=60)

    @field_validator("ingress_cidrs", "test_ingress_cidrs")
    @classmethod
    def _cidr_blocks(cls, cidrs: list[str] | None) -> list[str] | None:
        # Security group rules take network addresses only (10.0.0.0/8, 2001:db8::/32).
        for cidr in cidrs or []:
            try:
                ipaddress.ip_network(cidr)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a CIDR block ({exc})") from None
        return cidrs


#: The TLS policy of the HTTPS listeners unless ``https.sslPolicy`` names another: TLS 1.3 and 1.2.
DEFAULT_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
#: The production listener's port when HTTPS is on and ``listenerPort`` is not given.
HTTPS_PORT = 443


class Https(Model):
    """HTTPS on the service's listeners: an ACM certificate, a TLS policy, an HTTP redirect."""

    certificate_arn: CertificateArn
    #: More certificates for the listeners (SNI picks one by host name); at most 25 in all.
    extra_certificate_arns: list[CertificateArn] = Field(default_factory=list, max_length=24)
    ssl_policy: str = Field(
        default=DEFAULT_SSL_POLICY, pattern=r"^ELBSecurityPolicy-[A-Za-z0-9-]{1,100}$", max_length=128
    )
    #: Also listen for plain HTTP on ``redirectPort`` and answer 301 to the HTTPS listener.
    redirect_http: bool = True
    redirect_port: Int = Field(default=80, ge=1, le=65535)
    #: The name the certificate covers, pointed at the load balancer in DNS: the driver's
    #: validation and load probe connect to it, so the certificate verifies (the load balancer's
    #: own DNS name is not on it). Unset: the load balancer's DNS name.
    host_name: str | None = Field(
        default=None,
        pattern=r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
        max_length=253,
    )


# --------------------------------------------------------------------------- shared load balancers

#: A routed service owns ``ROUTING_BLOCK`` listener rule priorities from ``priority * ROUTING_BLOCK``:
#: its A/B rules at the block's start, its own rule at its end (docs/shared-alb.md).
ROUTING_BLOCK = 10
#: ALB rule priorities go up to 50000: the last whole block starts at 49990.
MAX_ROUTING_PRIORITY = 4999
#: An ALB rule holds at most five condition values; the A/B cookie rules use two of them.
MAX_ROUTING_VALUES = 3
_HOST_PATTERN = r"^[A-Za-z0-9*?.-]{1,128}$"
_PATH_PATTERN = r"^/[A-Za-z0-9_\-.$/~\"'@:+*?&=]{0,127}$"


def with_https_port(data: Any) -> Any:
    """Listener settings (a service's or a shared load balancer's, as given) with ``listenerPort``
    443 when HTTPS is on and no port is given: 80 is then the redirect's."""
    given = isinstance(data, dict) and ("listenerPort" in data or "listener_port" in data)
    if isinstance(data, dict) and data.get("https") is not None and not given:
        return {**data, "listenerPort": HTTPS_PORT}
    return data


class SharedLoadBalancer(Model):
    """A load balancer several services share (``loadBalancers.<name>``): its listeners' ports
    and HTTPS; the services behind it get listener rules instead of listeners of their own."""

    listener_port: Int = Field(default=80, ge=1, le=65535)
    test_listener_port: Int = Field(default=8443, ge=1, le=65535)
    https: Https | None = None

    @model_validator(mode="before")
    @classmethod
    def _https_port(cls, data: Any) -> Any:
        return with_https_port(data)

    @model_validator(mode="after")
    def _distinct_ports(self) -> SharedLoadBalancer:
        if self.listener_port == self.test_listener_port:
            raise ValueError("listenerPort and testListenerPort must differ")
        https = self.https
        if https is not None and https.redirect_http and https.redirect_port in self._ports():
            raise ValueError(f"https.redirectPort {https.redirect_port} is also a listener port")
        return self

    def _ports(self) -> tuple[int, int]:
        return (self.listener_port, self.test_listener_port)


class Routing(Model):
    """Where a service sits on a shared load balancer: the hosts and paths its rules match and
    the priority block its rules use (``priority * 10`` to ``priority * 10 + 9``)."""

    #: The shared load balancer (a key of ``loadBalancers``; a program of your own passes the
    #: listeners instead and may leave it out).
    load_balancer: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,14}$")
    #: Host-header values (``api.example.com``, ``*.example.com``).
    hosts: list[Annotated[str, Field(pattern=_HOST_PATTERN)]] = Field(default_factory=list)
    #: Path-pattern values (``/api/*``).
    paths: list[Annotated[str, Field(pattern=_PATH_PATTERN)]] = Field(default_factory=list)
    #: The service's block of rule priorities; unique among the services of one load balancer,
    #: so adding a service never renumbers the others.
    priority: Int = Field(ge=1, le=MAX_ROUTING_PRIORITY)

    @model_validator(mode="after")
    def _conditions(self) -> Routing:
        if not self.hosts and not self.paths:
            raise ValueError("routing needs hosts or paths (or both)")
        if len(self.hosts) + len(self.paths) > MAX_ROUTING_VALUES:
            raise ValueError(
                f"at most {MAX_ROUTING_VALUES} hosts and paths in all (an ALB rule holds five condition "
                "values, and the A/B cookie rules need two)"
            )
        return self

    @property
    def first_priority(self) -> int:
        """The lowest priority of the block (the A/B rules start here)."""
        return self.priority * ROUTING_BLOCK

    @property
    def rule_priority(self) -> int:
        """The priority of the service's own rule: the block's last."""
        return self.priority * ROUTING_BLOCK + ROUTING_BLOCK - 1


class HealthCheck(Model):
    """Target group health check (ALB pings every instance)."""

    path: UrlPath = "/health"
    interval: Duration = Field(default=30, ge=5, le=300)
    timeout: Duration = Field(default=10, ge=2, le=120)
    healthy_threshold: Int = Field(default=3, ge=2, le=10)
    unhealthy_threshold: Int = Field(default=2, ge=2, le=10)
    #: HTTP codes counted healthy: ``200``, ``200,302`` or a range ``200-299``.
    matcher: str = Field(
        default="200", pattern=r"^[0-9]{3}(-[0-9]{3})?(,[0-9]{3}(-[0-9]{3})?)*$", max_length=64
    )

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> HealthCheck:
        if self.timeout >= self.interval:
            raise ValueError("timeout must be shorter than interval")
        return self


class Artifact(Model):
    """How a release version becomes a launch template.

    - ``amis``: one AMI per version (an immutable image baked per release), and/or
    - ``userData``: a template in which ``${version}`` is replaced by the release version,
      booting ``defaultAmi`` (or the version's AMI when both are given). The version is checked
      against :data:`VERSION_PATTERN` again as it is substituted, so nothing else reaches the
      script; ``$$`` is a literal ``$``, any other ``$name`` is refused.
    A version is deployable when it has an AMI in ``amis`` or ``defaultAmi`` is set.
    """

    amis: dict[Version, AmiId] = Field(default_factory=dict)
    default_ami: AmiId | None = None
    #: A launch template takes at most 16 KB of base64, about 12,000 characters of text.
    user_data: str | None = Field(default=None, max_length=12_000)
    #: A tag whose value is the version, on AMIs of this account: a version without an AMI in
    #: ``amis`` is looked up by it when deployed (the newest image with ``<lookupTag>=<version>``).
    lookup_tag: str | None = Field(default=None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _some_image(self) -> Artifact:
        if not self.amis and self.default_ami is None and self.lookup_tag is None:
            raise ValueError("give amis (one per version), defaultAmi or lookupTag")
        if self.user_data is not None:
            try:
                Template(self.user_data).substitute(version="x")
            except (KeyError, ValueError) as exc:
                raise ValueError(f"userData may only use ${{version}} ({exc})") from None
        return self

    def has_image(self, version: str) -> bool:
        return version in self.amis or self.default_ami is not None

    def image_for(self, version: str) -> str:
        ami = self.amis.get(version, self.default_ami)
        if ami is None:
            raise KeyError(version)
        return ami

    def user_data_for(self, version: str) -> str | None:
        """The user data booting ``version``; ValueError when ``version`` is not a version."""
        if self.user_data is None:
            return None
        return Template(self.user_data).substitute(version=check_version(version))


class SmokeTest(Model):
    """One request with an exact expected status and, optionally, a body fragment."""

    path: UrlPath
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    expect_status: Int = Field(default=200, ge=100, le=599)
    body_contains: str | None = Field(default=None, max_length=10_000)
    #: Request body sent as-is (POST/PUT/PATCH smoke tests).
    body: str | None = Field(default=None, max_length=100_000)
    #: Shown in the check name; defaults to ``METHOD path``.
    name: str | None = Field(default=None, max_length=200)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def label(self) -> str:
        return self.name or f"{self.method} {self.path}"


#: Strategies that have an idle slot behind the test listener, so a probe before traffic
#: (those registered with ``probe=True``).
if TYPE_CHECKING:
    ProbedStrategy: TypeAlias = str
else:
    ProbedStrategy = Literal[PROBED_NAMES]


def _blue_green_only() -> list[ProbedStrategy]:
    return ["blue-green"]


def _url_paths(paths: list[str], what: str) -> list[str]:
    """``paths`` when every one is an absolute URL path; else a one-line error naming ``what``."""
    for path in paths:
        if not path.startswith("/"):
            raise ValueError(f"{what} {path!r} must start with '/'")
    return paths


class Probe(Model):
    """A burst of requests through the test listener before traffic moves (blue-green's switch).

    The checks above are functional (one request each); the probe measures rates. Its batches
    of ``requests`` go to the idle slot (test listener) and, with ``compare_live``, the same
    requests to the live slot (production listener); each batch is judged as an analysis window
    with the service's ``analysis`` policy, so a blue-green release is judged under load before
    it takes any user traffic.
    """

    #: Requests per batch to each listener; 0 turns the probe off.
    requests: Int = Field(default=200, ge=0, le=10_000)
    #: Requests in flight at once.
    concurrency: Int = Field(default=10, ge=1, le=100)
    #: GET paths the batch cycles through; empty: the critical endpoints, else the health path.
    paths: list[UrlPath] = Field(default_factory=list, max_length=100)
    #: Also probe the live slot and compare (error-rate test, p99 ratio), not only thresholds.
    compare_live: bool = True
    #: Strategies whose validate step runs the probe. Blue-green by default: its switch moves
    #: everyone at once. A canary or A/B test may add it as a gate before its first real traffic.
    #: (A rolling release has no idle slot behind the test listener to probe.)
    strategies: list[ProbedStrategy] = Field(default_factory=_blue_green_only)

    @field_validator("paths")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        return _url_paths(paths, "probe path")


class ValidationSettings(Model):
    """What to check and how patiently. Defaults follow the seed (10 s health check timeout)."""

    health_path: UrlPath = "/health"
    #: None skips the version check.
    version_path: UrlPath | None = "/version"
    critical_endpoints: list[UrlPath] = Field(default_factory=list, max_length=100)
    smoke_tests: list[SmokeTest] = Field(default_factory=list, max_length=100)
    #: Seconds one attempt of one check may take in total (connect, send, read the body).
    timeout: Num = Field(default=10.0, gt=0, le=300)
    #: Extra attempts after a connection error, or after a critical endpoint's 5xx answer (a broken
    #: endpoint answers 5xx every time; one unlucky request does not fail it). Timeouts are final.
    retries: Int = Field(default=2, ge=0, le=10)
    #: Seconds before the first retry; doubles on every further retry.
    backoff: Num = Field(default=0.5, ge=0, le=30)
    #: Sent with every request; values are secrets (redacted in reprs and details).
    headers: dict[str, SecretStr] = Field(default_factory=dict, repr=False)
    #: Load through the test listener before a blue-green switch (see :class:`Probe`).
    probe: Probe = Field(default_factory=Probe)

    @field_validator("critical_endpoints")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        return _url_paths(paths, "critical endpoint")


class CloudWatchSettings(Model):
    """Judge on the load balancer's and the fleet's CloudWatch metrics (the default): per slot
    ``RequestCount``, ``HTTPCode_Target_5XX_Count`` and ``TargetResponseTime`` p99 of its target
    group, ``CPUUtilization`` of its Auto Scaling group; one GetMetricData request per tick."""

    provider: Literal["cloudwatch"] = "cloudwatch"


#: ``$name`` placeholders a Prometheus query may use (``string.Template``; PromQL's own braces
#: stay as they are). Each is substituted with an already validated value.
PROMETHEUS_PLACEHOLDERS = ("service", "slot", "version", "target_group", "asg", "period")


class PrometheusQueries(Model):
    """PromQL per metric, evaluated over the window with a step of one ``analysis.period``; each
    must return one series per step for one slot (``$slot``, ``$service``, ``$version``,
    ``$target_group``, ``$asg`` and ``$period`` — e.g. ``60s`` — are substituted)."""

    #: Requests the slot served in each step.
    requests: str = Field(
        default='sum(increase(http_requests_total{service="$service",slot="$slot"}[$period]))',
        min_length=1,
        max_length=4096,
    )
    #: 5xx responses in each step.
    errors: str = Field(
        default='sum(increase(http_requests_total{service="$service",slot="$slot",code=~"5.."}[$period]))',
        min_length=1,
        max_length=4096,
    )
    #: The 99th percentile response time in seconds in each step.
    p99: str | None = Field(
        default=(
            "histogram_quantile(0.99, sum by (le) "
            '(rate(http_request_duration_seconds_bucket{service="$service",slot="$slot"}[$period])))'
        ),
        max_length=4096,
    )
    #: Mean CPU percent of the slot's fleet in each step; None (the default) leaves CPU unjudged.
    cpu: str | None = Field(default=None, max_length=4096)

    @field_validator("requests", "errors", "p99", "cpu")
    @classmethod
    def _placeholders(cls, query: str | None) -> str | None:
        if query is None:
            return None
        try:
            names = Template(query).get_identifiers()
        except ValueError as exc:  # Template raises for a lone '$'
            raise ValueError(f"bad placeholder in query: {exc}") from None
        unknown = [n for n in names if n not in PROMETHEUS_PLACEHOLDERS]
        if unknown or not Template(query).is_valid():
            allowed = ", ".join(f"${n}" for n in PROMETHEUS_PLACEHOLDERS)
            raise ValueError(f"unknown placeholder ${(unknown or ['?'])[0]} in query (allowed: {allowed})")
        return query


class PrometheusSigV4(Model):
    """Sign every request with AWS Signature Version 4 (Amazon Managed Service for Prometheus)
    using the driver's AWS credentials."""

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", max_length=32)
    service: str = Field(default="aps", pattern=r"^[a-z0-9-]+$", max_length=32)


class PrometheusSettings(Model):
    """Judge on a Prometheus server's HTTP query API (self-hosted, or Amazon Managed Service for
    Prometheus with ``sigv4``): one ``query_range`` request per metric and slot each tick."""

    provider: Literal["prometheus"]
    #: The server's base URL, e.g. ``http://prometheus:9090`` or an AMP workspace's
    #: ``https://aps-workspaces.<region>.amazonaws.com/workspaces/<id>``.
    url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", max_length=2048)
    queries: PrometheusQueries = Field(default_factory=PrometheusQueries)
    #: Sent with every request (an ``Authorization`` bearer token, a tenant header); secrets.
    headers: dict[str, SecretStr] = Field(default_factory=dict, repr=False)
    sigv4: PrometheusSigV4 | None = None
    #: Seconds one request may take (a timeout is final: the analysis asks again next tick).
    timeout: Num = Field(default=10.0, gt=0, le=300)
    #: Extra attempts after a connection error or a 429, 502, 503 or 504 answer, 0.5 s apart
    #: (doubling); then the window counts as a failed fetch.
    retries: Int = Field(default=1, ge=0, le=5)


MetricsSettings = Annotated[CloudWatchSettings | PrometheusSettings, Field(discriminator="provider")]


class Analysis(Model):
    """How the driver judges a step. Thresholds are absolute; the baseline test is relative."""

    max_error_rate: Num = Field(default=0.05, gt=0, le=1)
    max_p99_latency: Num = Field(default=2.0, gt=0, le=3600)
    max_cpu: Num = Field(default=90.0, gt=0, le=100)
    #: Fewer requests than this in a window make the verdict inconclusive, never a pass.
    min_requests: Int = Field(default=100, ge=1, le=1_000_000_000)
    #: Inconclusive windows allowed in one step before the step fails for lack of data.
    max_inconclusive: Int = Field(default=5, ge=0, le=10_000)
    #: Failed windows that end a step (1 = the first failure rolls back).
    failure_limit: Int = Field(default=1, ge=1, le=10_000)
    #: Metric fetches that may fail in a row before the step fails.
    consecutive_error_limit: Int = Field(default=3, ge=1, le=10_000)
    #: Compare the new slot with the live slot (canary, A/B), not only with thresholds.
    baseline_comparison: bool = True
    #: False-alarm probability of the baseline comparison.
    significance: Num = Field(default=0.01, gt=0, lt=0.5)
    #: The new version's p99 may be this many times the baseline's before it fails.
    latency_tolerance: Num = Field(default=1.5, ge=1.0, le=1000)
    #: Seconds above which a request counts as slow: the judge compares the slots' shares of slow
    #: requests. None: the baseline's p99 before the release (docs/decision.md, "Latency as counts").
    latency_threshold: Num | None = Field(default=None, gt=0, le=3600)
    #: Metric period in seconds (ALB metrics are per minute; at most a day).
    period: Duration = Field(default=60, ge=10, le=86_400)
    #: How a release step ends when its traffic never gave the judge enough requests to decide:
    #: ``pause`` (hold for a person, as at a gate), ``rollback``, or ``promote`` (docs/decision.md).
    on_inconclusive: Literal["pause", "rollback", "promote"] = "pause"

    #: Where the metrics come from: ``{provider: cloudwatch}`` (the default) or
    #: ``{provider: prometheus, url: ..., queries: ...}``.
    metrics: MetricsSettings = Field(default_factory=CloudWatchSettings)

    @property
    def alarm_min_requests(self) -> int:
        """Requests a period needs before the 5xx-rate alarm counts it (metric math ``IF``): as
        many as make three errors no breach of ``max_error_rate``, at most half ``min_requests``
        (50 by default). One error among five requests is no 20 % error rate; a 10 % canary of
        1,000 requests a minute is counted in every period."""
        return max(1, min(self.min_requests // 2, math.ceil(3 / self.max_error_rate)))


class DeploySettings(Model):
    """Settings common to every strategy (the seed's defaults)."""

    health_check_interval: Duration = Field(default=30, ge=1, le=MAX_DURATION)
    health_check_timeout: Duration = Field(default=10, ge=1, le=MAX_DURATION)
    max_deployment_time: Duration = Field(default=600, ge=1, le=MAX_DURATION)
    auto_rollback: bool = True
    max_rollback_attempts: Int = Field(default=3, ge=1, le=10)
    deployment_timeout: Duration = Field(default=1800, ge=1, le=MAX_DURATION)
    #: Whether the time a deployment spends paused (a gate, ``rfs-deploy pause``) counts towards
    #: its time budget: false (the default), the budget starts again at ``promote``; true, it
    #: runs from the start, and a promote after it ran out rolls back (docs/gates.md).
    pause_counts_towards_deadline: bool = False


# --------------------------------------------------------------------------- strategies


# Each strategy's settings model lives in its own module of rfs_deploy.config.strategies and is
# re-exported here (BlueGreen, Canary, Rolling, ABTest); the union is built from the registry, so
# a new strategy module joins it, the error messages and STRATEGY_NAMES without an edit here.
if TYPE_CHECKING:
    Strategy: TypeAlias = StrategySettings
else:
    Strategy = Annotated[
        functools.reduce(operator.or_, (info.settings for info in STRATEGIES)), Field(discriminator="type")
    ]


class Autoscaling(Model):
    """Between releases the live slot's Auto Scaling group scales itself, ``min`` to ``max``
    instances, with a target-tracking policy on the group's average CPU (docs/sizing.md)."""

    min: Int = Field(ge=1, le=1000)
    max: Int = Field(ge=1, le=1000)
    #: Average CPU percent the policy keeps the group at.
    target_cpu: Num = Field(default=50, gt=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class ServiceConfig(Model):
    """One service: an ALB, two slots (blue and green), listeners, alarms."""

    artifact: Artifact
    strategy: Strategy = Field(default_factory=BlueGreen)
    instance_type: str = Field(default="t3.micro", pattern=r"^[a-z0-9-]+\.[a-z0-9]+$", max_length=64)
    #: Port the application listens on in each instance.
    app_port: Int = Field(default=8080, ge=1, le=65535)
    listener_port: Int = Field(default=80, ge=1, le=65535)
    test_listener_port: Int = Field(default=8443, ge=1, le=65535)
    #: Instances the live slot runs.
    instance_count: Int = Field(default=4, ge=1, le=1000)
    health_check: HealthCheck = Field(default_factory=HealthCheck)
    #: Seconds Auto Scaling waits before checking a new instance's ELB health.
    health_check_grace_period: Duration = Field(default=120, ge=0, le=MAX_DURATION)
    #: Seconds a newly healthy slot must stay healthy before traffic moves to it (blue-green,
    #: canary, A/B): a service that serves slowly for a while after passing health checks sets
    #: its warm-up here so it is neither judged nor fed traffic while cold.
    warmup: Duration = Field(default=0, ge=0, le=3600)
    analysis: Analysis = Field(default_factory=Analysis)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    #: HTTP checks through the test listener before traffic moves.
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    #: HTTPS listeners (production and test) with an ACM certificate; unset: plain HTTP.
    https: Https | None = None
    #: Commands run before, during and after a deployment and after a rollback (docs/hooks.md).
    hooks: ServiceHooks = Field(default_factory=ServiceHooks)
    #: Event and confirm webhooks (docs/webhooks.md).
    webhooks: WebhookList = Field(default_factory=list)
    #: Behind a shared load balancer: host and path rules there instead of an ALB of its own.
    routing: Routing | None = None
    #: The live slot scales itself between releases (min, max, target CPU); unset: pinned to its
    #: capacity. A release pins both slots again (docs/sizing.md).
    autoscaling: Autoscaling | None = None

    @model_validator(mode="before")
    @classmethod
    def _https_port(cls, data: Any) -> Any:
        return with_https_port(data)

    @model_validator(mode="after")
    def _count_within_autoscaling(self) -> ServiceConfig:
        scaling = self.autoscaling
        if scaling is not None and not scaling.min <= self.instance_count <= scaling.max:
            raise ValueError(
                f"instanceCount {self.instance_count} is outside autoscaling's min {scaling.min} "
                f"and max {scaling.max}"
            )
        return self

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServiceConfig:
        if self.listener_port == self.test_listener_port:
            raise ValueError("listenerPort and testListenerPort must differ")
        if self.https is not None and self.https.redirect_http:
            port = self.https.redirect_port
            if port in (self.listener_port, self.test_listener_port):
                raise ValueError(
                    f"https.redirectPort {port} is also listenerPort or testListenerPort; "
                    "choose another or set https.redirectHttp: false"
                )
        return self


# --------------------------------------------------------------------------- release state


class SlotState(Model):
    """What one slot runs: a version (or nothing) and how many instances.

    ``image`` is the version's AMI when the release gave one itself (``rfs-deploy deploy --ami``,
    or found by ``artifact.lookupTag``) rather than ``artifact.amis``: kept in the release state,
    so a rollback restores the very image the slot ran.
    """

    version: Version | None = None
    capacity: Int = Field(default=0, ge=0, le=1000)
    image: AmiId | None = None

    @model_validator(mode="after")
    def _version_when_running(self) -> SlotState:
        if self.capacity > 0 and self.version is None:
            raise ValueError("a slot with capacity needs a version")
        if self.image is not None and self.version is None:
            raise ValueError("a slot with an image needs a version")
        return self


class Variants(Model):
    """A/B routing: forced-variant rules by header and cookie, on the production listener."""

    header: str = Field(default="X-Variant", pattern=r"^[A-Za-z0-9-]+$", max_length=64)
    cookie: str = Field(default="variant", pattern=r"^[A-Za-z0-9_-]+$", max_length=64)
    rule_priority: Int = Field(default=100, ge=1, le=49996)


def _all_on_blue() -> dict[SlotName, int]:
    return {"blue": 100, "green": 0}


class ReleaseState(Model):
    """The part of the config the driver writes: which version runs where, and the traffic split.

    ``live`` is the slot serving production before a release begins (the baseline); the other
    slot is idle and receives the new version. After a promotion ``live`` names the new slot.
    """

    live: SlotName = "blue"
    blue: SlotState = Field(default_factory=SlotState)
    green: SlotState = Field(default_factory=SlotState)
    #: Percent of production traffic per slot; the two sum to 100.
    weights: dict[SlotName, Annotated[Int, Field(ge=0, le=100)]] = Field(default_factory=_all_on_blue)
    #: Seconds of target group stickiness on the production listener (None = off).
    stickiness: Int | None = Field(default=None, ge=1, le=604800)
    #: A/B forced-variant rules, present only during an A/B test.
    variants: Variants | None = None
    #: Instance refresh settings of the release in progress (a rolling release chosen per
    #: deployment); None uses the service's strategy when it is rolling, else Rolling's defaults.
    rolling: Rolling | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ReleaseState:
        if set(self.weights) != set(SLOTS):
            raise ValueError("weights must name both blue and green")
        total = sum(self.weights.values())
        if total != 100:
            raise ValueError(f"weights must sum to 100, not {total}")
        for slot in SLOTS:
            if self.weights[slot] > 0 and self.slot(slot).capacity == 0:
                raise ValueError(f"slot {slot} has weight {self.weights[slot]} but no capacity")
        if self.slot(self.live).capacity == 0:
            raise ValueError(f"live slot {self.live} has no capacity")
        return self

    @property
    def idle(self) -> SlotName:
        return other_slot(self.live)

    @property
    def at_rest(self) -> bool:
        """No release runs: the idle slot has neither instances nor traffic, no A/B rules, no
        rolling release's settings (when a service's ``autoscaling`` applies)."""
        idle = self.idle
        return (
            self.slot(idle).capacity == 0
            and self.weights[idle] == 0
            and self.variants is None
            and self.rolling is None
        )

    def slot(self, name: SlotName) -> SlotState:
        return self.blue if name == "blue" else self.green

    def judged_slot(self, version: str) -> SlotName:
        """The slot an analysis judges while ``version`` is being released: the idle slot while
        it runs ``version`` (canary steps, blue-green's bake, variant B of an A/B test), else the
        live slot (a rolling release refreshes the live slot in place; after a promotion the new
        version is live). The baseline, when a step compares, is the live slot."""
        idle = self.slot(self.idle)
        return self.idle if idle.version == version and idle.capacity else self.live

    def with_slot(self, name: SlotName, **changes: Any) -> ReleaseState:
        """A copy with one slot changed (validated). A new version drops the old one's image."""
        if "version" in changes and changes["version"] != self.slot(name).version:
            changes.setdefault("image", None)
        slot = self.slot(name).model_copy(update=changes)
        return self.evolve(**{name: slot})

    def evolve(self, **changes: Any) -> ReleaseState:
        """A validated copy with ``changes`` applied (keys are field names)."""
        data = self.model_dump()
        for key, value in changes.items():
            data[key] = value.model_dump() if isinstance(value, BaseModel) else value
        return ReleaseState.model_validate(data)

    def to_config(self) -> dict[str, Any]:
        """The camelCase mapping stored in stack config."""
        return self.model_dump(by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- the stack


def missing_image(service: str, config: ServiceConfig, release: ReleaseState) -> tuple[str, str] | None:
    """(key, reason) of the first slot of ``release`` running a version without an image (none
    of its own, none in ``config.artifact``); None when every running version has one."""
    for slot in SLOTS:
        state = release.slot(slot)
        if state.version is not None and state.image is None and not config.artifact.has_image(state.version):
            reason = (
                f"version {state.version!r} has no image: add it to services.{service}.artifact.amis "
                "or set defaultAmi"
            )
            return f"release.{service}.{slot}.version", reason
    return None


class StackConfig(Model):
    """Everything under the ``rfs-deploy`` config namespace of one stack."""

    #: The VPC every service of the shipped program runs in. A program of your own that passes
    #: its network to the components itself (docs/components.md) leaves it out; the shipped
    #: program refuses a stack without it.
    network: Network | None = None
    services: dict[str, ServiceConfig] = Field(min_length=1)
    release: dict[str, ReleaseState]
    #: AWS tags on every resource (AWS allows keys of 128 and values of 256 characters).
    tags: dict[Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=256)]] = (
        Field(default_factory=dict, max_length=40)
    )
    #: Load balancers shared by the services whose ``routing.loadBalancer`` names them.
    load_balancers: dict[str, SharedLoadBalancer] = Field(default_factory=dict, max_length=20)

    @field_validator("services")
    @classmethod
    def _service_names(cls, services: dict[str, ServiceConfig]) -> dict[str, ServiceConfig]:
        for name in services:
            if not SERVICE_NAME.fullmatch(name):
                raise ValueError(
                    f"service name {shown(name)} must be 1-15 characters of a-z, 0-9 and '-', "
                    "starting with a letter"
                )
        return services

    @model_validator(mode="after")
    def _release_matches_services(self) -> StackConfig:
        missing = sorted(set(self.services) - set(self.release))
        if missing:
            raise _KeyedError(f"release.{missing[0]}", "missing: every service needs a release state")
        unknown = sorted(set(self.release) - set(self.services))
        if unknown:
            raise _KeyedError(f"release.{unknown[0]}", "names no service in services")
        for name, state in self.release.items():
            found = missing_image(name, self.services[name], state)
            if found is not None:
                raise _KeyedError(*found)
        return self

    @model_validator(mode="after")
    def _routing_names_load_balancers(self) -> StackConfig:
        for name in sorted(self.load_balancers):
            if not SERVICE_NAME.fullmatch(name):
                raise _KeyedError(
                    f"loadBalancers.{name}", "a load balancer name is 1-15 characters of a-z, 0-9 and '-'"
                )
            if name in self.services:
                raise _KeyedError(f"loadBalancers.{name}", "is also a service's name; choose another")
        owners: dict[tuple[str, int], str] = {}
        for name in sorted(self.services):
            service = self.services[name]
            routing = service.routing
            if routing is None:
                continue
            key = f"services.{name}.routing"
            if routing.load_balancer is None:
                raise _KeyedError(f"{key}.loadBalancer", "missing: name one of loadBalancers")
            if routing.load_balancer not in self.load_balancers:
                known = ", ".join(sorted(self.load_balancers)) or "none"
                raise _KeyedError(
                    f"{key}.loadBalancer", f"{routing.load_balancer!r} is not in loadBalancers (has: {known})"
                )
            for field in ("https", "listener_port", "test_listener_port"):
                if field in service.model_fields_set:
                    alias = ServiceConfig.model_fields[field].alias or field
                    raise _KeyedError(
                        f"services.{name}.{alias}",
                        f"set it on loadBalancers.{routing.load_balancer}: the service's listeners are that "
                        "load balancer's",
                    )
            other = owners.setdefault((routing.load_balancer, routing.priority), name)
            if other != name:
                raise _KeyedError(
                    f"{key}.priority",
                    f"{routing.priority} is also services.{other}'s on load balancer "
                    f"{routing.load_balancer}; every service behind one load balancer needs its own",
                )
        return self

    def service(self, name: str) -> ServiceConfig:
        from rfs_deploy.errors import UnknownService

        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services))
            raise UnknownService(f"unknown service {name!r} (this stack has: {known})") from None


def _KeyedError(key: str, reason: str) -> PydanticCustomError:
    """A cross-field error that names the key it is about (read back by loading.format_error)."""
    return PydanticCustomError("keyed", "{reason}", {"key": key, "reason": reason})
