// maskwatch watch dashboard: polls /v1/watch (tiles, totals, alerts) and /v1/watch/timeline (charts).
// Charts are uPlot (vendored, see uPlot.VERSION): hover shows values, drag zooms, double-click resets.
"use strict";

const POLL_MS = 1000;
const CHART_MS = 2000;
const charts = {};      // name ("" = site) -> {plot, zoomed}
window.maskwatchCharts = charts;  // for tests and the console
const tiles = {};       // camera name -> elements

function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(0) + " %"; }
function num(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function chartOptions(width) {
  return {
    width: width, height: 180,
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true }, people: { auto: true }, pct: { range: [0, 100] } },
    series: [
      {},
      { label: "people", scale: "people", stroke: "#1c7ed6", width: 2, value: (u, v) => v == null ? "–" : v.toFixed(1) },
      { label: "compliance %", scale: "pct", stroke: "#2f9e44", width: 2, value: (u, v) => v == null ? "–" : v.toFixed(0) + " %" },
    ],
    axes: [
      {},
      { scale: "people", label: "people" },
      { scale: "pct", side: 1, label: "%", grid: { show: false } },
    ],
  };
}

function makeChart(key, container) {
  const state = { plot: null, zoomed: false, container: container };
  const opts = chartOptions(Math.max(300, container.clientWidth - 10));
  opts.hooks = {
    setSelect: [u => { if (u.select.width > 0) state.zoomed = true; }],
  };
  state.plot = new uPlot(opts, [[], [], []], container);
  container.addEventListener("dblclick", () => { state.zoomed = false; });
  charts[key] = state;
  return state;
}

const GAP_S = 5;  // seconds without a point that break the lines (a stream gap)

function toData(points) {
  const xs = [], people = [], comp = [];
  for (const [t, p, c] of points) {
    if (xs.length && t - xs[xs.length - 1] > GAP_S) {  // a null point: uPlot leaves the gap blank
      xs.push(xs[xs.length - 1] + 1); people.push(null); comp.push(null);
    }
    xs.push(t); people.push(p); comp.push(c === null ? null : c * 100);
  }
  return [xs, people, comp];
}

function makeTile(cam) {
  const root = el("div", "tile");
  root.dataset.camera = cam.name;
  const head = el("div", "tile-head");
  const name = el("h3", null, cam.name);
  const alert = el("span", "badge alert", "ALERT");
  alert.hidden = true;
  const health = el("span", "badge");
  head.append(name, alert, health);
  const img = el("img", "thumb");
  img.alt = "latest frame of " + cam.name;
  const err = el("p", "error");
  err.hidden = true;
  const stats = el("div", "stats");
  const fields = {};
  for (const [key, label] of [["people", "people now"], ["now", "compliance now"], ["today", "compliance today"],
                              ["alerts", "alerts"], ["fps", "fps (cap)"], ["lag", "lag"], ["dropped", "dropped"],
                              ["reconnects", "reconnects"]]) {
    const d = el("div");
    const b = el("b", "value");
    b.dataset.field = key;
    d.append(b, el("span", "label", label));
    stats.append(d);
    fields[key] = b;
  }
  const chart = el("div", "chart");
  root.append(head, img, err, stats, chart);
  document.getElementById("tiles").append(root);
  const t = { root, alert, health, img, err, fields, chart, name: cam.name, thumbAt: 0 };
  makeChart(cam.name, chart);
  tiles[cam.name] = t;
  return t;
}

function updateTile(cam) {
  const t = tiles[cam.name] || makeTile(cam);
  t.health.className = "badge " + cam.status;
  t.health.textContent = cam.status;
  t.alert.hidden = !cam.alert_active;
  t.err.hidden = !cam.error;
  t.err.textContent = cam.error || "";
  t.fields.people.textContent = cam.people;
  t.fields.now.textContent = pct(cam.compliance_now);
  t.fields.today.textContent = pct(cam.compliance_today);
  t.fields.alerts.textContent = cam.alerts;
  t.fields.fps.textContent = num(cam.fps, 1) + " (" + cam.fps_target + ")";
  t.fields.lag.textContent = cam.lag_s === null ? "–" : (cam.lag_s * 1000).toFixed(0) + " ms";
  t.fields.dropped.textContent = cam.dropped;
  t.fields.reconnects.textContent = cam.reconnects;
  if (cam.has_thumbnail && Date.now() - t.thumbAt > 900) {
    t.thumbAt = Date.now();
    t.img.src = "/v1/watch/cameras/" + encodeURIComponent(cam.name) + "/thumbnail.jpg?t=" + t.thumbAt;
  }
}

function updateRecent(recent) {
  const body = document.querySelector("#recent tbody");
  body.replaceChildren();
  const what = { unmasked_alert: "unmasked", stream_lost: "stream lost", stream_restored: "stream restored",
                 stream_unavailable: "cannot connect" };
  for (const r of recent) {
    const tr = el("tr");
    tr.append(el("td", null, new Date(r.at).toLocaleTimeString()), el("td", null, r.camera),
              el("td", "kind-" + r.kind, what[r.kind] || r.kind),
              el("td", null, r.track_id !== null && r.track_id !== undefined ? "track " + r.track_id : (r.detail || "")));
    body.append(tr);
  }
  document.getElementById("recent-empty").hidden = recent.length > 0;
}

async function poll() {
  try {
    const resp = await fetch("/v1/watch", { cache: "no-store" });
    if (!resp.ok) throw new Error(resp.status);
    const s = await resp.json();
    document.getElementById("conn-error").hidden = true;
    document.getElementById("site-name").textContent = s.site;
    document.title = "maskwatch: " + s.site;
    document.getElementById("t-people").textContent = s.people;
    document.getElementById("t-connected").textContent = s.connected + " / " + s.cameras.length;
    document.getElementById("t-compliance").textContent = pct(s.compliance_today);
    document.getElementById("t-alerts").textContent = s.alerts;
    for (const cam of s.cameras) updateTile(cam);
    updateRecent(s.recent);
  } catch (e) {
    document.getElementById("conn-error").hidden = false;
  }
}

const MAX_POINTS = 7200;  // two hours of per-second points, as the server keeps

async function refreshChart(key) {
  // Only the last seconds are fetched (since=): the points before them do not change.
  const c = charts[key];
  const raw = c.raw || (c.raw = []);
  const since = raw.length ? raw[raw.length - 1][0] - 2 : null;
  const params = new URLSearchParams();
  if (key) params.set("camera", key);
  if (since !== null) params.set("since", since);
  const resp = await fetch("/v1/watch/timeline?" + params, { cache: "no-store" });
  if (!resp.ok) return;
  const fresh = (await resp.json()).points;
  while (since !== null && raw.length && raw[raw.length - 1][0] >= since) raw.pop();
  raw.push(...fresh);
  if (raw.length > MAX_POINTS) raw.splice(0, raw.length - MAX_POINTS);
  c.plot.setData(toData(raw), !c.zoomed);
}

async function pollCharts() {
  try {
    await Promise.all(Object.keys(charts).map(refreshChart));
  } catch (e) { /* shown by poll() */ }
}

function resize() {
  for (const c of Object.values(charts)) {
    c.plot.setSize({ width: Math.max(300, c.container.clientWidth - 10), height: 180 });
  }
}

makeChart("", document.getElementById("chart-site"));
poll().then(pollCharts);
setInterval(poll, POLL_MS);
setInterval(pollCharts, CHART_MS);
window.addEventListener("resize", resize);
