"""The page the master serves at "/" with http_address: the run drawn live from /status.

Self-contained (no CDN: run hosts may have no internet): inline CSS and a small script
that polls /status every second and draws each group's ring as SVG (peers on a circle,
each link labelled with the bandwidth last measured along it), the pending peers, the
rate of decided collectives over the last minutes, and the event timeline.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pccl run</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 16px; color: #222; background: #fafafa; }
 h1 { font-size: 20px; margin: 0 0 8px; }
 #summary { margin-bottom: 12px; color: #444; }
 .row { display: flex; gap: 16px; flex-wrap: wrap; }
 .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px; }
 svg text { font-size: 11px; }
 table { border-collapse: collapse; }
 td, th { padding: 2px 8px; text-align: left; border-bottom: 1px solid #eee; }
 .leave, .failed { color: #b00; } .join, .resume { color: #070; } .epoch { color: #037; }
 .restart { color: #a60; }
</style></head>
<body>
<h1>pccl run</h1>
<div id="summary">loading /status ...</div>
<div class="row">
 <div class="card"><div><b>rings</b></div><div id="rings"></div></div>
 <div class="card"><div><b>collectives decided per second</b></div>
  <svg id="rate" width="420" height="160"></svg>
  <div><b>throughput: MB/s the members sent</b></div>
  <svg id="throughput" width="420" height="160"></svg><div id="pending"></div></div>
</div>
<div class="card" style="margin-top:16px"><b>events</b><table id="events"></table></div>
<script>
const history = [];  // [time s, ops decided, bytes sent]
const SVG = "http://www.w3.org/2000/svg";
function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function short(id) { return String(id).slice(-6); }
function rate(bps) { return bps ? (bps / 1e6).toFixed(1) + " MB/s" : "not measured"; }
function drawRing(group, peers) {
  const size = 360, c = size / 2, r = 120, n = group.ring.length;
  const svg = el("svg", {width: size, height: size + 20});
  svg.appendChild(el("text", {x: 4, y: 14}, "group " + group.peer_group + ", ring epoch " +
      group.ring_epoch + ", " + group.operations_in_flight + " in flight" +
      (group.state_revision === null ? "" : ", state revision " + group.state_revision)));
  const at = i => [c + r * Math.sin(2 * Math.PI * i / n), c + 20 - r * Math.cos(2 * Math.PI * i / n)];
  group.links.forEach((link, i) => {
    const [x1, y1] = at(i), [x2, y2] = at((i + 1) % n);
    svg.appendChild(el("line", {x1, y1, x2, y2, stroke: "#88a", "stroke-width": 2}));
    svg.appendChild(el("text", {x: (x1 + x2) / 2, y: (y1 + y2) / 2, fill: "#557"}, rate(link.bytes_per_second)));
  });
  group.ring.forEach((id, i) => {
    const [x, y] = at(i), p = peers[id] || {};
    svg.appendChild(el("circle", {cx: x, cy: y, r: 16, fill: "#cde", stroke: "#357"}));
    const label = el("text", {x: x - 20, y: y + 30, "class": "peer"}, "peer " + short(id));
    label.setAttribute("data-peer-id", String(id));
    svg.appendChild(label);
    svg.appendChild(el("text", {x: x - 20, y: y + 43, fill: "#666"}, p.host ? p.host + ":" + p.port : ""));
  });
  return svg;
}
// Plots the rate of change of history[i][column], in `unit`s (`name`) per second, into svg `id`.
function drawRate(id, column, unit, name) {
  const svg = document.getElementById(id);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const points = [];
  for (let i = 1; i < history.length; i++) {
    const dt = history[i][0] - history[i - 1][0];
    points.push([history[i][0], dt > 0 ? (history[i][column] - history[i - 1][column]) / dt / unit : 0]);
  }
  const top = Math.max(1, ...points.map(p => p[1]));
  const t0 = points.length ? points[0][0] : 0, span = Math.max(1, (points.length ? points[points.length - 1][0] : 1) - t0);
  const xy = points.map(p => [10 + 400 * (p[0] - t0) / span, 140 - 120 * p[1] / top]);
  svg.appendChild(el("polyline", {points: xy.map(p => p.join(",")).join(" "), fill: "none", stroke: "#357", "stroke-width": 2}));
  svg.appendChild(el("text", {x: 10, y: 14}, "max " + top.toFixed(1) + " " + name + "/s"));
  svg.appendChild(el("line", {x1: 10, y1: 140, x2: 410, y2: 140, stroke: "#aaa"}));
}
async function refresh() {
  let s;
  try { s = await (await fetch("/status")).json(); } catch (e) {
    document.getElementById("summary").textContent = "cannot read /status: " + e; return; }
  const peers = {}; s.peers.forEach(p => peers[p.peer_id] = p);
  const members = s.peers.filter(p => p.member).length, k = s.counters;
  document.getElementById("summary").textContent = "epoch " + s.epoch + " (" + s.epoch_cause +
    "): " + members + " members, " + (s.peers.length - members) + " pending; collectives " +
    (k.ops_succeeded || 0) + " succeeded, " + (k.ops_failed || 0) + " failed";
  const rings = document.getElementById("rings");
  rings.replaceChildren(...s.groups.map(g => drawRing(g, peers)));
  const pending = s.peers.filter(p => !p.member).map(p => "peer " + short(p.peer_id));
  document.getElementById("pending").textContent = pending.length ? "pending: " + pending.join(", ") : "";
  history.push([Date.now() / 1000, (k.ops_succeeded || 0) + (k.ops_failed || 0), k.bytes_sent || 0]);
  if (history.length > 300) history.shift();
  drawRate("rate", 1, 1, "collectives");
  drawRate("throughput", 2, 1e6, "MB");
  const rows = s.events.slice(-20).reverse().map(e => {
    const tr = document.createElement("tr");
    const when = new Date(e.time * 1000).toLocaleTimeString();
    for (const [text, cls] of [[when, ""], [e.kind, e.kind], [e.text, ""]]) {
      const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td);
    }
    return tr;
  });
  document.getElementById("events").replaceChildren(...rows);
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""
