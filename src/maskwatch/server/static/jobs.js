/* maskwatch web page: the "Video file" tab. A video is uploaded as a background job (POST /v1/jobs),
   its progress polled (GET /v1/jobs/{id}), then the annotated video, the timeline chart, the alerts,
   the people (tracks) and the downloads are shown. Plain JS, no build step, no external assets. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 500;
  let current = null;   // the job being followed: {id, timer}

  // ---------------------------------------------------------------- tab
  function showVideoTab(on) {
    $("tab-video").setAttribute("aria-selected", String(on));
    $("video-panel").hidden = !on;
    if (on) {
      for (const t of ["photo", "live"]) {
        $("tab-" + t).setAttribute("aria-selected", "false");
        $(t + "-panel").hidden = true;
      }
      const stop = $("live-stop");
      if (stop && !stop.disabled) stop.click();   // leaving live mode stops the camera
    }
  }
  $("tab-video").addEventListener("click", () => showVideoTab(true));
  $("tab-photo").addEventListener("click", () => showVideoTab(false));
  $("tab-live").addEventListener("click", () => showVideoTab(false));

  // ---------------------------------------------------------------- status
  function setStatus(text, isError) {
    const el = $("video-status");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  async function detailOf(resp) {
    try {
      const body = await resp.json();
      if (body && typeof body.detail === "string") return body.detail;
    } catch (e) { /* not JSON */ }
    return `the server answered ${resp.status} ${resp.statusText}`;
  }

  function fmtS(s) { return s == null ? "–" : Number(s).toFixed(1); }

  // ---------------------------------------------------------------- upload
  async function upload(file) {
    if (!file) return;
    if (current && current.timer) clearTimeout(current.timer);
    $("video-result").hidden = true;
    const bar = $("video-progress");
    bar.hidden = false;
    bar.removeAttribute("value");   // indeterminate while uploading
    setStatus(`uploading ${file.name} (${(file.size / 1048576).toFixed(1)} MB)…`);
    const blur = $("video-blur").value;
    const url = `/v1/jobs?name=${encodeURIComponent(file.name)}&blur=${encodeURIComponent(blur)}`;
    let resp;
    try {
      resp = await fetch(url, { method: "POST", body: file,
                                headers: { "Content-Type": file.type || "application/octet-stream" } });
    } catch (e) {
      bar.hidden = true;
      setStatus("the upload failed: the server cannot be reached.", true);
      return;
    }
    if (resp.status !== 202) {
      bar.hidden = true;
      setStatus(await detailOf(resp), true);
      return;
    }
    const job = await resp.json();
    current = { id: job.id, timer: null };
    $("video-cancel").hidden = false;
    follow(job.id);
  }

  async function follow(id) {
    if (!current || current.id !== id) return;
    let job;
    try {
      const resp = await fetch(`/v1/jobs/${id}`);
      if (!resp.ok) { setStatus(await detailOf(resp), true); $("video-progress").hidden = true; return; }
      job = await resp.json();
    } catch (e) {
      current.timer = setTimeout(() => follow(id), POLL_MS * 4);
      return;
    }
    const bar = $("video-progress");
    if (job.status === "queued") {
      setStatus(`waiting for earlier videos… (${fmtS(job.queued_s)} s)`);
    } else if (job.status === "running") {
      if (job.progress != null) bar.value = job.progress;
      const of = job.total_frames ? ` of ${job.total_frames}` : "";
      setStatus(`analysing ${job.name}: frame ${job.frames}${of} (${fmtS(job.elapsed_s)} s)`);
    }
    if (job.status === "queued" || job.status === "running") {
      current.timer = setTimeout(() => follow(id), POLL_MS);
      return;
    }
    bar.hidden = true;
    $("video-cancel").hidden = true;
    if (job.status === "done") {
      setStatus(`${job.name}: ${job.frames} frames analysed in ${fmtS(job.elapsed_s)} s.`);
      show(job);
    } else if (job.status === "failed") {
      setStatus(job.error || "the video could not be analysed.", true);
      if (job.result) show(job);   // a video that broke off: the frames before the break are kept
    } else {
      setStatus("cancelled.");
    }
  }

  // ---------------------------------------------------------------- results
  function count(n, one, many) { return `${n} ${n === 1 ? one : (many || one + "s")}`; }

  // The timeline as an interactive chart (uPlot, vendored): people per time bucket, one line per label.
  const LABEL_COLORS = {with_mask: "#2e9d4f", without_mask: "#c0392b", mask_incorrect: "#e67e22"};
  let timelinePlot = null;
  function drawTimeline(box, rows) {
    if (timelinePlot) { timelinePlot.destroy(); timelinePlot = null; }
    box.textContent = "";
    if (!rows.length || typeof uPlot === "undefined") {
      box.textContent = rows.length ? "" : "No face was tracked.";
      return;
    }
    const skip = new Set(["source", "start_s", "end_s", "tracks", "faces_max"]);
    const labels = Object.keys(rows[0]).filter((k) => !skip.has(k));
    const data = [rows.map((r) => r.start_s), ...labels.map((k) => rows.map((r) => r[k]))];
    const series = [{label: "time (s)"}, ...labels.map((k) => ({
      label: k.replace("_", " "), stroke: LABEL_COLORS[k] || "#555", width: 2,
      fill: (LABEL_COLORS[k] || "#555555") + "22",
    }))];
    const width = Math.max(320, Math.min(box.parentElement.clientWidth || 600, 900));
    timelinePlot = new uPlot({width, height: 240, scales: {x: {time: false}}, series,
                              axes: [{label: "seconds"}, {label: "people"}]}, data, box);
  }

  function show(job) {
    const r = job.result || {};
    const s = r.summary || {};
    const files = job.files || {};
    let text;
    if (!s.people) {
      text = "Nobody was tracked long enough to count.";
    } else {
      const mostly = Object.entries(s.people_mostly || {}).map(([k, v]) => `${v} mostly ${k.replace("_", " ")}`).join(", ");
      const [lo, hi] = s.compliance_ci95 || [0, 0];
      text = `${count(s.people, "person", "people")} (${mostly}); compliance ${(100 * s.compliance_rate).toFixed(0)}% ` +
             `(95% CI ${(100 * lo).toFixed(0)}–${(100 * hi).toFixed(0)}%); ${count(s.alerts, "alert")}`;
    }
    $("video-summary").textContent = text;
    const player = $("video-player");
    if (files["video.mp4"]) player.src = files["video.mp4"];
    drawTimeline($("video-timeline"), r.timeline || []);
    const dl = $("video-downloads");
    dl.textContent = "";
    for (const [name, href] of Object.entries(files)) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = name;
      a.setAttribute("download", "");
      dl.appendChild(a);
    }
    const alerts = r.alerts || [];
    $("video-alerts-count").textContent = `(${alerts.length})`;
    const ul = $("video-alerts");
    ul.textContent = "";
    for (const a of alerts) {
      const li = document.createElement("li");
      li.textContent = `${fmtS(a.time_s)} s — track ${a.track_id} without a mask ` +
                       `(${(100 * ((a.probs || {}).without_mask || 0)).toFixed(0)}%)`;
      li.dataset.time = a.time_s;
      li.addEventListener("click", () => { player.currentTime = a.time_s; player.play(); });
      ul.appendChild(li);
    }
    const tbody = document.querySelector("#video-tracks tbody");
    tbody.textContent = "";
    for (const t of (r.tracks || [])) {
      const tr = document.createElement("tr");
      // Coloured by the label the track ended with (its steadied label), as the summary counts it.
      const seen = t.labels_seen || [];
      const last = t.label || seen[seen.length - 1];
      tr.dataset.label = last || "";
      if (last === "without_mask") tr.className = "unmasked";
      else if (last === "mask_incorrect") tr.className = "incorrect";
      for (const v of [t.track_id, `${fmtS(t.first_s)}–${fmtS(t.last_s)}`, (t.labels_seen || []).join(" → "),
                       fmtS(t.unmasked_s), t.alerted ? "yes" : ""]) {
        const td = document.createElement("td");
        td.textContent = String(v);
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
    $("video-result").hidden = false;
  }

  // ---------------------------------------------------------------- a video given to the photo box
  const VIDEO_EXT = /\.(mp4|m4v|mov|webm|mkv|avi|mpe?g|wmv|flv)$/i;
  function isVideo(file) { return !!file && ((file.type || "").startsWith("video/") || VIDEO_EXT.test(file.name)); }
  function toVideoTab(file) {
    showVideoTab(true);
    setStatus(`${file.name} is a video: it is analysed here, in the Video file tab.`);
    upload(file);
  }
  // Capture phase on the document runs before the photo tab's own handlers, which expect images.
  document.addEventListener("change", (e) => {
    const f = e.target && e.target.id === "file-input" && e.target.files && e.target.files[0];
    if (isVideo(f)) { e.stopPropagation(); e.target.value = ""; toVideoTab(f); }
  }, true);
  document.addEventListener("drop", (e) => {
    const zone = document.getElementById("dropzone");
    const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (zone && zone.contains(e.target) && isVideo(f)) {
      e.preventDefault(); e.stopPropagation(); zone.classList.remove("over"); toVideoTab(f);
    }
  }, true);

  // ---------------------------------------------------------------- wiring
  $("video-input").addEventListener("change", (e) => upload(e.target.files[0]));
  const zone = $("video-dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    upload(e.dataTransfer.files[0]);
  });
  $("video-cancel").addEventListener("click", async () => {
    if (!current) return;
    const id = current.id;
    if (current.timer) clearTimeout(current.timer);
    current = null;
    await fetch(`/v1/jobs/${id}`, { method: "DELETE" }).catch(() => {});
    $("video-progress").hidden = true;
    $("video-cancel").hidden = true;
    setStatus("cancelled.");
  });
})();
