"""The load probe: the idle slot judged under load before a blue-green switch.

Blue-green has no partial-traffic phase: its switch moves every user at once, so metrics judged
after the switch judge a version all users already see. The probe closes that gap the way a
person would before flipping the switch: it sends batches of requests through the test listener
(which forwards to the idle slot only) and — with ``compare_live`` — the same requests through
the production listener (the live slot), then judges each batch as one analysis window with the
service's own :class:`~rfs_deploy.config.model.Analysis` policy and the same
:class:`~rfs_deploy.drive.judge.StepJudge` that judges canary steps:

* a 5xx answer, a connection error or a timeout is an error (a user would have seen it);
  4xx answers are the service's business and count as successes;
* a request's latency is its round-trip time on the driver's clock, or the server's own total
  from a W3C ``Server-Timing`` header when that is larger (a real round trip is never shorter
  than the server's part of it; the sandbox's instances report the latency they simulate this
  way, and under its virtual clock the round trip itself takes no time);
* fewer than ``min_requests`` requests per batch are INCONCLUSIVE and carried into the next
  batch, a p99 above tolerance on fewer than a thousand requests must repeat in the next batch,
  and the sequential error-rate test holds the decision while it leans against the new
  version — so a batch of 200 requests neither passes a version on too little data nor fails a
  healthy one on one slow tail.

The probe ends when its judge decides; batches are bounded by the policy's limits (holds,
``max_inconclusive``, ``consecutive_error_limit``), never open-ended.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from rfs_deploy.config.model import Analysis, ValidationSettings
from rfs_deploy.config.secrets import remember
from rfs_deploy.drive.judge import MAX_HOLDS, StepJudge
from rfs_deploy.drive.protocols import Clock, SystemClock
from rfs_deploy.drive.rules import Verdict, Window
from rfs_deploy.metrics.base import SlotMetrics

_SERVER_TIMING = re.compile(r"(?:^|,)\s*(?:total|app)\s*;(?:[^,]*;)?\s*dur=([^,;\s]*)", re.IGNORECASE)


@dataclass(frozen=True)
class Batch:
    """One judged batch: what each listener answered, and the verdict on it."""

    new: SlotMetrics
    live: SlotMetrics | None
    verdict: Verdict


@dataclass(frozen=True)
class ProbeResult:
    """The probe's decision (a finished StepJudge's result) and every batch behind it."""

    verdict: Verdict
    batches: tuple[Batch, ...]

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    @property
    def requests(self) -> int:
        """Requests sent to the idle slot over all batches."""
        return sum(b.new.requests for b in self.batches)


def probe_paths(settings: ValidationSettings) -> list[str]:
    """The paths a batch cycles through: ``probe.paths``, else the critical endpoints, else health."""
    return list(settings.probe.paths or settings.critical_endpoints or [settings.health_path])


def server_timing(response: httpx.Response) -> float | None:
    """Seconds from a ``Server-Timing: total;dur=<ms>`` (or ``app;dur=``) header; None without one.

    A duration that is not a number (``1.2.3``, ``nan``) or too large for a float is NaN or
    infinite: the request's latency is unknown, which makes its batch's p99 no data, never a pass."""
    match = _SERVER_TIMING.search(response.headers.get("server-timing", ""))
    if not match:
        return None
    try:
        return float(match.group(1).strip('"')) / 1000.0
    except ValueError:
        return math.nan


async def run_probe(
    test_url: str,
    live_url: str | None,
    settings: ValidationSettings,
    policy: Analysis,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
    on_batch: Callable[[Batch], None] | None = None,
) -> ProbeResult:
    """Probe ``test_url`` (and ``live_url`` when given) batch by batch until the judge decides.

    Round trips are timed on ``clock`` (default: the wall clock). The driver passes its own
    clock, so under the sandbox's virtual clock a simulated request takes no time of its own and
    its latency is what the simulated server reports — never the sandbox's CPU time.
    ``on_batch`` sees every judged batch as it is decided (the driver records and displays it).
    """
    now = (clock or SystemClock()).now
    headers = {name: value.get_secret_value() for name, value in settings.headers.items()}
    remember(headers.values())  # header values are secrets: redacted wherever text is logged
    judge = StepJudge(policy, baseline=live_url is not None, windows=1)
    batches: list[Batch] = []
    limit = 1 + MAX_HOLDS + policy.max_inconclusive + policy.failure_limit + policy.consecutive_error_limit
    async with httpx.AsyncClient(transport=transport, timeout=settings.timeout, headers=headers) as client:
        for _ in range(limit):
            new = await _batch(client, test_url, settings, now)
            live = await _batch(client, live_url, settings, now) if live_url is not None else None
            verdict = judge.observe(Window(new=new, baseline=live))
            batch = Batch(new, live, verdict)
            batches.append(batch)
            if on_batch is not None:
                on_batch(batch)
            if judge.result is not None:
                return ProbeResult(judge.result, tuple(batches))
    raise AssertionError("the probe's judge always decides within its limits")  # pragma: no cover


async def _batch(
    client: httpx.AsyncClient, base_url: str, settings: ValidationSettings, now: Callable[[], float]
) -> SlotMetrics:
    """Send one batch to ``base_url``; the slot's requests, errors and p99 latency."""
    probe = settings.probe
    paths = itertools.islice(itertools.cycle(probe_paths(settings)), probe.requests)
    gate = asyncio.Semaphore(probe.concurrency)
    base = base_url.rstrip("/")

    async def one(path: str) -> tuple[bool, float]:
        async with gate:
            started = now()
            try:
                response = await client.get(base + path)
            except httpx.HTTPError:
                return False, now() - started
            elapsed = now() - started
            reported = server_timing(response)
            if reported is None:
                return not response.is_server_error, elapsed
            # max() would drop a NaN; an unknown latency stays unknown
            latency = max(elapsed, reported) if math.isfinite(reported) else reported
            return not response.is_server_error, latency

    answers = await asyncio.gather(*(one(path) for path in paths))
    latencies = sorted(latency for _, latency in answers)
    return SlotMetrics(
        requests=len(answers),
        errors=sum(1 for ok, _ in answers if not ok),
        p99=_p99(latencies),
    )


def _p99(ordered: list[float]) -> float | None:
    """The 99th percentile of sorted values (nearest rank, as CloudWatch's p99 of a period); a
    value that is not finite is returned instead (NaN first: sorting cannot place one), since an
    unknown latency may be the slowest — the judge takes it as no data."""
    if not ordered:
        return None
    odd = [v for v in ordered if not math.isfinite(v)]
    if odd:
        return math.nan if any(math.isnan(v) for v in odd) else odd[-1]
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
