"""The dashboard's one page: HTML, CSS and the script that polls ``/api/state`` every second.

The script builds every element with ``textContent`` (never ``innerHTML`` with data), so text
from the journal cannot inject markup. Element ids the browser test reads: ``deployments``
(rows with ``data-id``), ``detail-id``, ``detail-status``, ``detail-what``, ``detail-step``,
``detail-weights``, ``detail-paused``, ``verdicts``, ``timeline``, the buttons ``btn-promote`` /
``btn-pause`` / ``btn-abort``, ``actions``, ``error`` (a refused press stays there until the next
press; the state's own error is replaced by each poll) and ``updated``.
"""

from __future__ import annotations

import html

#: The header the page's API calls carry the token in.
TOKEN_HEADER = "X-RFS-Token"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>rfs-deploy: __STACK__</title>
<style nonce="__NONCE__">
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .6em; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; }
td, th { padding: .2em .6em; text-align: left; border-bottom: 1px solid #ddd; }
tr.row { cursor: pointer; } tr.selected { background: #e8f0fe; }
.status { font-weight: 600; }
.COMPLETED { color: #137333; } .ROLLED_BACK, .FAILED { color: #b3261e; }
.PAUSED { color: #b06000; } .IN_PROGRESS { color: #1a5fb4; }
#error { color: #b3261e; } #detail { margin-top: 1em; }
button { margin-right: .5em; padding: .3em 1em; }
pre { background: #f6f6f6; padding: .4em; white-space: pre-wrap; margin: .2em 0; }
.muted { color: #666; }
</style>
</head>
<body>
<h1>rfs-deploy — stack <span id="stack">__STACK__</span></h1>
<div id="error"></div>
<div class="muted">updated <span id="updated">never</span></div>
<h2>Deployments</h2>
<table><thead><tr><th>id</th><th>service</th><th>version</th><th>strategy</th><th>status</th>
<th>step</th><th>started</th></tr></thead><tbody id="deployments"></tbody></table>
<div id="detail" hidden>
<h2>Deployment <span id="detail-id"></span></h2>
<div><span id="detail-status" class="status"></span> <span id="detail-what"></span></div>
<div id="detail-step"></div>
<div id="detail-weights"></div>
<div id="detail-paused"></div>
<div id="buttons">
<button id="btn-promote" type="button">promote</button>
<button id="btn-pause" type="button">pause</button>
<button id="btn-abort" type="button">abort</button>
</div>
<h2>Timeline</h2>
<svg id="timeline" width="900" height="152" role="img" aria-label="steps over time"></svg>
<h2>Steps</h2>
<table><thead><tr><th>#</th><th>step</th><th>outcome</th><th>reason</th></tr></thead>
<tbody id="steps"></tbody></table>
<h2>Verdicts</h2>
<table><thead><tr><th>step</th><th>outcome</th><th>reason</th><th>numbers</th></tr></thead>
<tbody id="verdicts"></tbody></table>
</div>
<h2>Commands run from this page</h2>
<div id="actions"><span class="muted">none yet</span></div>
<script nonce="__NONCE__">
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const SVG = "http://www.w3.org/2000/svg";
let selected = null;   // a deployment id the user clicked; else the newest is shown
let current = null;    // the deployment shown
let refused = "";      // why the last press was refused: shown until the next press

function showError(text) {
  document.getElementById("error").textContent = [text, refused].filter(Boolean).join(" · ");
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function when(t) { return t ? new Date(t * 1000).toISOString().replace(".000", "") : ""; }
function pct(w) { return w === null || w === undefined ? "?" : w + " %"; }

async function api(path, options) {
  const init = Object.assign({headers: {}}, options || {});
  init.headers[__HEADER__] = TOKEN;
  const response = await fetch(path, init);
  return [response.status, await response.json()];
}

function renderList(deployments) {
  const body = document.getElementById("deployments");
  body.replaceChildren();
  for (const d of deployments) {
    const tr = el("tr", null, "row");
    tr.dataset.id = d.deployment_id;
    if (current && d.deployment_id === current.deployment_id) tr.classList.add("selected");
    const step = d.step ? d.step + "/" + d.total_steps : "";
    for (const text of [d.deployment_id, d.service, (d.from_version || "?") + " → " + d.version,
                        d.strategy, d.status, step, when(d.started_at)]) tr.append(el("td", text));
    tr.children[4].className = "status " + d.status;
    tr.addEventListener("click", () => { selected = d.deployment_id; refresh(); });
    body.append(tr);
  }
}

function stepText(d) {
  if (!d.step) return "";
  const s = (d.steps || []).find(x => x.index === d.step - 1);
  return "step " + d.step + "/" + d.total_steps + (s ? ": " + s.description : "");
}

function weightsText(d) {
  const w = d.weights;
  if (!w) return "weights: not in stack history";
  let text = "weights: blue " + pct(w.blue) + " / green " + pct(w.green);
  if (w.new_slot) text += " (" + d.version + " on " + w.new_slot + ": " + pct(w[w.new_slot]) + ")";
  return text;
}

function renderTimeline(d, now) {
  const svg = document.getElementById("timeline");
  svg.replaceChildren();
  const steps = d.steps || [];
  const samples = d.samples || [];
  const start = d.started_at || (steps[0] && steps[0].started_at) || now;
  let end = d.ended_at || 0;
  for (const s of steps) end = Math.max(end, s.ended_at || s.started_at || 0);
  for (const s of samples) end = Math.max(end, s.at);
  if (!d.ended_at && d.status !== "PAUSED") end = Math.max(end, now);
  const span = Math.max(end - start, 1), width = 880, left = 10;
  const x = t => left + (Math.max(t, start) - start) / span * width;
  const colors = {passed: "#81c995", failed: "#f28b82", skipped: "#ccc", paused: "#fdd663",
                  running: "#8ab4f8"};
  steps.forEach((s, i) => {
    const r = document.createElementNS(SVG, "rect");
    const x0 = x(s.started_at), x1 = x(s.ended_at || end);
    r.setAttribute("x", x0); r.setAttribute("y", 10 + (i % 3) * 14);
    r.setAttribute("width", Math.max(x1 - x0, 3)); r.setAttribute("height", 12);
    r.setAttribute("fill", colors[s.outcome] || "#8ab4f8");
    r.dataset.outcome = s.outcome;
    const title = document.createElementNS(SVG, "title");
    title.textContent = (s.index + 1) + ". " + s.description + ": " + s.outcome +
      (s.reason ? " — " + s.reason : "");
    r.append(title);
    svg.append(r);
  });
  const label = (x0, y0, words, anchor) => {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", x0); t.setAttribute("y", y0); t.setAttribute("font-size", 11);
    t.setAttribute("fill", "#666"); t.setAttribute("text-anchor", anchor || "start");
    t.textContent = words;
    svg.append(t);
  };
  label(left, 148, when(start));
  label(left + width, 148, when(end), "end");
  label(left + width / 2, 148, "bars: steps · line: new version's % of traffic", "middle");
  if (samples.length) {
    const line = document.createElementNS(SVG, "polyline");
    const y = w => 134 - w * 0.8;
    line.setAttribute("points", samples.map(s => x(s.at) + "," + y(s.weight)).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#1a5fb4");
    line.setAttribute("stroke-width", 2);
    const title = document.createElementNS(SVG, "title");
    title.textContent = "weight of the new version, % of traffic";
    line.append(title);
    svg.append(line);
  }
}

function renderRows(id, rows) {
  const body = document.getElementById(id);
  body.replaceChildren();
  for (const cells of rows) {
    const tr = el("tr");
    for (const c of cells) tr.append(el("td", c));
    body.append(tr);
  }
}

function numbers(n) {
  if (!n) return "";
  const shown = v => typeof v === "object" ? JSON.stringify(v) : v;
  return Object.entries(n).map(([k, v]) => k + "=" + shown(v)).join(", ");
}

function renderDetail(d, now) {
  const box = document.getElementById("detail");
  if (!d) { box.hidden = true; return; }
  box.hidden = false;
  document.getElementById("detail-id").textContent = d.deployment_id;
  const status = document.getElementById("detail-status");
  status.textContent = d.status;
  status.className = "status " + d.status;
  document.getElementById("detail-what").textContent =
    d.service + " " + (d.from_version || "?") + " → " + d.version + " (" + d.strategy + "), journal: " +
    (d.journal || "none") + (d.requested ? ", on request" : "");
  document.getElementById("detail-step").textContent = stepText(d);
  document.getElementById("detail-weights").textContent = weightsText(d);
  const p = d.paused;
  document.getElementById("detail-paused").textContent =
    p ? "paused at step " + p.step + " by " + p.by + " since " + when(p.since) : "";
  const open = d.status === "PAUSED" || d.status === "IN_PROGRESS";
  document.getElementById("btn-promote").disabled = d.status !== "PAUSED";
  document.getElementById("btn-pause").disabled = d.status !== "IN_PROGRESS";
  document.getElementById("btn-abort").disabled = !open;
  renderTimeline(d, now);
  renderRows("steps", (d.steps || []).map(s => [s.index + 1, s.description, s.outcome, s.reason]));
  renderRows("verdicts", (d.verdicts || []).map(v => [v.step + 1, v.outcome, v.reason, numbers(v.numbers)]));
}

function renderActions(actions) {
  const box = document.getElementById("actions");
  if (!actions.length) return;
  box.replaceChildren();
  for (const a of actions) {
    const div = el("div", null, "action");
    div.dataset.id = a.id;
    div.dataset.exitCode = a.exit_code === null ? "" : a.exit_code;
    const head = a.command + ": " + (a.running ? "running…" : "exit " + a.exit_code);
    div.append(el("div", head, "action-head"));
    if (!a.running) div.append(el("pre", a.outcome, "action-outcome"));
    box.append(div);
  }
}

async function refresh() {
  try {
    const [code, state] = await api("/api/state");
    if (code !== 200) {
      showError(state.error || ("HTTP " + code));
      return;
    }
    showError(state.error || "");
    const list = state.deployments || [];
    current = list.find(d => d.deployment_id === selected) || list[0] || null;
    renderList(list);
    renderDetail(current, state.now);
    renderActions(state.actions || []);
    document.getElementById("updated").textContent = when(state.now);
  } catch (e) {
    showError("dashboard not reachable: " + e);
  }
}

async function press(action) {
  if (!current) return;
  refused = "";
  try {
    const [code, body] = await api("/api/action", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({action: action, service: current.service}),
    });
    if (code !== 202) refused = action + " refused: " + (body.error || ("HTTP " + code));
  } catch (e) {
    refused = action + " not sent: " + e;
  }
  refresh();
}

for (const action of ["promote", "pause", "abort"]) {
  document.getElementById("btn-" + action).addEventListener("click", () => press(action));
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""


def render_page(stack: str, nonce: str) -> str:
    """The page for ``stack``; ``nonce`` is the Content-Security-Policy nonce of its script and style."""
    return (
        _PAGE.replace("__NONCE__", nonce)
        .replace("__STACK__", html.escape(stack))
        .replace("__HEADER__", repr(TOKEN_HEADER))
    )
