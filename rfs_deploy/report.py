"""The timeline report of one deployment: a PNG and an HTML page a person can open.

Four panels over (virtual) time — the traffic weight per slot, the 5xx rate, the p99 latency and
the CPU per slot — with a line at every step boundary, a marker for every failed verdict on the
panel of the metric that failed, at the value that failed, the datapoints of an alarm that ended
a step, and a band from the rollback on. The HTML page embeds the picture and lists the steps and
the verdicts with their reasons. Only numbers and messages from the record are drawn: no config
value.

:func:`timeline` computes what is drawn (series, thresholds, markers, labels) from the record, so
what the picture shows can be checked without reading pixels; :func:`render_png` only draws it.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rfs_deploy.drive.records import DeploymentRecord, Sample, VerdictRecord
from rfs_deploy.errors import InvalidInput, RfsDeployError

COLOURS = {"blue": "#1f77b4", "green": "#2ca02c"}
#: Blue solid and wide under green dashed and narrow: two equal weights (an A/B test's 50/50)
#: stay both visible where the lines lie on each other.
STYLES: dict[str, dict[str, Any]] = {
    "blue": {"ls": "-", "lw": 3.0, "marker": "o", "ms": 4, "zorder": 2},
    "green": {"ls": "--", "lw": 1.6, "marker": "x", "ms": 5, "zorder": 3},
}
#: The metric panels: the record's metric, its axis label and the factor from record to axis units.
METRIC_PANELS: dict[str, tuple[str, float]] = {
    "error_rate": ("5xx rate %", 100.0),
    "p99": ("p99 latency s", 1.0),
    "cpu": ("CPU %", 1.0),
}
PANELS = ("weight", *METRIC_PANELS)
#: The verdict numbers holding each metric's threshold (the judge's policy numbers).
_THRESHOLD_NUMBERS = {"error_rate": "max_error_rate", "p99": "max_p99_latency", "cpu": "max_cpu"}
#: How a judge's FAIL reason starts, per metric ("probe: " and "variant B: " prefixes aside).
_REASON_PREFIXES = (("error rate", "error_rate"), ("p99", "p99"), ("cpu", "cpu"))
#: Step starts closer than this share of the time axis get their labels on alternate rows.
_LABEL_GAP = 0.04


@dataclass(frozen=True)
class Marker:
    """A failed verdict: on ``panel`` (a metric, or ``weight`` when the metric is not known), at
    ``x`` minutes and ``y`` in the panel's units."""

    panel: str
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class StepLabel:
    """The steps that started at ``x`` minutes (``text`` like ``4-5``) and the label's row."""

    x: float
    text: str
    row: int


@dataclass
class Timeline:
    """What the PNG shows, in axis units: minutes since start on x."""

    #: (panel, slot) -> points; weights hold from an observing step's start to its samples.
    series: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    #: panel -> the datapoints of the alarm that ended a step: (period start, period end, value).
    alarm_points: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    markers: list[Marker] = field(default_factory=list)
    step_starts: list[float] = field(default_factory=list)
    step_labels: list[StepLabel] = field(default_factory=list)
    #: "1 deploy-idle · 2 wait-healthy · ...": what the step numbers stand for.
    legend: str = ""
    #: (from, to, text) of the rollback, None when there was none.
    rollback: tuple[float, float, str] | None = None
    #: slot -> (x, weight) the rollback restored (the old version's slot back at 100 %).
    restored: dict[str, tuple[float, float]] = field(default_factory=dict)
    probes: list[float] = field(default_factory=list)


def timeline(record: DeploymentRecord) -> Timeline:
    """The report's data model of ``record`` (see :class:`Timeline`)."""
    t0 = record.started_at
    tl = Timeline()

    def minutes(at: float) -> float:
        return (at - t0) / 60

    starts = {s.index: s.started_at for s in record.steps}
    for slot in COLOURS:
        points: list[tuple[float, float]] = []
        seen_steps: set[int] = set()
        for sample in record.samples:
            weight = float(sample.weights.get(slot, 0))
            if sample.step not in seen_steps and sample.step in starts:
                # an observing step changes no weight: the weights of its first sample held from its start
                seen_steps.add(sample.step)
                points.append((minutes(starts[sample.step]), weight))
            points.append((minutes(sample.at), weight))
        tl.series[("weight", slot)] = points
        for metric, (_, scale) in METRIC_PANELS.items():
            tl.series[(metric, slot)] = [
                (minutes(s.at), _val(s.slots.get(slot, {}).get(metric), scale)) for s in record.samples
            ]
    for verdict in record.verdicts:
        for metric, key in _THRESHOLD_NUMBERS.items():
            if metric not in tl.thresholds and verdict.numbers.get(key) is not None:
                tl.thresholds[metric] = float(verdict.numbers[key]) * METRIC_PANELS[metric][1]
    for verdict in record.verdicts:
        if verdict.outcome != "FAIL":
            continue
        failed, value = failed_metric(verdict)
        numbers = verdict.numbers
        if failed is not None and numbers.get("source") == "alarm":
            scale = METRIC_PANELS[failed][1]
            if numbers.get("threshold") is not None:
                tl.thresholds[failed] = float(numbers["threshold"]) * scale
            period = float(numbers.get("period") or 60)
            for point in numbers.get("datapoints") or []:
                if point.get("at") is not None and point.get("value") is not None:
                    at = float(point["at"])
                    tl.alarm_points.setdefault(failed, []).append(
                        (minutes(at), minutes(at + period), float(point["value"]) * scale)
                    )
        if failed is None or value is None:
            weight = _new_weight(record, verdict)
            tl.markers.append(Marker("weight", minutes(verdict.at), weight, verdict.reason))
        else:
            tl.markers.append(
                Marker(failed, minutes(verdict.at), value * METRIC_PANELS[failed][1], verdict.reason)
            )
    _steps(record, tl, minutes)
    _rollback(record, tl, minutes)
    tl.probes = [minutes(s.at) for s in probe_samples(record)]
    return tl


def failed_metric(verdict: VerdictRecord) -> tuple[str | None, float | None]:
    """The metric a FAIL verdict failed on (``error_rate``, ``p99``, ``cpu`` or None) and the
    value that failed, in the record's units: an alarm's own metric and breaching value, or the
    judge's first reason ("error rate 7.00% > 5.00%; p99 ...") and the new slot's number."""
    numbers = verdict.numbers
    if numbers.get("source") == "alarm":
        metric = numbers.get("metric")
        if metric not in METRIC_PANELS:
            return None, None
        value = numbers.get("value")
        if value is None:
            value = numbers.get(metric)
        return metric, None if value is None else float(value)
    reason = verdict.reason.lower()
    for prefix in ("probe: ", "variant b: "):
        reason = reason.removeprefix(prefix)
    for start, metric in _REASON_PREFIXES:
        if reason.startswith(start):
            value = numbers.get(metric)
            return metric, None if value is None else float(value)
    return None, None


def _new_weight(record: DeploymentRecord, verdict: VerdictRecord) -> float:
    sample = next((s for s in reversed(record.samples) if s.at <= verdict.at), None)
    if sample is None or not sample.new_slot:
        return 0.0
    return float(sample.weights.get(sample.new_slot, 0))


def _steps(record: DeploymentRecord, tl: Timeline, minutes: Any) -> None:
    """Step boundaries and their labels: steps starting at the same moment share one label
    ("3-4"), and labels closer than :data:`_LABEL_GAP` of the axis go on alternate rows."""
    steps = sorted(record.steps, key=lambda s: (s.started_at, s.index))
    groups: list[tuple[float, list[int]]] = []
    for step in steps:
        x = minutes(step.started_at)
        if groups and abs(groups[-1][0] - x) < 1e-6:
            groups[-1][1].append(step.index + 1)
        else:
            groups.append((x, [step.index + 1]))
    end = minutes(record.ended_at) if record.ended_at is not None else (groups[-1][0] if groups else 0.0)
    span = max(end - (groups[0][0] if groups else 0.0), 1e-9)
    row, last = 0, None
    for x, numbers in groups:
        tl.step_starts.append(x)
        row = (1 - row) if last is not None and (x - last) / span < _LABEL_GAP else 0
        text = str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}"
        tl.step_labels.append(StepLabel(x, text, row))
        last = x
    tl.legend = " · ".join(
        f"{s.index + 1} {_short(s.kind, s.description)}" for s in sorted(steps, key=lambda s: s.index)
    )


def _short(kind: str, description: str) -> str:
    if kind == "set-weight":
        return description.removeprefix("set ")
    return kind


def _rollback(record: DeploymentRecord, tl: Timeline, minutes: Any) -> None:
    if record.rolled_back_to is None and record.rollback_attempts == 0:
        return
    failed = next((s for s in record.steps if s.outcome == "failed"), None)
    ended = [s.ended_at for s in record.steps if s.ended_at is not None]
    begin = (
        failed.ended_at if failed is not None and failed.ended_at is not None else max(ended, default=None)
    )
    if begin is None or record.ended_at is None:
        return
    attempts = f", {record.rollback_attempts} attempts" if record.rollback_attempts > 1 else ""
    target = f"stack v{record.rolled_back_to}" if record.rolled_back_to is not None else "the checkpoint"
    tl.rollback = (minutes(begin), minutes(record.ended_at), f"rollback to {target}{attempts}")
    new_slot = next((s.new_slot for s in reversed(record.samples) if s.new_slot), "")
    old_slot = next((slot for slot in COLOURS if slot != new_slot), "")
    # Only when the old version had its own slot in play from the first sample on (a canary, an
    # A/B test, a probed blue-green): a rolling release refreshes the live slot in place, so its
    # weights do not move back.
    first = record.samples[0].weights if record.samples else {}
    if record.rolled_back_to is not None and new_slot in COLOURS and first.get(old_slot, 0) > 0:
        for slot in COLOURS:
            tl.restored[slot] = (minutes(record.ended_at), 0.0 if slot == new_slot else 100.0)


def render_png(record: DeploymentRecord) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = timeline(record)
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(11, 8), sharex=True)
    ax_of = dict(zip(PANELS, axes, strict=True))
    for slot, colour in COLOURS.items():
        style = STYLES[slot]
        xs, ys = _xy(tl.series[("weight", slot)])
        # a deployment that failed before moving traffic has a single sample: the marker shows it
        ax_of["weight"].step(xs, ys, where="post", color=colour, label=slot, **style)
        if slot in tl.restored:
            x, y = tl.restored[slot]
            if xs:
                ax_of["weight"].plot([xs[-1], x], [ys[-1], y], color=colour, ls=":", lw=1.2)
            ax_of["weight"].plot([x], [y], marker="s", color=colour, ms=6, ls="none")
        for metric in METRIC_PANELS:
            mx, my = _xy(tl.series[(metric, slot)])
            ax_of[metric].plot(mx, my, color=colour, label=slot, **style)
    for metric, value in tl.thresholds.items():
        ax_of[metric].axhline(value, color="red", ls=":", lw=1, label="threshold")
    for metric, points in tl.alarm_points.items():
        ax = ax_of[metric]
        for i, (x0, x1, value) in enumerate(points):
            ax.hlines(
                value, x0, x1, color="#d62728", lw=4, alpha=0.6, label="alarm datapoints" if i == 0 else None
            )
    for x in tl.step_starts:
        for ax in axes:
            ax.axvline(x, color="#999", lw=0.6, ls="--")
    for label in tl.step_labels:
        ax_of["weight"].annotate(
            label.text,
            (label.x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, 3 + 10 * label.row),
            textcoords="offset points",
            fontsize=7,
            color="#555",
            annotation_clip=False,
        )
    right_end = max(
        [x for points in tl.series.values() for x, _ in points]
        + [m.x for m in tl.markers]
        + ([tl.rollback[1]] if tl.rollback else [])
        + [1e-9]
    )
    for i, marker in enumerate(tl.markers):
        ax = ax_of[marker.panel]
        ax.plot(
            [marker.x],
            [marker.y],
            marker="X",
            color="red",
            ms=11,
            ls="none",
            zorder=5,
            label="failed" if i == 0 or marker.panel != tl.markers[0].panel else None,
        )
        left = marker.x < 0.5 * right_end  # the text runs into the plot, not off its edge
        ax.annotate(
            _clip(marker.label, 70),
            (marker.x, marker.y),
            xytext=(6 if left else -6, 8),
            textcoords="offset points",
            fontsize=7,
            color="#a00",
            ha="left" if left else "right",
        )
    for x in tl.probes:
        # numbers for a slot no user is sent to: the load probe's own requests (blue-green)
        ax_of["p99"].annotate(
            "probe",
            (x, 0),
            xytext=(0, 4),
            textcoords="offset points",
            fontsize=7,
            color="#555",
            ha="center",
            xycoords=("data", "axes fraction"),
        )
    if tl.rollback is not None:
        x0, x1, text = tl.rollback
        for ax in axes:
            ax.axvspan(x0, max(x1, x0 + 1e-3), color="red", alpha=0.08)
        ax_of["weight"].annotate(
            text, (x0, 50), xytext=(-4, 0), textcoords="offset points", fontsize=8, color="#a00", ha="right"
        )
    ax_of["weight"].set_ylabel("traffic weight %")
    ax_of["weight"].set_ylim(-5, 110)
    for metric, (axis_label, _) in METRIC_PANELS.items():
        ax_of[metric].set_ylabel(axis_label)
    axes[-1].set_xlabel("minutes since start")
    for ax in axes:
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{record.service} {record.previous_version} → {record.version} "
        f"({record.strategy}) — {record.status.value}"
    )
    legend = _wrap(tl.legend, 170) if tl.legend else ""
    if legend:
        fig.text(0.01, 0.005, "steps: " + legend, fontsize=7, color="#555", va="bottom")
    fig.tight_layout(rect=(0, 0.02 + 0.014 * (legend.count("\n") + 1) if legend else 0, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _xy(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    return [x for x, _ in points], [y for _, y in points]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _wrap(text: str, width: int) -> str:
    lines: list[str] = []
    line = ""
    for part in text.split(" · "):
        candidate = f"{line} · {part}" if line else part
        if len(candidate) > width and line:
            lines.append(line)
            candidate = part
        line = candidate
    lines.append(line)
    return "\n".join(lines)


def probe_samples(record: DeploymentRecord) -> list[Sample]:
    """Samples measured by the load probe: numbers for a new slot that carried no user traffic."""
    return [
        s
        for s in record.samples
        if s.new_slot and s.weights.get(s.new_slot, 0) == 0 and s.slots.get(s.new_slot)
    ]


def _val(value: object, scale: float) -> float:
    return float("nan") if value is None else float(value) * scale  # type: ignore[arg-type]


def render_html(record: DeploymentRecord, png: bytes) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr class='{esc(s.outcome)}'><td>{s.index + 1}</td><td>{esc(s.kind)}</td>"
        f"<td>{esc(s.description)}</td>"
        f"<td>{esc(s.outcome)}</td><td>{esc(s.reason)}</td></tr>"
        for s in sorted(record.steps, key=lambda s: s.index)
    )
    verdicts = "".join(
        f"<tr class='{esc(v.outcome.lower())}'><td>{v.at - record.started_at:.0f}s</td><td>{v.step + 1}</td>"
        f"<td>{esc(v.outcome)}</td><td>{esc(v.reason)}</td></tr>"
        for v in record.verdicts
    )
    errors = "".join(f"<li>{esc(e)}</li>" for e in record.errors)
    image = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rfs-deploy {esc(record.deployment_id)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:left}}
tr.failed,tr.fail{{background:#fdd}}tr.inconclusive{{background:#ffd}}</style></head><body>
<h1>{esc(record.service)}: {esc(str(record.previous_version))} → {esc(record.version)}</h1>
<p>Deployment <b>{esc(record.deployment_id)}</b> on stack <b>{esc(record.stack)}</b>, strategy
<b>{esc(record.strategy)}</b>: <b>{esc(record.status.value)}</b>
{f"(restored stack version {record.rolled_back_to})" if record.rolled_back_to is not None else ""}
{f"<br>A/B decision: {esc(record.decision)}" if record.decision else ""}
{f"<br>Baseline before the release: {esc(baseline_history(record))}" if record.baseline_history else ""}
{f"<br>To finish: <code>{esc(record.recovery)}</code>" if record.recovery else ""}</p>
<img alt="timeline" style="max-width:100%" src="data:image/png;base64,{image}">
<h2>Steps</h2><table><tr><th>#</th><th>kind</th><th>what</th><th>outcome</th><th>why</th></tr>{rows}</table>
<h2>Verdicts</h2><table><tr><th>at</th><th>step</th><th>outcome</th><th>reason</th></tr>{verdicts}</table>
<h2>Errors</h2><ul>{errors or "<li>none</li>"}</ul>
</body></html>
"""


def check_report_dir(directory: str | Path, flag: str = "--report") -> Path:
    """``directory`` when a report can be written there (it is a directory, or can be made one);
    InvalidInput otherwise. Commands call it before anything runs, so a report directory that is
    a file (or under one, ``/dev/null/x``) fails at once, not after a whole deployment."""
    from rfs_deploy.connect import check_directory

    text = str(directory)
    if not text.strip():
        raise InvalidInput(f"{flag} must name a directory")
    check_directory(Path(text), f"{flag} {text}")
    try:
        import matplotlib  # noqa: F401  (the charts need it at the end: known before anything runs)
    except ImportError:
        raise InvalidInput(
            f"{flag}: the report's charts need matplotlib, which this install does not have: "
            "pip install 'rfs-deploy[report]'"
        ) from None
    return Path(text)


def write_report(record: DeploymentRecord, directory: str | Path) -> tuple[Path, Path]:
    """Write ``<id>.png`` and ``<id>.html`` into ``directory``; returns both paths. ReportError
    (one line) when they cannot be written."""
    record = DeploymentRecord.from_json(record.to_json())  # the texts as saved: secrets redacted
    out = Path(directory)
    png_path = out / f"{record.deployment_id}.png"
    html_path = out / f"{record.deployment_id}.html"
    png = render_png(record)
    try:
        out.mkdir(parents=True, exist_ok=True)
        png_path.write_bytes(png)
        html_path.write_text(render_html(record, png))
    except OSError as exc:
        raise ReportError(f"the report could not be written into {out}: {exc.strerror or exc}") from None
    return png_path, html_path


class ReportError(RfsDeployError):
    """The report files could not be written (the deployment itself is unaffected)."""

    exit_code = 4


def baseline_history(record: DeploymentRecord) -> str:
    """One line of the baseline's hour before the first traffic shift, as the judge used it."""
    from rfs_deploy.drive.history import history_text

    return history_text(record.baseline_history or {})
