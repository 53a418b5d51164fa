// radsight reader: worklist in reading order, viewer with window/level, zoom, heatmaps, boxes and lung contours.
"use strict";
const $ = (id) => document.getElementById(id);
let current = null, pixels = null, heatmaps = {}, views = {};
const VIEW_NAMES = { radiograph: "radiograph", soft_tissue: "soft tissue (bone suppressed)", bone: "bone" };
const METHOD_NAMES = { cam: "CAM", gradcam: "Grad-CAM", "gradcam++": "Grad-CAM++", "guided-gradcam": "guided Grad-CAM",
  "guided-backprop": "guided backpropagation" };
let maps = {};  // method -> finding -> tinted heatmap

const SIGN_IN = "sign in";

async function json(url) {
  const r = await fetch(url);  // reads carry the reader session cookie
  if (r.status === 401) { $("signin").hidden = false; throw new Error(SIGN_IN); }
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

// The token is sent once, for a session cookie; the page does not keep it.
$("signin").onsubmit = async (event) => {
  event.preventDefault();
  const r = await fetch("/api/session", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify({token: $("token").value})});
  $("token").value = "";
  $("signin-error").textContent = r.ok ? "" : "wrong token";
  if (r.ok) { $("signin").hidden = true; refresh(); }
};

function pct(p) { return p == null ? "" : (100 * p).toFixed(1) + "%"; }

// Which study a row is: for DICOM its accession number, study date and view; for an upload, its file name.
function studyLabel(s) {
  const d = s.study || {};
  const parts = [d.accession_number && `acc. ${d.accession_number}`, d.study_date, d.view_position];
  return parts.some(Boolean) ? parts.filter(Boolean).join(" · ") : s.filename;
}

// Arrival: the time today, else the date and time.
function arrival(seconds) {
  const t = new Date(seconds * 1000), now = new Date();
  const time = t.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  return t.toDateString() === now.toDateString() ? time : `${t.toLocaleDateString()} ${time}`;
}

async function refreshWorklist() {
  const data = await json("/api/worklist");
  const body = $("worklist").tBodies[0];
  body.replaceChildren(...data.studies.map((s, i) => {
    const tr = document.createElement("tr");
    tr.dataset.id = s.id;
    tr.className = s.id === current ? "selected" : "";
    const cells = [i + 1, s.priority || "", pct(s.abnormal_probability), studyLabel(s), arrival(s.received_at),
                   s.error ? `failed: ${s.error}` : s.status, (s.positives || []).join(", ")];
    cells.forEach((c, j) => { const td = tr.insertCell(); td.textContent = c; if (j === 1) td.className = c; });
    tr.onclick = () => open(s.id);
    return tr;
  }));
}

// A grey heatmap -> only its hot part tinted: transparent below HEAT_FLOOR of its maximum, then red to yellow
// with opacity rising to the slider's value at the maximum, so the film stays readable under it.
const HEAT_FLOOR = 0.6;
function colour(img) {
  const c = document.createElement("canvas");
  c.width = img.width; c.height = img.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height);
  for (let i = 0; i < d.data.length; i += 4) {
    const t = Math.max(0, (d.data[i] / 255 - HEAT_FLOOR) / (1 - HEAT_FLOOR));
    d.data[i] = 255; d.data[i + 1] = Math.round(80 + 175 * t); d.data[i + 2] = 0; d.data[i + 3] = Math.round(255 * t);
  }
  ctx.putImageData(d, 0, 0);
  return c;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(url));
    img.src = url;
  });
}

async function open(id) {
  current = id;
  const study = await json(`/api/studies/${id}`);
  $("viewer").hidden = false;
  if (study.status !== "done") { $("summary").textContent = study.error || `study is ${study.status}`; return; }
  const r = study.result, base = `/api/studies/${id}/files/`;
  const img = await loadImage(base + "image.png");
  const canvas = $("image"), marks = $("marks");
  canvas.width = marks.width = img.width; canvas.height = marks.height = img.height;
  $("zoom").value = 1;  // opens fitted: the whole film in the viewport
  views = { radiograph: img };
  for (const v of r.views || []) if (v.file) views[v.name] = await loadImage(base + v.file);
  $("view").replaceChildren(...Object.keys(views).map((name) => new Option(VIEW_NAMES[name] || name, name)));
  $("view-choice").hidden = Object.keys(views).length < 2;
  showView("radiograph");
  // Every method's heatmaps; the boxes always come from the result's own method (r.explanation).
  maps = {};
  const own = r.explanation || "cam";  // results before schema 1.3 were CAM's
  for (const f of r.findings) {
    for (const [method, file] of Object.entries(f.heatmaps || (f.heatmap ? { [own]: f.heatmap } : {}))) {
      (maps[method] ||= {})[f.name] = colour(await loadImage(base + file));
    }
  }
  const methods = Object.keys(maps).sort((a, b) => (b === own) - (a === own));
  $("method").replaceChildren(...methods.map((m) => new Option((METHOD_NAMES[m] || m) + (m === own ? " (boxes)" : ""), m)));
  $("method-choice").hidden = methods.length < 2;
  heatmaps = maps[own] || {};
  const body = $("findings").tBodies[0];
  body.replaceChildren(...r.findings.map((f) => {
    const tr = document.createElement("tr");
    const box = tr.insertCell();
    if (f.heatmap) {
      const cb = document.createElement("input");
      cb.type = "checkbox"; cb.dataset.finding = f.name; cb.className = "heat"; cb.onchange = render;
      box.append(cb);
    }
    [f.name, pct(f.probability), pct(f.threshold), f.positive ? "above threshold" : ""].forEach((c) => {
      const td = tr.insertCell(); td.textContent = c;
    });
    if (f.positive) tr.className = "positive";
    return tr;
  }));
  const t = r.triage;
  const withheld = (t.urgent || []).filter((u) => u.withheld).map((u) => ` No urgent flag for ${u.finding}: ${u.withheld}.`);
  if (r.ood && !r.ood.in_distribution) {
    withheld.unshift(` OUT OF DISTRIBUTION: not like the radiographs this model knows (score ${r.ood.score.toFixed(2)}).`);
  }
  $("summary").textContent = `triage ${t.priority}: abnormal ${pct(t.abnormal_probability)} ` +
    `(threshold ${pct(t.threshold)}); model ${r.model.name} ${r.model.version}.${withheld.join("")} ${r.disclaimer}`;
  current_result = r;
  render();
  refresh();
}

let current_result = null;

// The chosen view (radiograph, soft tissue, bone) becomes the pixels that window/level act on.
function showView(name) {
  const canvas = $("image"), ctx = canvas.getContext("2d");
  ctx.drawImage(views[name], 0, 0, canvas.width, canvas.height);
  pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
}

function render() {
  if (!pixels || !current_result) return;
  const canvas = $("image"), ctx = canvas.getContext("2d");
  const width = +$("width").value, level = +$("level").value, lo = level - width / 2;
  const lut = new Uint8ClampedArray(256).map((_, v) => Math.round(255 * (v - lo) / width));
  const out = new ImageData(new Uint8ClampedArray(pixels.data), pixels.width, pixels.height);
  for (let i = 0; i < out.data.length; i += 4) {
    const v = lut[out.data[i]];
    out.data[i] = out.data[i + 1] = out.data[i + 2] = v;
  }
  ctx.putImageData(out, 0, 0);
  const m = $("marks").getContext("2d"), r = current_result;
  const sx = canvas.width / r.width, sy = canvas.height / r.height;
  m.clearRect(0, 0, canvas.width, canvas.height);
  m.globalAlpha = +$("opacity").value;
  for (const cb of document.querySelectorAll("input.heat:checked")) {
    if (heatmaps[cb.dataset.finding]) m.drawImage(heatmaps[cb.dataset.finding], 0, 0, canvas.width, canvas.height);
  }
  m.globalAlpha = 1;
  m.lineWidth = Math.max(2, canvas.width / 400);
  if ($("show-boxes").checked) {
    for (const f of r.findings.filter((f) => f.positive)) {
      for (const b of f.boxes) {
        m.strokeStyle = "#ffb000"; m.strokeRect(b.x * sx, b.y * sy, b.width * sx, b.height * sy);
        m.fillStyle = "#ffb000"; m.font = `${Math.max(12, canvas.width / 60)}px sans-serif`;
        m.fillText(f.name, b.x * sx + 4, b.y * sy + Math.max(14, canvas.width / 50));
      }
    }
  }
  if ($("show-lungs").checked && r.anatomy && r.anatomy.lungs) {
    m.strokeStyle = "#40e0ff";
    for (const lung of r.anatomy.lungs) {
      m.beginPath();
      lung.polygon.forEach(([x, y], i) => (i ? m.lineTo(x * sx, y * sy) : m.moveTo(x * sx, y * sy)));
      m.closePath(); m.stroke();
    }
  }
  fit();
}

// Zoom 1 fits the whole film in the viewport; the canvases' CSS size follows, so the stage scrolls when zoomed in.
function fit() {
  const canvas = $("image"), stage = $("stage");
  const scale = Math.min(stage.clientWidth / canvas.width, stage.clientHeight / canvas.height) * +$("zoom").value;
  for (const c of [canvas, $("marks")]) {
    c.style.width = `${Math.round(canvas.width * scale)}px`; c.style.height = `${Math.round(canvas.height * scale)}px`;
  }
}

for (const id of ["width", "level", "show-boxes", "show-lungs", "opacity"]) $(id).addEventListener("input", render);
$("zoom").addEventListener("input", fit);
window.addEventListener("resize", () => { if (current_result) fit(); });
$("view").addEventListener("change", () => { showView($("view").value); render(); });
$("method").addEventListener("change", () => { heatmaps = maps[$("method").value] || {}; render(); });
$("reset").onclick = () => {
  $("width").value = 255; $("level").value = 128; $("zoom").value = 1; $("opacity").value = 0.45; render();
};
json("/api/model").then((m) => { $("model").textContent = `${m.name} ${m.version}`; });
function refresh() {
  refreshWorklist().catch((e) => { if (e.message !== SIGN_IN) console.error(e); });
}
refresh();
setInterval(refresh, 2000);
