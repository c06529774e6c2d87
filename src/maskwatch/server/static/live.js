/* maskwatch web page: live-camera session totals. app.js sends each frame to /v1/live?session=ID and
   fires "maskwatch:live-*" events; this file shows the session's people with / without a mask, the
   compliance rate, a running timeline, the recent alerts and a snapshot download, and says so
   clearly when the camera is stopped. Plain JS, no build step, no external assets. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const GREEN = "rgb(40,180,60)", RED = "rgb(220,40,40)";
  const snap = document.createElement("canvas");   // the last frame with its boxes, for the snapshot
  let last = null;

  function setState(text) { $("live-session-state").textContent = text; }

  function noAlerts() {
    const ul = $("live-alerts");
    ul.textContent = "";
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "none";
    ul.appendChild(li);
  }

  function reset() {
    for (const id of ["live-people", "live-people-with", "live-people-without"]) $(id).textContent = "0";
    $("live-compliance").textContent = "–";
    noAlerts();
    const c = $("live-timeline");
    c.getContext("2d").clearRect(0, 0, c.width, c.height);
    last = null;
  }

  function drawTimeline(rows) {
    const c = $("live-timeline");
    const ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    if (!rows.length) return;
    const n = Math.max(rows.length, 24);
    const bw = c.width / n;
    const ymax = Math.max(1, ...rows.map((r) => (r.with_mask || 0) + (r.without_mask || 0)));
    rows.forEach((r, i) => {
      const hw = ((r.with_mask || 0) / ymax) * (c.height - 12);
      const hn = ((r.without_mask || 0) / ymax) * (c.height - 12);
      ctx.fillStyle = GREEN;
      ctx.fillRect(i * bw + 1, c.height - hw, bw - 2, hw);
      ctx.fillStyle = RED;
      ctx.fillRect(i * bw + 1, c.height - hw - hn, bw - 2, hn);
    });
    ctx.fillStyle = "#555";
    ctx.font = "11px sans-serif";
    ctx.fillText(`people per 5 s (max ${ymax})`, 4, 11);
  }

  function show(s) {
    $("live-people").textContent = String(s.people);
    $("live-people-with").textContent = String((s.people_seen || {}).with_mask || 0);
    $("live-people-without").textContent = String((s.people_seen || {}).without_mask || 0);
    if (s.compliance_rate == null) {
      $("live-compliance").textContent = "–";
    } else {
      const [lo, hi] = s.compliance_ci95;
      $("live-compliance").textContent =
        `${Math.round(100 * s.compliance_rate)}% (95% CI ${Math.round(100 * lo)}–${Math.round(100 * hi)}%)`;
    }
    drawTimeline(s.timeline || []);
    const ul = $("live-alerts");
    ul.textContent = "";
    if (!s.alerts || !s.alerts.length) {
      noAlerts();
    } else {
      for (const a of s.alerts) {
        const li = document.createElement("li");
        const at = new Date(a.at).toLocaleTimeString();
        li.textContent = `${at} — person ${a.track_id} without a mask ` +
                         `(${Math.round(100 * ((a.probs || {}).without_mask || 0))}%)`;
        ul.appendChild(li);
      }
    }
  }

  function keepSnapshot() {
    const video = $("live-video"), overlay = $("live-overlay");
    if (!video.videoWidth) return;
    snap.width = video.videoWidth;
    snap.height = video.videoHeight;
    const ctx = snap.getContext("2d");
    ctx.drawImage(video, 0, 0);
    if (overlay.width) ctx.drawImage(overlay, 0, 0, snap.width, snap.height);
  }

  document.addEventListener("maskwatch:live-started", () => {
    reset();
    $("live-session").hidden = false;
    $("live-stage").classList.remove("stopped");
    setState("Live: counting people in this session…");
  });

  document.addEventListener("maskwatch:live-result", (e) => {
    const r = e.detail;
    if (!r || !r.session) return;
    last = r.session;
    show(r.session);
    keepSnapshot();
  });

  document.addEventListener("maskwatch:live-stopped", (e) => {
    const s = last;
    const when = new Date().toLocaleTimeString();
    setState(s ? `Stopped at ${when} after ${s.frames} frames (${s.elapsed_s} s). The numbers below are this ` +
                 "session's final totals; press Start camera for a new session."
               : `Stopped at ${when}. Press Start camera to begin again.`);
    $("live-stage").classList.add("stopped");
    for (const id of ["live-with", "live-without", "live-total"]) $(id).textContent = "–";
    $("live-fps").textContent = "–";
    fetch(`/v1/live?session=${encodeURIComponent(e.detail.session)}`, { method: "DELETE" }).catch(() => {});
  });

  $("live-snapshot").addEventListener("click", (e) => {
    if (!snap.width) { e.preventDefault(); return; }
    e.currentTarget.href = snap.toDataURL("image/png");
  });
})();
