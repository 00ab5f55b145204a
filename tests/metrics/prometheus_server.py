"""A real Prometheus server for the tests, loaded with traffic the tests describe.

:class:`Traffic` turns "what each slot served, minute by minute" into OpenMetrics text as a
15-second scrape would have recorded it: ``http_requests_total{service,slot,code}`` counters,
an ``http_request_duration_seconds`` histogram and a ``process_cpu_percent`` gauge. The counters
are exact at every minute boundary, so ``increase(...[60s])`` evaluated at a boundary is exactly
that minute's count (Prometheus 2's range selectors include both ends; the samples on both
edges leave nothing to extrapolate).

:func:`start_prometheus` backfills the text into TSDB blocks with ``promtool tsdb
create-blocks-from openmetrics`` and starts Debian's ``prometheus`` on 127.0.0.1 with no scrape
jobs, so the head block stays empty and the backfilled past is all it holds; retention is a
century, so nothing is deleted however old the data. Tests skip when the binaries are absent.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

#: Upper bounds of the latency histogram's buckets, in seconds (+Inf last).
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)
SCRAPE = 15
#: Seconds after each minute boundary the gauge is scraped at: off the boundary, as real scrapes
#: are, so ``avg_over_time(...[60s])`` at a boundary sees only the minute before it.
GAUGE_OFFSET = 5
SKIP_REASON = "prometheus not installed (apt-get install prometheus)"


@dataclass(frozen=True)
class Minute:
    """What one slot served in one minute: ``slow`` of its requests took ``slow_seconds``, the
    rest ``fast_seconds``; ``cpu`` is the fleet's CPU percent (NaN allowed)."""

    requests: int
    errors: int = 0
    fast_seconds: float = 0.02
    slow_seconds: float = 0.2
    slow: int = 0
    cpu: float = 35.0

    def __post_init__(self) -> None:
        assert 0 <= self.errors <= self.requests and 0 <= self.slow <= self.requests, self

    def bucket_counts(self) -> list[int]:
        """Requests per bucket (not cumulative), in :data:`BUCKETS` order."""
        counts = [0] * len(BUCKETS)
        counts[_bucket(self.fast_seconds)] += self.requests - self.slow
        counts[_bucket(self.slow_seconds)] += self.slow
        return counts


def _bucket(seconds: float) -> int:
    return next(i for i, bound in enumerate(BUCKETS) if seconds <= bound)


def histogram_quantile(q: float, counts: list[int]) -> float:
    """Prometheus's ``histogram_quantile`` over one step's per-bucket counts (linear within the
    bucket, the lowest bucket starting at 0) — what the server must answer for that step."""
    total = sum(counts)
    if total == 0:
        return math.nan
    rank = q * total
    below = 0
    for i, count in enumerate(counts):
        if below + count >= rank and count > 0:
            lower = 0.0 if i == 0 else BUCKETS[i - 1]
            upper = BUCKETS[i]
            if math.isinf(upper):
                return BUCKETS[i - 1]
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return BUCKETS[-2]


#: (service, slot, minute start) -> what the slot served that minute, or None for nothing.
Schedule = Callable[[str, str, int], Minute | None]


@dataclass
class Traffic:
    """Per-slot traffic over [start, end) (whole minutes, epoch-aligned), as scraped series."""

    start: int
    end: int
    slots: list[tuple[str, str]]
    schedule: Schedule

    def openmetrics(self) -> str:
        assert self.start % 60 == 0 and self.end % 60 == 0 and self.end > self.start
        requests: list[str] = []
        buckets: list[str] = []
        cpu: list[str] = []
        for service, slot in self.slots:
            minutes = [(t, self.schedule(service, slot, t)) for t in range(self.start, self.end, 60)]
            if all(m is None for _, m in minutes):
                continue
            labels = f'service="{service}",slot="{slot}"'
            codes = ["200", "500"] if any(m and m.errors for _, m in minutes) else ["200"]
            for code in codes:
                requests += _counter(
                    f'http_requests_total{{{labels},code="{code}"}}',
                    minutes,
                    lambda m, code=code: (m.requests - m.errors) if code == "200" else m.errors,
                )
            for i, bound in enumerate(BUCKETS):
                le = "+Inf" if math.isinf(bound) else repr(bound)
                buckets += _counter(
                    f'http_request_duration_seconds_bucket{{{labels},le="{le}"}}',
                    minutes,
                    lambda m, i=i: sum(m.bucket_counts()[: i + 1]),
                )
            buckets += _counter(
                f"http_request_duration_seconds_count{{{labels}}}", minutes, lambda m: m.requests
            )
            for t, m in minutes:
                if m is not None:
                    for j in range(60 // SCRAPE):
                        value = "NaN" if math.isnan(m.cpu) else repr(m.cpu)
                        cpu.append(f"process_cpu_percent{{{labels}}} {value} {t + GAUGE_OFFSET + j * SCRAPE}")
        return "\n".join(
            [
                "# TYPE http_requests counter",
                *requests,
                "# TYPE http_request_duration_seconds histogram",
                *buckets,
                "# TYPE process_cpu_percent gauge",
                *cpu,
                "# EOF",
                "",
            ]
        )


def _counter(
    name: str, minutes: list[tuple[int, Minute | None]], per_minute: Callable[[Minute], int]
) -> list[str]:
    """A counter scraped every 15 s: exact at each minute boundary, spread evenly within the minute.

    A minute without traffic adds nothing but is still scraped (the counter exists, flat), so a
    slot that went idle has zero ``increase``, not a missing series.
    """
    lines: list[str] = []
    total = 0
    scrapes = 60 // SCRAPE
    for t, m in minutes:
        count = per_minute(m) if m is not None else 0
        for j in range(scrapes):
            lines.append(f"{name} {total + count * j // scrapes} {t + j * SCRAPE}")
        total += count
    last = minutes[-1][0] + 60
    lines.append(f"{name} {total} {last}")
    return lines


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def binaries() -> tuple[str, str]:
    """The paths of ``prometheus`` and ``promtool``, or skip the test saying how to install them."""
    server, tool = shutil.which("prometheus"), shutil.which("promtool")
    if server is None or tool is None:
        pytest.skip(SKIP_REASON)
    return server, tool


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_prometheus(workdir: Path, openmetrics: str, ready_timeout: float = 60.0) -> PrometheusServer:
    """Backfill ``openmetrics`` into blocks under ``workdir`` and serve them on a free port."""
    server, tool = binaries()
    data = workdir / "data"
    data.mkdir(parents=True)
    source = workdir / "series.om"
    source.write_text(openmetrics)
    made = subprocess.run(
        [tool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(source), str(data)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if made.returncode != 0:
        raise RuntimeError(f"promtool could not build blocks: {made.stderr.strip() or made.stdout.strip()}")
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    log = workdir / "prometheus.log"
    for _ in range(3):  # the free port may be taken between asking and binding
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    server,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    "--storage.tsdb.retention.time=100y",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--web.enable-lifecycle",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        found = PrometheusServer(f"http://127.0.0.1:{port}", process, log)
        if _wait_ready(found, ready_timeout):
            return found
        found.stop()
        if "address already in use" not in log.read_text(errors="replace"):
            break
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"prometheus did not become ready:\n{tail}")


def _wait_ready(server: PrometheusServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


def serve(workdir: Path, traffic: Traffic) -> Iterator[PrometheusServer]:
    """A fixture body: the server for ``traffic``, stopped afterwards."""
    found = start_prometheus(workdir, traffic.openmetrics())
    try:
        yield found
    finally:
        found.stop()
