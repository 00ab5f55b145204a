"""The Prometheus provider against a real Prometheus server loaded with traffic written here.

The server's answers are the only source of the numbers: each test asks the provider for a
window and checks what it made of them against what the traffic says each minute served.
Transport-level behaviour a real server cannot be made to show on demand (warnings, a slow
answer, a token in an error body, SigV4 headers) is checked with httpx's MockTransport.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_server import Minute, PrometheusServer, Traffic, free_port, histogram_quantile, serve

from rfs_deploy.config.model import PrometheusSettings
from rfs_deploy.config.secrets import redact
from rfs_deploy.errors import MetricsUnavailable
from rfs_deploy.metrics import MetricsProvider, SlotMetrics, SlotSource
from rfs_deploy.metrics.prometheus import PrometheusProvider, render, steps

#: Minute-aligned, long enough ago that every window asked for here has ended.
T0 = 1_700_002_800
START, END = T0 - 600, T0 + 1800
SLOTS = [
    ("shop", "blue"),
    ("shop", "green"),
    ("cart", "blue"),
    ("cart", "green"),
    ("idle", "blue"),
    ("gap", "blue"),
    ("hot", "blue"),
]


def minute(service: str, slot: str, t: int) -> Minute | None:
    """What each slot served in the minute starting at ``t``: every minute differs a little, so
    a window shifted by one period would sum to a different count. The slow counts keep the 99th
    percentile's rank off a bucket's edge, where float rounding could pick either bucket."""
    k = (t - START) // 60
    if service == "shop" and slot == "blue":
        return Minute(requests=900 + k, errors=4 + k % 3, slow=12)
    if service == "shop" and slot == "green":
        return Minute(requests=100 + k, slow=1, slow_seconds=0.4)
    if service == "cart":
        return Minute(requests=200, errors=30 if slot == "green" else 1, slow=3)
    if service == "idle":  # only blue ever served; green has no series at all
        return Minute(requests=50)
    if service == "gap":  # no requests at all in the minute starting at T0 + 60
        return Minute(requests=0) if t == T0 + 60 else Minute(requests=300, slow=4)
    if service == "hot":  # the CPU gauge reads NaN in the minute starting at T0 + 120
        return Minute(requests=300, cpu=math.nan if t == T0 + 120 else 40.0)
    return None


TRAFFIC = Traffic(START, END, SLOTS, minute)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    yield from serve(tmp_path_factory.mktemp("prometheus"), TRAFFIC)


def settings(url: str, **changes: Any) -> PrometheusSettings:
    return PrometheusSettings.model_validate({"provider": "prometheus", "url": url, **changes})


def source(service: str, slot: str, version: str | None = "v1.0.0") -> SlotSource:
    return SlotSource(
        service=service,
        slot=slot,
        version=version,
        load_balancer=f"app/{service}/0123",
        target_group=f"targetgroup/{service}-{slot}/0123",
        target_group_arn=f"arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/{service}-{slot}/0123",
        asg_name=f"{service}-asg-{slot}",
    )


def expected(service: str, slot: str, start: int, end: int) -> tuple[int, int, float]:
    """(requests, errors, worst p99) of the minutes in [start, end), from the traffic itself."""
    minutes = [m for t in range(start, end, 60) if (m := minute(service, slot, t)) is not None]
    p99s = [histogram_quantile(0.99, m.bucket_counts()) for m in minutes if m.requests]
    return sum(m.requests for m in minutes), sum(m.errors for m in minutes), max(p99s)


# --------------------------------------------------------------------------- healthy data


def test_a_window_is_its_whole_periods_and_nothing_else(server: PrometheusServer) -> None:
    provider = PrometheusProvider(settings(server.url))
    assert isinstance(provider, MetricsProvider) and provider.name == "prometheus"

    for start, end in [(T0, T0 + 300), (T0 + 300, T0 + 360), (T0 - 120, T0 + 600)]:
        readings = provider.read([source("shop", "green"), source("shop", "blue")], start, end, 60)

        assert list(readings.slots) == ["green", "blue"]
        assert not readings.partial
        for slot in ("green", "blue"):
            requests, errors, p99 = expected("shop", slot, start, end)
            found = readings.slots[slot]
            assert found is not None
            assert (found.requests, found.errors) == (requests, errors), (slot, start, end)
            assert found.p99 == pytest.approx(p99, rel=1e-9)
            assert found.cpu is None  # no CPU query by default
            assert found.unusable == ()


def test_consecutive_windows_add_up_to_the_window_that_covers_them(server: PrometheusServer) -> None:
    provider = PrometheusProvider(settings(server.url))
    [blue] = [source("shop", "blue")]

    parts = [provider.read([blue], T0 + 60 * i, T0 + 60 * (i + 2), 60).slots["blue"] for i in (0, 2, 4)]
    whole = provider.read([blue], T0, T0 + 360, 60).slots["blue"]

    assert whole is not None and all(p is not None for p in parts)
    assert whole.requests == sum(p.requests for p in parts if p) == expected("shop", "blue", T0, T0 + 360)[0]
    assert whole.errors == sum(p.errors for p in parts if p)


def test_a_longer_period_is_one_step_per_period(server: PrometheusServer) -> None:
    provider = PrometheusProvider(settings(server.url))

    found = provider.read([source("shop", "blue")], T0, T0 + 600, 300).slots["blue"]

    assert found is not None
    assert found.requests == expected("shop", "blue", T0, T0 + 600)[0]
    # p99 of each five-minute step, the worse one: below the slow requests' bucket top
    assert 0.1 < (found.p99 or 0) <= 0.25


def test_the_new_slots_5xx_are_counted(server: PrometheusServer) -> None:
    provider = PrometheusProvider(settings(server.url))

    readings = provider.read([source("cart", "green"), source("cart", "blue")], T0, T0 + 300, 60)

    green = readings.slots["green"]
    blue = readings.slots["blue"]
    assert green is not None and blue is not None
    assert (green.requests, green.errors) == (1000, 150)
    assert green.p99 == pytest.approx(expected("cart", "green", T0, T0 + 300)[2])
    assert green.error_rate == pytest.approx(0.15) and blue.error_rate == pytest.approx(0.005)


def test_a_slot_without_series_is_no_data_and_a_slot_without_5xx_has_zero_errors(
    server: PrometheusServer,
) -> None:
    provider = PrometheusProvider(settings(server.url))

    idle = provider.read([source("idle", "green"), source("idle", "blue")], T0, T0 + 300, 60)
    shop = provider.read([source("shop", "green")], T0, T0 + 300, 60).slots["green"]

    assert idle.slots["green"] is None
    assert idle.slots["blue"] == SlotMetrics(requests=250, errors=0, p99=0.05 * 0.99)
    assert (
        shop is not None and shop.errors == 0 and shop.requests == expected("shop", "green", T0, T0 + 300)[0]
    )


def test_a_window_before_the_data_is_no_data(server: PrometheusServer) -> None:
    provider = PrometheusProvider(settings(server.url))

    assert provider.read([source("shop", "blue")], START - 3600, START - 600, 60).slots == {"blue": None}


def test_a_minute_without_requests_has_no_latency_rather_than_an_unusable_one(
    server: PrometheusServer,
) -> None:
    provider = PrometheusProvider(settings(server.url))
    # a requests query claiming one request in every step: the same NaN quantile is then unusable
    claimed = PrometheusProvider(settings(server.url, queries={"requests": "vector(1)"}))

    found = provider.read([source("gap", "blue")], T0, T0 + 300, 60).slots["blue"]
    nan_step = claimed.read([source("gap", "blue")], T0 + 60, T0 + 180, 60).slots["blue"]

    assert found is not None
    assert found.requests == 1200 and found.unusable == ()
    assert found.p99 == pytest.approx(expected("gap", "blue", T0, T0 + 300)[2])
    assert nan_step is not None
    assert nan_step.requests == 2 and nan_step.p99 is None and nan_step.unusable == ("p99 nan",)


def test_a_nan_sample_makes_the_metric_unusable(server: PrometheusServer) -> None:
    cpu = 'avg(avg_over_time(process_cpu_percent{service="$service",slot="$slot"}[$period]))'
    provider = PrometheusProvider(settings(server.url, queries={"cpu": cpu}))

    clean = provider.read([source("hot", "blue")], T0, T0 + 120, 60).slots["blue"]
    broken = provider.read([source("hot", "blue")], T0, T0 + 300, 60).slots["blue"]

    assert clean is not None and clean.cpu == pytest.approx(40.0) and clean.unusable == ()
    assert broken is not None
    assert broken.cpu is None and broken.unusable == ("cpu nan",)
    assert broken.requests == 1500  # the other metrics of the window are still read


def test_placeholders_are_the_sources_values_escaped_for_promql_strings(server: PrometheusServer) -> None:
    rendered = render(
        '{service="$service",slot="$slot",v="$version",tg="$target_group",asg="$asg"}[$period]',
        source("shop", "blue", version='v1"2\\3'),
        300,
    )

    assert rendered == (
        '{service="shop",slot="blue",v="v1\\"2\\\\3",tg="targetgroup/shop-blue/0123",asg="shop-asg-blue"}[300s]'
    )
    # an empty slot's version is the empty string, which the server takes as a label value
    provider = PrometheusProvider(
        settings(
            server.url,
            queries={
                "requests": 'sum(increase(http_requests_total{service="$service",'
                'slot="$slot",version="$version"}[$period]))'
            },
        )
    )
    assert provider.read([source("shop", "blue", version=None)], T0, T0 + 60, 60).slots["blue"] is not None


def test_steps_are_the_ends_of_the_windows_periods() -> None:
    assert steps(T0, T0 + 300, 60) == [T0 + 60, T0 + 120, T0 + 180, T0 + 240, T0 + 300]
    assert steps(T0, T0 + 60, 60) == [T0 + 60]
    assert steps(T0, T0 + 30, 60) == [T0 + 30]  # shorter than a period: one step at its end
    assert steps(T0 + 30, T0 + 150, 60) == [T0 + 90, T0 + 150]


# --------------------------------------------------------------------------- partial data


def test_a_window_ending_after_now_is_partial(server: PrometheusServer) -> None:
    provider = PrometheusProvider(settings(server.url), clock=lambda: T0 + 250)

    assert provider.read([source("shop", "blue")], T0, T0 + 300, 60).partial
    assert not provider.read([source("shop", "blue")], T0, T0 + 240, 60).partial


def test_an_answer_with_warnings_is_partial() -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # every query answers the same series
        return httpx.Response(
            200,
            json={
                "status": "success",
                "warnings": ["partial response: store eu-1 did not answer"],
                "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[T0 + 60, "120"]]}]},
            },
        )

    client = httpx.Client(transport=httpx.MockTransport(handler))
    readings = PrometheusProvider(settings("http://prom.test:9090"), client).read(
        [source("shop", "blue")], T0, T0 + 60, 60
    )

    assert readings.partial
    assert readings.slots["blue"] == SlotMetrics(requests=120, errors=120, p99=120)


# --------------------------------------------------------------------------- failures


def test_a_query_the_server_rejects_is_unavailable_naming_the_host_and_the_query(
    server: PrometheusServer,
) -> None:
    provider = PrometheusProvider(settings(server.url, queries={"errors": "sum(rate(x[$period])"}))

    with pytest.raises(MetricsUnavailable) as caught:
        provider.read([source("shop", "blue")], T0, T0 + 300, 60)

    message = str(caught.value)
    host = server.url.removeprefix("http://")
    assert message.startswith(f"prometheus at {host}: errors query for shop/blue: HTTP 400 bad_data: ")
    assert "parse error" in message and "\n" not in message


def test_a_query_returning_several_series_must_aggregate(server: PrometheusServer) -> None:
    unsummed = 'increase(http_requests_total{service="$service",slot="$slot"}[$period])'
    provider = PrometheusProvider(settings(server.url, queries={"requests": unsummed}))

    with pytest.raises(
        MetricsUnavailable,
        match=r"requests query for shop/blue: returned 2 series; "
        r"the requests query must aggregate to one series per slot \(e\.g\. wrap it in sum",
    ):
        provider.read([source("shop", "blue")], T0, T0 + 300, 60)


def test_a_server_that_is_down_is_unavailable_after_the_retries() -> None:
    port = free_port()  # nothing listens there
    slept: list[float] = []
    provider = PrometheusProvider(settings(f"http://127.0.0.1:{port}", retries=2), sleep=slept.append)

    with pytest.raises(
        MetricsUnavailable,
        match=rf"^prometheus at 127\.0\.0\.1:{port}: requests query for "
        r"shop/blue: the server cannot be reached",
    ):
        provider.read([source("shop", "blue")], T0, T0 + 300, 60)
    assert slept == [0.5, 1.0]


def test_a_busy_server_is_asked_again() -> None:
    answers = [httpx.Response(503, text="overloaded"), httpx.Response(429, text="slow down")]

    def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop(0)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}})

    slept: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(handler))
    provider = PrometheusProvider(settings("http://prom.test", retries=2), client, sleep=slept.append)

    assert provider.read([source("shop", "blue")], T0, T0 + 60, 60).slots == {"blue": None}
    assert slept == [0.5, 1.0]

    answers[:] = [httpx.Response(503, text="overloaded\nfor a while")] * 3
    with pytest.raises(
        MetricsUnavailable,
        match=r"^prometheus at prom\.test: requests query for shop/blue: "
        r"HTTP 503 overloaded for a while$",
    ):
        provider.read([source("shop", "blue")], T0, T0 + 60, 60)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (httpx.Response(200, text="<html>login</html>"), "HTTP 200 with a body that is not JSON"),
        (
            httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}}),
            "the answer is a vector result, not a matrix",
        ),
        (
            httpx.Response(
                200,
                json={
                    "status": "success",
                    "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [["x", "1"]]}]},
                },
            ),
            "the answer's values are not [timestamp, number] pairs",
        ),
        (
            httpx.Response(
                422, json={"status": "error", "errorType": "execution", "error": "too many samples"}
            ),
            "HTTP 422 execution: too many samples",
        ),
        (httpx.Response(404, text="404 page not found"), "HTTP 404 404 page not found"),
    ],
    ids=["not-json", "vector", "bad-values", "status-error", "wrong-path"],
)
def test_an_answer_that_is_not_a_matrix_of_numbers_is_unavailable(
    answer: httpx.Response, reason: str
) -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda request: answer))

    with pytest.raises(MetricsUnavailable) as caught:
        PrometheusProvider(settings("https://prom.test:9443"), client).read(
            [source("shop", "blue")], T0, T0 + 60, 60
        )

    assert str(caught.value) == f"prometheus at prom.test:9443: requests query for shop/blue: {reason}"


def test_a_slow_server_is_unavailable_without_retrying() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    provider = PrometheusProvider(settings("http://prom.test", timeout=2.5, retries=3), client)

    with pytest.raises(MetricsUnavailable, match=r"requests query for shop/blue: no answer within 2\.5s$"):
        provider.read([source("shop", "blue")], T0, T0 + 60, 60)
    assert len(calls) == 1


# --------------------------------------------------------------------------- headers and signing

TOKEN = "Bearer s3cr3t-token-value"


def test_headers_are_sent_and_never_shown() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        auth = request.headers["Authorization"]
        return httpx.Response(
            401, json={"status": "error", "errorType": "auth", "error": f"bad token {auth}"}
        )

    client = httpx.Client(transport=httpx.MockTransport(handler))
    config = settings("http://prom.test", headers={"Authorization": TOKEN, "X-Scope-OrgID": "tenant-7"})
    assert TOKEN not in repr(config)

    with pytest.raises(MetricsUnavailable) as caught:
        PrometheusProvider(config, client).read([source("shop", "blue")], T0, T0 + 300, 60)

    [request] = seen
    assert request.method == "POST" and request.url.path == "/api/v1/query_range"
    assert request.headers["Authorization"] == TOKEN and request.headers["X-Scope-OrgID"] == "tenant-7"
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form == {
        "query": 'sum(increase(http_requests_total{service="shop",slot="blue"}[60s]))',
        "start": f"{T0 + 60}.000",
        "end": f"{T0 + 300}.000",
        "step": "60s",
    }
    assert "s3cr3t-token-value" not in str(caught.value)
    assert str(caught.value) == (
        "prometheus at prom.test: requests query for shop/blue: HTTP 401 auth: bad token ***"
    )


def test_a_header_secret_not_decrypted_here_stops_before_sending() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda r: pytest.fail("nothing may be sent")))
    config = settings("http://prom.test", headers={"Authorization": "[secret]"})

    with pytest.raises(
        MetricsUnavailable, match=r"analysis\.metrics\.headers\.Authorization is a Pulumi secret"
    ):
        PrometheusProvider(config, client).read([source("shop", "blue")], T0, T0 + 300, 60)
    assert redact("the mask [secret] itself") == "the mask [secret] itself"  # no secret to hide


def test_a_slot_without_request_data_costs_one_request() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(httpx.QueryParams(request.content.decode()))["query"])
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    readings = PrometheusProvider(settings("http://prom.test"), client).read(
        [source("shop", "green"), source("shop", "blue")], T0, T0 + 300, 60
    )

    assert readings.slots == {"green": None, "blue": None}
    assert [q.split("{")[0] for q in asked] == ["sum(increase(http_requests_total"] * 2


def test_sigv4_signs_as_botocore_does(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    # the default credential chain, fed fixed credentials through the environment
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-example")
    fixed = datetime.datetime(2026, 3, 1, 12, 0, 0)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: fixed)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}})

    url = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-0123abcd"
    config = settings(url, sigv4={"region": "eu-west-1"}, headers={"X-Extra": "unsigned-value"})
    client = httpx.Client(transport=httpx.MockTransport(handler))
    PrometheusProvider(config, client).read([source("shop", "blue")], T0, T0 + 60, 60)

    sent = seen[0]
    assert str(sent.url) == url + "/api/v1/query_range"
    reference = AWSRequest(
        method="POST",
        url=str(sent.url),
        data=sent.content,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    credentials = Credentials(
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example"
    )
    SigV4Auth(credentials, "aps", "eu-west-1").add_auth(reference)

    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        assert sent.headers[name] == reference.headers[name], name
    assert sent.headers["Authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260301/eu-west-1/aps/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
    )
    assert sent.headers["X-Extra"] == "unsigned-value"


def test_sigv4_without_credentials_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = httpx.Client(
        transport=httpx.MockTransport(lambda r: pytest.fail("nothing may be sent unsigned"))
    )
    config = settings(
        "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1", sigv4={"region": "eu-west-1"}
    )

    with pytest.raises(MetricsUnavailable, match="no AWS credentials found to sign Prometheus requests"):
        PrometheusProvider(config, client).read([source("shop", "blue")], T0, T0 + 60, 60)


# --------------------------------------------------------------------------- the docs


def test_the_docs_table_has_every_key_with_its_default_and_the_default_queries_verbatim() -> None:
    from rfs_deploy.config.model import PrometheusQueries, PrometheusSigV4

    page = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    section = page[page.index("## Prometheus") : page.index("## Writing a provider")]
    cells = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `")]
    rows = {key.strip().strip("`"): default.strip() for key, default in cells}

    def shown(value: object) -> str:
        text = "null" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        return f"`{text}`"

    expected = {}
    for model, prefix in [
        (PrometheusSettings, ""),
        (PrometheusQueries, "queries."),
        (PrometheusSigV4, "sigv4."),
    ]:
        for name, field in model.model_fields.items():
            if model is PrometheusSettings and name in ("provider", "queries"):
                continue
            if field.is_required():
                default = "(required)"
            elif model is PrometheusQueries and field.default is not None:
                default = "see below"
            else:
                default = shown(field.get_default(call_default_factory=True))
            expected[prefix + (field.alias or name)] = default
    assert {key: rows.get(key) for key in expected} == expected
    for query in PrometheusQueries().model_dump().values():
        if query is not None:
            assert query in section, query
