// radsight reader: worklist in reading order, viewer with window/level, zoom, heatmaps, boxes and lung contours;
// a study's frontal and lateral views side by side.
"use strict";
const $ = (id) => document.getElementById(id);
let current = null;
const VIEW_NAMES = { radiograph: "radiograph", soft_tissue: "soft tissue (bone suppressed)", bone: "bone" };
const METHOD_NAMES = { cam: "CAM", gradcam: "Grad-CAM", "gradcam++": "Grad-CAM++", "guided-gradcam": "guided Grad-CAM",
  "guided-backprop": "guided backpropagation" };

const SIGN_IN = "sign in";
// One colour per finding, in the model's label order (distinct for 14 findings; a key is in the findings table).
const PALETTE = ["#ffb000", "#ff5370", "#4dd0e1", "#a5e05a", "#c792ea", "#ff8a3d", "#f0e68c", "#82aaff",
  "#ff79c6", "#5af78e", "#e0e0e0", "#ffcb6b", "#9aedfe", "#d4a373"];
let colours = {};
function findingColour(name) { return colours[name] || PALETTE[0]; }

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

// The views shown side by side: one pane for an image; for a study, one for each view the model read, each with
// its own heatmaps, boxes and (frontal) lung contours on its own pixels.
let panes = [];

// What a pane draws, from the result: a study's document lists its views; an image's document is the one view.
function paneData(r) {
  if ((r.views || []).some((v) => "read" in v)) {
    return r.views.filter((v) => v.read).map((v) => ({
      label: v.view, image: `image.${v.view}.png`, width: v.width, height: v.height,
      findings: withAgeMap(v.findings || {}, v.age, r.explanation), anatomy: v.anatomy, nodules: v.nodules,
      derived: [] }));
  }
  const own = r.explanation || "cam";  // results before schema 1.3 were CAM's
  const findings = Object.fromEntries(r.findings.map((f) => [f.name, {
    boxes: f.boxes || [], heatmaps: f.heatmaps || (f.heatmap ? { [own]: f.heatmap } : {}) }]));
  return [{ label: (r.study && r.study.view_position) || "radiograph", image: "image.png", width: r.width,
            height: r.height, findings: withAgeMap(findings, r.age, own), anatomy: r.anatomy, nodules: r.nodules,
            derived: r.views || [] }];
}

// The age head's map (where the apparent age is read) is drawn like a finding's, under the name "Age".
function withAgeMap(findings, age, own) {
  if (!age || !age.heatmap) return findings;
  return { ...findings, Age: { boxes: [], heatmaps: { [own || "cam"]: age.heatmap } } };
}

// The apparent age and sex, as the summary line says them ("" when the result has none).
function ageSexLine(r) {
  const front = (r.views || []).find((v) => v.read && v.age) || r;
  const age = front.age, sex = front.sex;
  if (!age) return "";
  const years = (v) => (typeof v === "string" ? v : Math.round(v));
  let text = ` Apparent age ${years(age.estimate)} (80%: ${years(age.interval_80[0])}-${years(age.interval_80[1])})`;
  if (age.gap !== null && age.gap !== undefined) text += `, ${age.gap >= 0 ? "+" : ""}${Math.round(age.gap)} y from the stated age`;
  text += ".";
  if (sex && sex.mismatch) text += " APPARENT SEX DIFFERS FROM THE STATED SEX: check that the film is this patient's.";
  return text;
}

function makePane(data, img) {
  const figure = document.createElement("figure"), caption = document.createElement("figcaption");
  const frame = document.createElement("div"), canvas = document.createElement("canvas");
  const marks = document.createElement("canvas");
  figure.className = "pane"; figure.dataset.view = data.label; frame.className = "frame";
  canvas.className = "image"; marks.className = "marks";
  caption.textContent = data.label === "radiograph" ? VIEW_NAMES.radiograph : data.label;
  canvas.width = marks.width = img.width; canvas.height = marks.height = img.height;
  frame.append(canvas, marks); figure.append(caption, frame);
  return { ...data, figure, canvas, marks, views: { radiograph: img }, maps: {}, pixels: null };
}

async function open(id) {
  current = id;
  const study = await json(`/api/studies/${id}`);
  $("viewer").hidden = false;
  if (study.status !== "done") { $("summary").textContent = study.error || `study is ${study.status}`; return; }
  const r = study.result, base = `/api/studies/${id}/files/`;
  panes = [];
  for (const data of paneData(r)) panes.push(makePane(data, await loadImage(base + data.image)));
  $("stage").replaceChildren(...panes.map((p) => p.figure));
  $("zoom").value = 1;  // opens fitted: every film whole in its pane
  const first = panes[0], anatomy = first.anatomy || {};
  $("heart-choice").hidden = !(anatomy.heart && anatomy.heart.plausible);
  $("clavicle-choice").hidden = !(anatomy.clavicles || []).some((c) => c.plausible);
  for (const v of first.derived) if (v.file) first.views[v.name] = await loadImage(base + v.file);
  $("view").replaceChildren(...Object.keys(first.views).map((name) => new Option(VIEW_NAMES[name] || name, name)));
  $("view-choice").hidden = Object.keys(first.views).length < 2;
  for (const p of panes) showView(p, "radiograph");
  // Every method's heatmaps; the boxes always come from the result's own method (r.explanation).
  const own = r.explanation || "cam";
  const methods = new Set();
  for (const p of panes) {
    for (const [name, f] of Object.entries(p.findings)) {
      for (const [method, file] of Object.entries(f.heatmaps || {})) {
        (p.maps[method] ||= {})[name] = colour(await loadImage(base + file));
        methods.add(method);
      }
    }
  }
  const ordered = [...methods].sort((a, b) => (b === own) - (a === own));
  $("method").replaceChildren(...ordered.map((m) => new Option((METHOD_NAMES[m] || m) + (m === own ? " (boxes)" : ""), m)));
  $("method-choice").hidden = ordered.length < 2;
  method = ordered.includes(own) ? own : ordered[0];
  colours = Object.fromEntries(r.findings.map((f, i) => [f.name, PALETTE[i % PALETTE.length]]));
  const body = $("findings").tBodies[0];
  body.replaceChildren(...r.findings.map((f) => {
    const tr = document.createElement("tr");
    const box = tr.insertCell();
    const swatch = document.createElement("span");
    swatch.className = "swatch"; swatch.style.background = findingColour(f.name); swatch.title = "its boxes' colour";
    box.append(swatch);
    if (panes.some((p) => Object.keys((p.findings[f.name] || {}).heatmaps || {}).length)) {
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
  if (panes.some((p) => p.findings.Age)) {  // the age map's row: a checkbox, no probability
    const tr = body.insertRow(), box = tr.insertCell(), cb = document.createElement("input");
    cb.type = "checkbox"; cb.dataset.finding = "Age"; cb.className = "heat"; cb.onchange = render;
    box.append(cb);
    tr.insertCell().textContent = "where the apparent age is read";
    tr.insertCell().colSpan = 3;
  }
  const t = r.triage;
  const notes = (t.urgent || []).filter((u) => u.withheld).map((u) => ` No urgent flag for ${u.finding}: ${u.withheld}.`);
  if (r.ood && !r.ood.in_distribution) {
    notes.unshift(` OUT OF DISTRIBUTION: not like the radiographs this model knows (${r.ood.reason || `score ${r.ood.score.toFixed(2)}`}).`);
  }
  for (const v of (r.views || []).filter((v) => v.read === false)) notes.push(` Not read: ${v.view || "an image"} (${v.reason}).`);
  $("summary").textContent = `triage ${t.priority}: abnormal ${pct(t.abnormal_probability)} ` +
    `(threshold ${pct(t.threshold)}); model ${r.model.name} ${r.model.version}.${ageSexLine(r)}${notes.join("")} ` +
    r.disclaimer;
  current_result = r;
  render();
  refresh();
}

let current_result = null, method = "cam";

// The chosen view (radiograph, soft tissue, bone) becomes the pixels that window/level act on.
function showView(pane, name) {
  const caption = pane.figure.querySelector("figcaption");
  const shown = VIEW_NAMES[name] || name;
  caption.textContent = pane.label === "radiograph" ? shown
    : name === "radiograph" ? pane.label : `${pane.label} · ${shown}`;
  const ctx = pane.canvas.getContext("2d");
  ctx.drawImage(pane.views[name], 0, 0, pane.canvas.width, pane.canvas.height);
  pane.pixels = ctx.getImageData(0, 0, pane.canvas.width, pane.canvas.height);
}

function render() {
  if (!current_result) return;
  const width = +$("width").value, level = +$("level").value, lo = level - width / 2;
  const lut = new Uint8ClampedArray(256).map((_, v) => Math.round(255 * (v - lo) / width));
  const positive = new Set(current_result.findings.filter((f) => f.positive).map((f) => f.name));
  const checked = [...document.querySelectorAll("input.heat:checked")].map((cb) => cb.dataset.finding);
  for (const p of panes) {
    const out = new ImageData(new Uint8ClampedArray(p.pixels.data), p.pixels.width, p.pixels.height);
    for (let i = 0; i < out.data.length; i += 4) {
      const v = lut[out.data[i]];
      out.data[i] = out.data[i + 1] = out.data[i + 2] = v;
    }
    p.canvas.getContext("2d").putImageData(out, 0, 0);
    drawMarks(p, positive, checked);
  }
  fit();
}

function drawMarks(p, positive, checked) {
  const w = p.marks.width, h = p.marks.height, sx = w / p.width, sy = h / p.height;
  const m = p.marks.getContext("2d"), heat = p.maps[method] || {};
  m.clearRect(0, 0, w, h);
  m.globalAlpha = +$("opacity").value;
  for (const name of checked) if (heat[name]) m.drawImage(heat[name], 0, 0, w, h);
  m.globalAlpha = 1;
  m.lineWidth = Math.max(2, w / 400);
  if ($("show-boxes").checked) {
    const size = Math.max(12, w / 60), placed = [];
    m.font = `${size}px sans-serif`; m.textBaseline = "top";
    for (const [name, f] of Object.entries(p.findings)) {
      if (!positive.has(name)) continue;
      for (const b of f.boxes || []) {
        m.strokeStyle = findingColour(name); m.strokeRect(b.x * sx, b.y * sy, b.width * sx, b.height * sy);
        placed.push(label(m, name, b.x * sx + 2, b.y * sy + 2, size, placed, h));
      }
    }
  }
  if ($("show-boxes").checked) {  // detected nodules: a circle each, with its score
    m.strokeStyle = m.fillStyle = "#ffdc00";
    for (const d of (p.nodules || {}).detections || []) {
      m.beginPath(); m.arc(d.x * sx, d.y * sy, d.radius_px * sx + 3, 0, 2 * Math.PI); m.stroke();
      m.fillText(`nodule ${d.score.toFixed(2)}`, (d.x + d.radius_px) * sx + 6, (d.y - d.radius_px) * sy);
    }
  }
  const a = p.anatomy || {};
  const outlines = [[$("show-lungs").checked, a.lungs || [], "#40e0ff"],
    [$("show-heart").checked, a.heart && a.heart.plausible ? [a.heart] : [], "#ff8c00"],
    [$("show-clavicles").checked, (a.clavicles || []).filter((c) => c.plausible), "#ff00ff"]];
  for (const [shown, structures, colour] of outlines) {
    if (!shown) continue;
    m.strokeStyle = colour;
    for (const s of structures) {
      m.beginPath();
      s.polygon.forEach(([x, y], i) => (i ? m.lineTo(x * sx, y * sy) : m.moveTo(x * sx, y * sy)));
      m.closePath(); m.stroke();
    }
  }
}

// A finding's name on a dark ground in its colour, moved down (then up) past labels already placed so none overlap.
function label(m, name, x, y, size, placed, height) {
  const box = { x, y, w: m.measureText(name).width + 6, h: size + 4 };
  const hits = (a) => placed.some((b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h);
  for (let step = 0; hits(box) && step < 40; step++) {
    box.y = y + (step % 2 ? -1 : 1) * Math.ceil((step + 1) / 2) * box.h;
    box.y = Math.min(Math.max(0, box.y), height - box.h);
  }
  m.fillStyle = "rgba(0, 0, 0, 0.7)"; m.fillRect(box.x, box.y, box.w, box.h);
  m.fillStyle = findingColour(name); m.fillText(name, box.x + 3, box.y + 2);
  return box;
}

// Zoom 1 fits each film whole in its pane (the stage's width shared by the panes); the canvases' CSS size follows,
// so a pane scrolls when zoomed in.
function fit() {
  for (const p of panes) {
    const frame = p.figure, caption = frame.querySelector("figcaption");
    const room = [frame.clientWidth, frame.clientHeight - caption.offsetHeight];
    const scale = Math.min(room[0] / p.canvas.width, room[1] / p.canvas.height) * +$("zoom").value;
    for (const c of [p.canvas, p.marks]) {
      c.style.width = `${Math.round(p.canvas.width * scale)}px`; c.style.height = `${Math.round(p.canvas.height * scale)}px`;
    }
  }
}

for (const id of ["width", "level", "show-boxes", "show-lungs", "show-heart", "show-clavicles", "opacity"]) $(id).addEventListener("input", render);
$("zoom").addEventListener("input", fit);
window.addEventListener("resize", () => { if (current_result) fit(); });
$("view").addEventListener("change", () => { showView(panes[0], $("view").value); render(); });
$("method").addEventListener("change", () => { method = $("method").value; render(); });
$("reset").onclick = () => {
  $("width").value = 255; $("level").value = 128; $("zoom").value = 1; $("opacity").value = 0.45; render();
};
json("/api/model").then((m) => { $("model").textContent = `${m.name} ${m.version}`; });
function refresh() {
  refreshWorklist().catch((e) => { if (e.message !== SIGN_IN) console.error(e); });
}
refresh();
setInterval(refresh, 2000);
