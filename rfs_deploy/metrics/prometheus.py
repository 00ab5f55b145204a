"""Slot metrics from a Prometheus server's HTTP query API (self-hosted, or Amazon Managed Service
for Prometheus with SigV4 signing).

One window [start, end) of ``n`` whole periods is one ``query_range`` request per configured
query and slot, evaluated at the *end* of each period: ``start + period, ..., end`` with a step of
one period. Prometheus's range is inclusive at both ends, so starting the range at ``start``
itself would give ``n + 1`` steps, the first one covering the period before the window. Each
step's ``increase(...[$period])`` then covers exactly the period that ends at it, so the steps of
consecutive windows tile time without overlap or gap, as CloudWatch's periods do.

The per-step values are fed to :func:`rfs_deploy.metrics.base.aggregate` (counts summed, the
worst step's p99, the mean CPU). An empty result is no data: None for requests, zero errors. A
step's p99 of NaN when that step served no requests is dropped rather than reported as unusable:
``histogram_quantile`` over a histogram that did not move is NaN by definition, which is the
absence of latency, not a broken metric.

No slow-request count (:attr:`~rfs_deploy.metrics.base.SlotMetrics.slow`) is asked for: the
configured queries are fixed PromQL, and counting requests slower than a threshold chosen at run
time would need a histogram bucket at that threshold (``le``), which a service's buckets rarely
have. The slots' ``slow`` is None, and the judge compares their p99s instead.

``partial`` is set when the answer carries ``warnings`` (Prometheus's only way of saying an answer
may be incomplete, e.g. a federated or remote-read source did not answer) or when the last step
lies in the future of this process's clock. A window ending shortly before now is *not* partial:
the analysis asks only for periods that have ended, Prometheus ingests a scrape as it happens,
and ``increase`` extrapolates to the step's edge, so waiting for one more scrape would change the
answer by at most one scrape interval's worth while making every window of a step inconclusive.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from string import Template
from typing import Any

import httpx

from rfs_deploy.config.model import PrometheusSettings
from rfs_deploy.config.secrets import MASKED, SAVED_PLACEHOLDER, locked_hint, redact, remember
from rfs_deploy.errors import MetricsUnavailable
from rfs_deploy.logs import get_logger
from rfs_deploy.metrics.base import Readings, SlotMetrics, SlotSource, aggregate

__all__ = ["KINDS", "PrometheusProvider", "SigV4", "render", "steps"]

_log = get_logger(__name__)

#: The configured queries, in the order they are asked (requests first: p99 needs its steps).
KINDS = ("requests", "errors", "p99", "cpu")
#: Answers worth one more attempt: the server (or a proxy before it) is busy or restarting.
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_BACKOFF = 0.5
#: How much of a server's error text a reason keeps.
_REASON_CHARS = 300
#: What a header holds when its secret was not decrypted here.
_LOCKED = (MASKED, SAVED_PLACEHOLDER)


def steps(start: float, end: float, period: int) -> list[float]:
    """The evaluation timestamps of [start, end): the end of each whole period, the last at ``end``.

    A window shorter than a period still gets one step (at ``end``, covering the period before
    it); a window that is not a whole number of periods is aligned to its end.
    """
    count = max(1, math.floor((end - start) / period + 1e-9))
    return [end - (count - 1 - i) * period for i in range(count)]


def _literal(value: str) -> str:
    """``value`` escaped for the inside of a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(query: str, source: SlotSource, period: int) -> str:
    """``query`` with its ``$placeholders`` substituted for one slot (``$period`` as ``60s``)."""
    return Template(query).substitute(
        service=_literal(source.service),
        slot=_literal(source.slot),
        version=_literal(source.version or ""),
        target_group=_literal(source.target_group),
        asg=_literal(source.asg_name),
        period=f"{int(period)}s",
    )


def _stamp(moment: float) -> str:
    return f"{moment:.3f}"


class SigV4(httpx.Auth):
    """Signs each request with AWS Signature Version 4 (botocore's signer), as Amazon Managed
    Service for Prometheus requires; credentials come from the default chain, resolved once.

    Only ``host``, ``content-type`` and the ``x-amz-*`` headers are signed: what httpx or a proxy
    may add or rewrite on the way (``Connection``, ``Accept-Encoding``) stays out of the signature.
    """

    requires_request_body = True

    def __init__(self, region: str, service: str = "aps", credentials: Any = None) -> None:
        self.region = region
        self.service = service
        self._credentials = credentials

    def _frozen(self) -> Any:
        import botocore.exceptions
        import botocore.session

        try:
            if self._credentials is None:
                self._credentials = botocore.session.get_session().get_credentials()
            if self._credentials is None:
                raise MetricsUnavailable("no AWS credentials found to sign Prometheus requests (sigv4)")
            return self._credentials.get_frozen_credentials()
        except botocore.exceptions.BotoCoreError as exc:  # an expired SSO session, a role not assumable
            raise MetricsUnavailable(f"AWS credentials to sign Prometheus requests (sigv4): {exc}") from None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = (
            {"Content-Type": request.headers["Content-Type"]} if "Content-Type" in request.headers else {}
        )
        signed = AWSRequest(
            method=request.method, url=str(request.url), data=request.content, headers=headers
        )
        SigV4Auth(self._frozen(), self.service, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        yield request


class PrometheusProvider:
    """:class:`~rfs_deploy.metrics.base.MetricsProvider` over ``POST /api/v1/query_range``.

    ``client`` is for tests and callers that share a connection pool (its own timeout is
    overridden by ``settings.timeout``); without one the provider makes its own, which
    :meth:`close` closes. ``clock`` is the time :attr:`Readings.partial` compares the last step with.
    """

    name = "prometheus"

    def __init__(
        self,
        settings: PrometheusSettings,
        client: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._endpoint = settings.url.rstrip("/") + "/api/v1/query_range"
        url = httpx.URL(settings.url)
        #: What reasons name the server by: host and port, never a path or credentials.
        self.host = f"{url.host}:{url.port}" if url.port else url.host
        self._headers = {name: value.get_secret_value() for name, value in settings.headers.items()}
        # header values are secrets: redacted in logs and reasons (the mask of one not decrypted
        # here is no secret, and stops every read below)
        remember(v for v in self._headers.values() if v not in _LOCKED)
        self._auth = SigV4(settings.sigv4.region, settings.sigv4.service) if settings.sigv4 else None
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=settings.timeout)
        self._clock = clock
        self._sleep = sleep

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> PrometheusProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, sources: Sequence[SlotSource], start: float, end: float, period: int) -> Readings:
        locked = [name for name, value in self._headers.items() if value in _LOCKED]
        if locked:
            raise MetricsUnavailable(f"analysis.metrics.headers.{locked[0]} is {locked_hint()}")
        at = steps(start, end, period)
        partial = at[-1] > self._clock()
        slots: dict[str, SlotMetrics | None] = {}
        for source in sources:
            values: dict[str, dict[float, float] | None] = {}
            for kind in KINDS:
                query = getattr(self.settings.queries, kind)
                if query is None:
                    values[kind] = None
                    continue
                found, warned = self._query(kind, source, render(query, source, period), at, period)
                values[kind] = found
                partial = partial or warned
                if kind == "requests" and not found:
                    break  # no request data: the slot is None whatever the other queries say
            requests = values["requests"] or {}
            p99 = values.get("p99")
            if p99 is not None:
                # a histogram that did not move has a NaN quantile: no latency, not a broken metric
                p99 = {t: v for t, v in p99.items() if not (math.isnan(v) and not requests.get(t))}
            slots[source.slot] = aggregate(
                list(requests.values()),
                _listed(values.get("errors")),
                _listed(p99),
                _listed(values.get("cpu")),
            )
        return Readings(slots, partial=partial)

    # ------------------------------------------------------------------ one request

    def _query(
        self, kind: str, source: SlotSource, query: str, at: Sequence[float], period: int
    ) -> tuple[dict[float, float], bool]:
        """The query's value at each of ``at`` that Prometheus answered (by step), and whether
        the answer came with warnings."""
        what = f"{kind} query for {source.service}/{source.slot}"
        form = {"query": query, "start": _stamp(at[0]), "end": _stamp(at[-1]), "step": f"{int(period)}s"}
        body = self._post(what, form)
        data = body.get("data")
        if not isinstance(data, Mapping) or data.get("resultType") != "matrix":
            kind_of = data.get("resultType") if isinstance(data, Mapping) else None
            raise self._unavailable(what, f"the answer is a {kind_of or 'malformed'} result, not a matrix")
        result = data.get("result")
        if not isinstance(result, list):
            raise self._unavailable(what, "the answer's result is not a list of series")
        warnings = body.get("warnings") or []
        if warnings:
            _log.warning("prometheus at %s: %s: %s", self.host, what, "; ".join(map(str, warnings)))
        if not result:
            return {}, bool(warnings)
        if len(result) > 1:
            raise self._unavailable(
                what,
                f"returned {len(result)} series; the {kind} query must aggregate to one series per "
                "slot (e.g. wrap it in sum(...))",
            )
        wanted = {round(t * 1000): t for t in at}
        values: dict[float, float] = {}
        try:
            for stamp, text in result[0].get("values") or []:
                moment = wanted.get(round(float(stamp) * 1000))
                if moment is not None:
                    values[moment] = float(text)
        except (TypeError, ValueError, AttributeError):
            raise self._unavailable(what, "the answer's values are not [timestamp, number] pairs") from None
        if not values and result[0].get("histograms"):
            raise self._unavailable(what, "the answer holds native histograms, not numbers")
        return values, bool(warnings)

    def _post(self, what: str, form: dict[str, str]) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = self._client.post(
                    self._endpoint,
                    data=form,
                    headers={**self._headers, "Accept": "application/json"},
                    auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
                    timeout=self.settings.timeout,
                )
            except httpx.TimeoutException:
                raise self._unavailable(what, f"no answer within {self.settings.timeout:g}s") from None
            except httpx.TransportError as exc:
                if attempt < self.settings.retries:
                    attempt = self._pause(attempt)
                    continue
                raise self._unavailable(
                    what, f"the server cannot be reached ({exc or type(exc).__name__})"
                ) from None
            except httpx.RequestError as exc:  # an answer that cannot be decoded
                raise self._unavailable(
                    what, f"the answer cannot be read ({exc or type(exc).__name__})"
                ) from None
            if response.status_code in _RETRY_STATUS and attempt < self.settings.retries:
                attempt = self._pause(attempt)
                continue
            return self._decode(what, response)

    def _pause(self, attempt: int) -> int:
        self._sleep(_BACKOFF * 2**attempt)
        return attempt + 1

    def _decode(self, what: str, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and body.get("status") == "error":
            error = f"{body.get('errorType') or 'error'}: {body.get('error') or 'no detail'}"
            raise self._unavailable(what, f"HTTP {response.status_code} {error}")
        if response.status_code >= 400:
            text = _first_line(response.text) or response.reason_phrase
            raise self._unavailable(what, f"HTTP {response.status_code} {text}")
        if not isinstance(body, dict):
            raise self._unavailable(what, f"HTTP {response.status_code} with a body that is not JSON")
        if body.get("status") != "success":
            raise self._unavailable(what, f"the answer's status is {body.get('status')!r}, not 'success'")
        return body

    def _unavailable(self, what: str, reason: str) -> MetricsUnavailable:
        text = f"prometheus at {self.host}: {what}: {_first_line(reason)}"
        return MetricsUnavailable(redact(text, self._headers.values()))


def _listed(values: Mapping[float, float] | None) -> list[float] | None:
    return None if values is None else list(values.values())


def _first_line(value: object) -> str:
    """One line of ``value``'s text, whitespace collapsed, cut to a readable length."""
    text = " ".join(str(value).split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"
