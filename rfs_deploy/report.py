"""The timeline report of one deployment: a PNG and an HTML page a person can open.

Three panels over (virtual) time — the traffic weight per slot, the 5xx rate per slot and the p99
latency per slot — with a line at every step boundary, a marker for every failed verdict and a
band from the rollback on. The HTML page embeds the picture and lists the steps and the verdicts
with their reasons. Only numbers and messages from the record are drawn: no config value.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from rfs_deploy.drive.records import DeploymentRecord, Sample
from rfs_deploy.errors import InvalidInput, RfsDeployError

COLOURS = {"blue": "#1f77b4", "green": "#2ca02c"}


def render_png(record: DeploymentRecord) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = record.started_at
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    ax_w, ax_e, ax_p = axes
    times = [(s.at - t0) / 60 for s in record.samples]
    for slot in ("blue", "green"):
        colour = COLOURS[slot]
        ax_w.step(
            times,
            [s.weights.get(slot, 0) for s in record.samples],
            where="post",
            marker=".",  # a deployment that failed before moving traffic has a single sample
            color=colour,
            label=slot,
        )
        rates = [_val(s.slots.get(slot, {}).get("error_rate"), 100) for s in record.samples]
        p99s = [_val(s.slots.get(slot, {}).get("p99"), 1) for s in record.samples]
        ax_e.plot(times, rates, marker=".", color=colour, label=slot)
        ax_p.plot(times, p99s, marker=".", color=colour, label=slot)
    if record.samples:
        policy = record.verdicts[0].numbers if record.verdicts else {}
        if policy.get("max_error_rate") is not None:
            ax_e.axhline(100 * float(policy["max_error_rate"]), color="red", ls=":", lw=1, label="threshold")
        if policy.get("max_p99_latency") is not None:
            ax_p.axhline(float(policy["max_p99_latency"]), color="red", ls=":", lw=1, label="threshold")
    for step in record.steps:
        for ax in axes:
            ax.axvline((step.started_at - t0) / 60, color="#999", lw=0.6, ls="--")
        ax_w.annotate(
            f"{step.index + 1}",
            ((step.started_at - t0) / 60, 102),
            fontsize=7,
            color="#555",
            annotation_clip=False,
        )
    for verdict in record.verdicts:
        if verdict.outcome == "FAIL":
            ax_e.plot([(verdict.at - t0) / 60], [0], marker="x", color="red", ms=9)
    for sample in probe_samples(record):
        # numbers for a slot no user is sent to: the load probe's own requests (blue-green)
        ax_p.annotate(
            "probe",
            ((sample.at - t0) / 60, 0),
            xytext=(0, 4),
            textcoords="offset points",
            fontsize=7,
            color="#555",
            ha="center",
            xycoords=("data", "axes fraction"),
        )
    failed = next((s for s in record.steps if s.outcome == "failed"), None)
    if failed is not None and failed.ended_at is not None and record.ended_at is not None:
        for ax in axes:
            ax.axvspan((failed.ended_at - t0) / 60, (record.ended_at - t0) / 60, color="red", alpha=0.08)
    ax_w.set_ylabel("traffic weight %")
    ax_w.set_ylim(-5, 110)
    ax_e.set_ylabel("5xx rate %")
    ax_p.set_ylabel("p99 latency s")
    ax_p.set_xlabel("minutes since start")
    for ax in axes:
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{record.service} {record.previous_version} → {record.version} "
        f"({record.strategy}) — {record.status.value}"
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


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
