/* maskwatch web page: photo upload and live camera. Plain JS, no build step, no external assets. */
"use strict";

(function () {
  const COLORS = { with_mask: "rgb(40,180,60)", without_mask: "rgb(220,40,40)", mask_incorrect: "rgb(255,140,0)" };
  const UNCERTAIN_COLOR = "rgb(150,150,150)";  // the classifier abstained: its label is only a guess
  const OTHER_COLOR = "rgb(0,160,200)";
  const LIVE_MAX_SIDE = 480;     // frames are shrunk to this long side before they are sent
  const LIVE_JPEG_QUALITY = 0.7;
  const FPS_WINDOW_MS = 2000;

  const $ = (id) => document.getElementById(id);
  let maxUploadBytes = 20 * 1024 * 1024;
  let liveSession = null;   // one id per Start: the server tracks faces and keeps totals per session

  // ---------------------------------------------------------------- server info
  fetch("/health").then((r) => r.json()).then((h) => {
    maxUploadBytes = h.max_upload_bytes || maxUploadBytes;
    $("model-info").textContent =
      `model ${h.model} · face detector ${h.detector} · maskwatch ${h.version}`;
  }).catch(() => {
    $("model-info").textContent = "cannot reach the maskwatch server; is it still running?";
  });

  // ---------------------------------------------------------------- tabs
  function selectTab(name) {
    for (const t of ["photo", "live"]) {
      const on = t === name;
      $("tab-" + t).setAttribute("aria-selected", String(on));
      $(t + "-panel").hidden = !on;
    }
    if (name !== "live") stopLive();
  }
  $("tab-photo").addEventListener("click", () => selectTab("photo"));
  $("tab-live").addEventListener("click", () => selectTab("live"));

  // ---------------------------------------------------------------- drawing
  function colorFor(label) { return COLORS[label] || OTHER_COLOR; }

  /**
   * Draw labelled boxes on ctx; `scale` maps result pixels to canvas pixels. With `numbered`, each
   * label starts with the face's row number in the table, and faces too small for a readable label
   * get the number alone (the colour still tells the class). Labels never cover one another: each
   * goes above its box, below it, or inside its top edge, whichever is free; where none is, it
   * shrinks to the number alone. The placed label rectangles are kept in `canvas.dataset.labelBoxes`.
   */
  function drawFaces(ctx, faces, scale, numbered) {
    const side = Math.max(ctx.canvas.width, ctx.canvas.height);
    const lw = Math.max(2, Math.round(side / 400));
    const baseFont = Math.max(12, Math.round(side / 45));
    ctx.lineWidth = lw;
    ctx.textBaseline = "bottom";
    const W = ctx.canvas.width, H = ctx.canvas.height;
    const boxes = faces.map((f) => f.box.map((v) => v * scale));
    const colorOf = (f) => (f.uncertain ? UNCERTAIN_COLOR : colorFor(f.label));
    boxes.forEach(([x1, y1, x2, y2], i) => {
      ctx.strokeStyle = colorOf(faces[i]);
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    });
    const placed = [];
    const hits = (r) => placed.some((q) => r.x < q.x + q.w && q.x < r.x + r.w && r.y < q.y + q.h && q.y < r.y + r.h);
    const order = faces.map((_, i) => i).sort((a, b) => boxes[a][1] - boxes[b][1]);
    for (const i of order) {
      const f = faces[i];
      const [x1, y1, x2, y2] = boxes[i];
      const fontPx = Math.round(Math.min(baseFont, Math.max(11, (x2 - x1) * 0.45)));
      ctx.font = `600 ${fontPx}px system-ui, sans-serif`;
      const pct = `${Math.round(f.score * 100)}%`;
      const shown = f.uncertain ? `${f.label}?` : f.label;
      const long = numbered ? `${i + 1} ${shown} ${pct}` : `${shown} ${pct}`;
      const texts = numbered ? [long, String(i + 1)] : [long];
      if (numbered && ctx.measureText(long).width > 3 * (x2 - x1)) texts.shift();
      const th = fontPx + 6;
      let spot = null;
      for (const text of texts) {
        const tw = ctx.measureText(text).width + 8;
        const x = Math.max(0, Math.min(W - tw, x1 - lw / 2));
        for (const y of [y1 - th, y2, y1]) {
          const r = { x, y: Math.max(0, Math.min(H - th, y)), w: tw, h: th, text };
          if (!hits(r)) { spot = r; break; }
        }
        if (spot) break;
      }
      if (!spot) {  // crowded: the number (or label) alone, above the box
        const text = texts[texts.length - 1];
        const tw = ctx.measureText(text).width + 8;
        spot = { x: Math.max(0, Math.min(W - tw, x1)), y: Math.max(0, Math.min(H - th, y1 - th)), w: tw, h: th, text,
                 overlaps: true };
      }
      placed.push(spot);
      ctx.fillStyle = colorOf(f);
      ctx.fillRect(spot.x, spot.y, spot.w, spot.h);
      ctx.fillStyle = "#fff";
      ctx.fillText(spot.text, spot.x + 4, spot.y + th - 3);
    }
    ctx.canvas.dataset.labelBoxes = JSON.stringify(placed.map((r) => [r.x, r.y, r.w, r.h, r.overlaps ? 1 : 0]));
  }

  /** Blur the faces chosen in the photo tab's Blur menu (the picture and its download alike). */
  function blurFaces(ctx, bitmap, faces, scale) {
    const choice = ($("photo-blur") || {}).value || "none";
    const chosen = faces.filter((f) => choice === "all" || f.label === choice);
    ctx.canvas.dataset.blurred = String(chosen.length);
    for (const f of chosen) {
      const [x1, y1, x2, y2] = f.box.map((v) => v * scale);
      const mx = (x2 - x1) * 0.15, my = (y2 - y1) * 0.15;
      ctx.save();
      ctx.beginPath();
      ctx.rect(x1 - mx, y1 - my, x2 - x1 + 2 * mx, y2 - y1 + 2 * my);
      ctx.clip();
      ctx.filter = `blur(${Math.max(4, (x2 - x1) / 4)}px)`;
      ctx.drawImage(bitmap, 0, 0, ctx.canvas.width, ctx.canvas.height);
      ctx.restore();
    }
  }

  function countFaces(faces) {
    // Every face in exactly one count: its label, or "uncertain" when the classifier abstained.
    const c = { with_mask: 0, without_mask: 0, mask_incorrect: 0, uncertain: 0, total: faces.length };
    for (const f of faces) {
      const key = f.uncertain ? "uncertain" : f.label;  // as FrameResult.counts() counts them
      c[key] = (c[key] || 0) + 1;
    }
    return c;
  }

  async function errorDetail(resp) {
    try {
      const body = await resp.json();
      if (body && body.detail) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (e) { /* not JSON */ }
    return `the server answered ${resp.status} ${resp.statusText}`;
  }

  // ---------------------------------------------------------------- photo mode
  const dropzone = $("dropzone");
  const fileInput = $("file-input");
  const photoStatus = $("photo-status");
  let downloadUrl = null;
  let shown = null;   // the photo on screen and its result: {file, result}, redrawn when the Blur menu changes

  function setPhotoStatus(text, isError) {
    photoStatus.textContent = text;
    photoStatus.classList.toggle("error", !!isError);
  }

  $("photo-blur").addEventListener("change", () => {
    if (shown) showPhoto(shown.file, shown.result);   // the picture and its download, blurred anew
  });
  fileInput.addEventListener("change", () => {
    if (fileInput.files && fileInput.files[0]) handleFile(fileInput.files[0]);
    fileInput.value = "";
  });
  ["dragenter", "dragover"].forEach((ev) => dropzone.addEventListener(ev, (e) => {
    e.preventDefault();
    dropzone.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((ev) => dropzone.addEventListener(ev, (e) => {
    e.preventDefault();
    dropzone.classList.remove("dragging");
  }));
  dropzone.addEventListener("drop", (e) => {
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) handleFile(files[0]);
    else setPhotoStatus("Nothing to read in what was dropped: drop an image file.", true);
  });
  // Dropping a file next to the drop zone should not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  async function handleFile(file) {
    if (file.size > maxUploadBytes) {
      setPhotoStatus(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB, over the server's limit of ` +
        `${(maxUploadBytes / 1048576).toFixed(1)} MB. Shrink it or save it as JPEG.`, true);
      return;
    }
    setPhotoStatus(`Looking for faces in ${file.name}…`);
    const form = new FormData();
    form.append("file", file, file.name);
    let resp;
    const t0 = performance.now();
    try {
      resp = await fetch("/v1/detect", { method: "POST", body: form });
    } catch (e) {
      setPhotoStatus("Cannot reach the maskwatch server. Is it still running?", true);
      return;
    }
    if (!resp.ok) {
      $("photo-result").hidden = true;
      shown = null;
      setPhotoStatus(await errorDetail(resp), true);
      return;
    }
    const result = await resp.json();
    const ms = performance.now() - t0;
    shown = { file, result };
    await showPhoto(file, result);
    const n = result.faces.length;
    setPhotoStatus(`${n} face${n === 1 ? "" : "s"} found in ${file.name} (${result.width}×${result.height}) ` +
      `in ${Math.round(ms)} ms.`);
  }

  async function loadBitmap(blob) {
    try { return await createImageBitmap(blob, { imageOrientation: "from-image" }); } catch (e) { return null; }
  }

  async function showPhoto(file, result) {
    const canvas = $("photo-canvas");
    const ctx = canvas.getContext("2d");
    let bitmap = await loadBitmap(file);
    let drawBoxes = true;
    if (!bitmap || bitmap.width !== result.width || bitmap.height !== result.height) {
      // The browser cannot show this file as the server saw it (TIFF, odd EXIF): ask for the
      // server's annotated rendering instead.
      const form = new FormData();
      form.append("file", file, file.name);
      const r = await fetch("/v1/detect?format=jpeg", { method: "POST", body: form }).catch(() => null);
      bitmap = r && r.ok ? await loadBitmap(await r.blob()) : null;
      drawBoxes = false;
    }
    if (bitmap) {
      // Small photos are enlarged for viewing (crowd faces of 20 px get readable labels).
      const up = Math.min(4, Math.max(1, Math.floor(960 / Math.max(bitmap.width, bitmap.height))));
      canvas.width = bitmap.width * up;
      canvas.height = bitmap.height * up;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      if (drawBoxes) {
        blurFaces(ctx, bitmap, result.faces, canvas.width / result.width);
        drawFaces(ctx, result.faces, canvas.width / result.width, true);
      }
    } else {
      canvas.width = 1; canvas.height = 1;
    }
    canvas.dataset.faces = String(result.faces.length);

    const counts = countFaces(result.faces);
    for (const el of document.querySelectorAll("#photo-counts [data-count]")) {
      el.textContent = String(counts[el.dataset.count] || 0);
    }
    const tbody = document.querySelector("#faces-table tbody");
    tbody.replaceChildren();
    result.faces.forEach((f, i) => {
      const tr = document.createElement("tr");
      const cells = [
        [String(i + 1), "num"],
        [f.box.join(", "), ""],
        [f.label.replace("_", " ") + (f.uncertain ? " (uncertain)" : ""), f.uncertain ? "" : "label-" + f.label],
        [(f.score * 100).toFixed(1), "num"],
      ];
      for (const [text, cls] of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      tr.dataset.label = f.label;
      tbody.appendChild(tr);
    });
    if (result.faces.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 4;
      td.className = "muted";
      td.textContent = "no face found";
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    $("photo-name").textContent = result.source;
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = null;
    canvas.toBlob((blob) => {
      if (!blob) return;
      downloadUrl = URL.createObjectURL(blob);
      $("download-link").href = downloadUrl;
      $("download-link").download = result.source.replace(/\.[^.]*$/, "") + "-maskwatch.png";
    }, "image/png");
    $("photo-result").hidden = false;
  }

  // ---------------------------------------------------------------- live mode
  const video = $("live-video");
  const overlay = $("live-overlay");
  const liveMessage = $("live-message");
  const frameCanvas = document.createElement("canvas");
  let stream = null;
  let running = false;
  let times = [];
  let frames = 0;

  function showLiveMessage(text) {
    liveMessage.textContent = text || "";
    liveMessage.hidden = !text;
  }

  function cameraErrorText(err) {
    const name = (err && err.name) || "";
    if (name === "NotAllowedError" || name === "PermissionDeniedError" || name === "SecurityError") {
      return "Camera access was denied. Allow the camera for this page (the camera icon in the address bar, " +
        "or the browser's site settings), then press Start camera again.";
    }
    if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
      return "No camera was found. Connect a webcam and press Start camera again, or use the Photo tab.";
    }
    if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
      return "The camera could not be started: another application may be using it. Close it and try again.";
    }
    return `The camera could not be started (${name || "error"}: ${(err && err.message) || err}).`;
  }

  async function startLive() {
    if (running) return;
    showLiveMessage("");
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showLiveMessage("This page cannot use a camera: browsers allow cameras only on secure pages. Open it as " +
        "http://127.0.0.1:PORT or http://localhost:PORT on the machine running maskwatch, or serve it over HTTPS.");
      return;
    }
    $("live-start").disabled = true;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" }, audio: false,
      });
    } catch (err) {
      $("live-start").disabled = false;
      showLiveMessage(cameraErrorText(err));
      return;
    }
    for (const track of stream.getVideoTracks()) {
      track.addEventListener("ended", () => {
        if (running) { stopLive(); showLiveMessage("The camera stopped (unplugged, or taken by another application)."); }
      });
    }
    video.srcObject = stream;
    try { await video.play(); } catch (e) { /* autoplay of a muted stream is allowed; ignore */ }
    running = true;
    times = [];
    frames = 0;
    liveSession = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
    document.dispatchEvent(new CustomEvent("maskwatch:live-started", { detail: { session: liveSession } }));
    $("live-stop").disabled = false;
    liveLoop();
  }

  function stopLive() {
    running = false;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    $("live-start").disabled = false;
    $("live-stop").disabled = true;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    overlay.dataset.boxes = "0";
    overlay.dataset.labels = "";
    if (liveSession) {
      document.dispatchEvent(new CustomEvent("maskwatch:live-stopped", { detail: { session: liveSession } }));
      liveSession = null;
    }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function grabFrame() {
    const vw = video.videoWidth, vh = video.videoHeight;
    const scale = Math.min(1, LIVE_MAX_SIDE / Math.max(vw, vh));
    const w = Math.max(1, Math.round(vw * scale)), h = Math.max(1, Math.round(vh * scale));
    if (frameCanvas.width !== w || frameCanvas.height !== h) { frameCanvas.width = w; frameCanvas.height = h; }
    frameCanvas.getContext("2d").drawImage(video, 0, 0, w, h);
    return new Promise((resolve) => frameCanvas.toBlob(resolve, "image/jpeg", LIVE_JPEG_QUALITY));
  }

  /** One frame in flight at a time: grab, send, draw the answer, repeat. */
  async function liveLoop() {
    while (running) {
      if (video.readyState < 2 || !video.videoWidth) { await sleep(30); continue; }
      const blob = await grabFrame();
      if (!blob || !running) { await sleep(30); continue; }
      let resp;
      try {
        resp = await fetch(`/v1/live?session=${liveSession}`, {
          method: "POST", body: blob, headers: { "Content-Type": "image/jpeg" },
        });
      } catch (e) {
        showLiveMessage("Lost the connection to the maskwatch server; retrying…");
        await sleep(1000);
        continue;
      }
      if (!resp.ok) {
        showLiveMessage(await errorDetail(resp));
        await sleep(500);
        continue;
      }
      const result = await resp.json();
      if (!running) break;
      if (!liveMessage.hidden) showLiveMessage("");
      showLiveResult(result, resp.headers.get("Server-Timing"));
      document.dispatchEvent(new CustomEvent("maskwatch:live-result", { detail: result }));
    }
  }

  function showLiveResult(result, timing) {
    if (overlay.width !== video.videoWidth || overlay.height !== video.videoHeight) {
      overlay.width = video.videoWidth;
      overlay.height = video.videoHeight;
    }
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    drawFaces(ctx, result.faces, overlay.width / result.width, false);
    overlay.dataset.boxes = String(result.faces.length);
    overlay.dataset.labels = result.faces.map((f) => f.label).join(",");

    const now = performance.now();
    times.push(now);
    while (times.length && now - times[0] > FPS_WINDOW_MS) times.shift();
    frames += 1;
    if (times.length >= 2) {
      const fps = (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000);
      $("live-fps").textContent = fps.toFixed(1);
    }
    if (timing) {
      let total = 0;
      for (const m of timing.matchAll(/dur=([\d.]+)/g)) total += parseFloat(m[1]);
      $("live-latency").textContent = String(Math.round(total));
    }
    const c = countFaces(result.faces);
    $("live-with").textContent = String(c.with_mask || 0);
    $("live-without").textContent = String(c.without_mask || 0);
    $("live-total").textContent = String(c.total);
    $("live-frames").textContent = String(frames);
  }

  $("live-start").addEventListener("click", startLive);
  $("live-stop").addEventListener("click", stopLive);
  window.addEventListener("pagehide", stopLive);
})();
