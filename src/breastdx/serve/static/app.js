// breastdx web page: upload images or WDBC features, show predictions, overlays and model cards.
// Plain JavaScript, no build step, no external resources. Research use only.
"use strict";

const state = {
  models: [],          // GET /v1/models -> models
  tasks: [],           // served tasks
  researchNotice: "",
  batch: [],           // one entry per uploaded file: {file, status, answer, error}
  selected: -1,        // index in batch shown in the viewer
  upload: 0,           // number of the latest upload: a batch replaced by a newer upload stops where it is
  wdbcBatch: [],       // one entry per case of a WDBC CSV: {line, caseId, reference, features, answer, error}
  wdbcUpload: 0,       // number of the latest WDBC CSV: a file replaced by a newer one stops where it is
  progressTimer: 0,    // the timer counting the seconds of the answer awaited (startProgress)
};

const TASK_TITLES = {
  "ultrasound": "Ultrasound: lesion segmentation + classification (busi-seg + busi-cls)",
  "busi-seg": "Ultrasound lesion segmentation (busi-seg)",
  "busi-cls": "Ultrasound classification with Grad-CAM (busi-cls)",
  "breastmnist": "BreastMNIST classification (breastmnist)",
  "pcam": "Histopathology patch classification (pcam)",
  "idc": "Histopathology IDC patch classification (idc)",
  "breakhis": "Histopathology BreakHis subtypes (breakhis)",
  "monuseg": "H&E tile at 40x: nuclei and their morphometry (monuseg)",
};

// The ten nucleus features of Street, Wolberg & Mangasarian (1993), and the unit of each in features_um.
const NUCLEUS_FEATURES = [["radius", "µm"], ["texture", "grey levels"], ["perimeter", "µm"], ["area", "µm²"],
  ["smoothness", "µm"], ["compactness", ""], ["concavity", "µm"], ["concave_points", ""], ["symmetry", ""],
  ["fractal_dimension", ""]];

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// A probability in percent, one decimal; one that would round to 0.0% or 100.0% is "< 0.1%" or "> 99.9%": a
// model's output is never a certainty.
function fmtProb(p) {
  if (p === null || p === undefined) return "n/a";
  return p < 0.0005 ? "< 0.1%" : p >= 0.9995 ? "> 99.9%" : (100 * p).toFixed(1) + "%";
}
function fmtNum(x, digits = 3) { return (x === null || x === undefined) ? "n/a" : Number(x).toFixed(digits); }

function errorText(body, fallback) {
  if (body && body.error) {
    const e = body.error;
    const lines = [e.message];
    for (const p of e.problems || []) lines.push("• " + p);
    return lines.join("\n");
  }
  return fallback;
}

// ----------------------------------------------------------------------------------------- API token
// The token is asked once and kept for this browser tab's session only (sessionStorage), never in a cookie.

const TOKEN_KEY = "breastdx-token";

function apiToken() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function askToken(message) {
  $("token-message").textContent = message;
  $("token-form").hidden = false;
  $("token-input").focus();
}

function submitToken(event) {
  event.preventDefault();
  // Spaces and invisible characters (a zero-width space from a chat or a document) come with a pasted token; a
  // character a header cannot carry would make every request fail in the browser, whatever the token.
  const token = $("token-input").value.replace(/[\s\p{Cf}]/gu, "");
  if (!token) { $("token-message").textContent = "Paste the API token your administrator gave you."; return; }
  if (/[^\x21-\x7e]/.test(token)) {
    $("token-message").textContent = "This is not an API token: it holds a character other than letters, digits " +
      "and punctuation (quotation marks copied with it?). Paste the token alone.";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  $("token-form").hidden = true;
  loadModels();
}

// How long the page waits for an answer before saying there is none (a service that hangs would otherwise leave
// "Predicting… N s" counting for ever; a large H&E tile takes about 20 s on 2 cores). Tests set
// window.BREASTDX_ANSWER_TIMEOUT_S to a few seconds.
const ANSWER_TIMEOUT_S = 300;

function timedOut(err) {
  return Boolean(err) && (err.name === "TimeoutError" || err.name === "AbortError");
}

async function fetchJSON(url, options) {
  let response;
  const opts = Object.assign({}, options || {});
  const token = apiToken();
  if (token) opts.headers = Object.assign({}, opts.headers || {}, { Authorization: "Bearer " + token });
  const limit = Number(window.BREASTDX_ANSWER_TIMEOUT_S) || ANSWER_TIMEOUT_S;
  if (!opts.signal && typeof AbortSignal !== "undefined" && AbortSignal.timeout) {
    opts.signal = AbortSignal.timeout(limit * 1000);
  }
  const noAnswer = `No answer after ${limit} s: the service may be overloaded or stopped. Try again later, or ask ` +
    "its administrator.";
  try {
    response = await fetch(url, opts);
  } catch (err) {
    if (timedOut(err)) throw new Error(noAnswer);
    throw new Error("The service cannot be reached (" + err.message + ").");
  }
  let body = null;
  try { body = await response.json(); } catch (err) {
    if (timedOut(err)) throw new Error(noAnswer);
    body = null;
  }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    const why = token ? "The service refused this API token (unknown or revoked). Enter a valid token."
                      : "This service needs an API token. Enter the token your administrator gave you.";
    askToken(why);
    throw new Error(why);
  }
  if (!response.ok) {
    const fallback = response.status === 502 || response.status === 503 || response.status === 504
      ? "The service is unavailable just now (" + response.status + "); try again in a moment."
      : "The service answered " + response.status + ".";
    throw new Error(errorText(body, fallback));
  }
  return body;
}

// Why no model of a kind can be used: the API token is not entered yet (the models are listed once the service
// accepts it), or none is served.
function noModelText(kind) {
  return $("token-form").hidden ? `No ${kind} model is served.`
    : "Enter the API token above first: the models are listed once the service accepts it.";
}

function showError(id, message) {
  const box = $(id);
  box.textContent = message || "";
  box.hidden = !message;
}

// ----------------------------------------------------------------------------------------- tabs

const TABS = ["image", "wdbc", "record"];

function selectTab(name) {
  for (const t of TABS) {
    $("tab-" + t).setAttribute("aria-selected", String(t === name));
    $("tab-" + t).tabIndex = t === name ? 0 : -1;  // one tab stop for the tab list (WAI-ARIA tabs pattern)
    $("panel-" + t).hidden = t !== name;
  }
  if (name === "record") loadRecord();
}

// Arrow keys move between the tabs (wrapping), Home and End go to the first and last; the tab moved to is shown.
function tabKey(e, name) {
  const i = TABS.indexOf(name);
  const to = {ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: TABS.length - 1}[e.key];
  if (to === undefined) return;
  e.preventDefault();
  const next = TABS[(to + TABS.length) % TABS.length];
  selectTab(next);
  $("tab-" + next).focus();
}

// ----------------------------------------------------------------------------------------- markdown

function escapeHTML(s) {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function inlineMD(s) {
  return escapeHTML(s)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>");
}

// A small Markdown subset (headings, lists, tables, quotes, paragraphs), escaped first: model cards only.
function renderMarkdown(text) {
  const out = [];
  const lines = (text || "").split(/\r?\n/);
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (/^\s*$/.test(line)) { i++; continue; }
    let m;
    if ((m = line.match(/^(#{1,4})\s+(.*)$/))) {
      const level = Math.min(6, m[1].length + 2);
      out.push(`<h${level}>${inlineMD(m[2])}</h${level}>`); i++; continue;
    }
    if (/^\s*\|/.test(line)) {
      const rows = [];
      while (i < lines.length && /^\s*\|/.test(lines[i])) { rows.push(lines[i]); i++; }
      const cells = (r) => r.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
      const body = rows.filter((r) => !/^\s*\|[\s:|-]+\|\s*$/.test(r));
      const html = body.map((r, k) => "<tr>" + cells(r).map((c) => k === 0 ? `<th>${inlineMD(c)}</th>` : `<td>${inlineMD(c)}</td>`).join("") + "</tr>");
      out.push(`<table class="table compact">${html.join("")}</table>`); continue;
    }
    if (/^\s*[-*]\s+/.test(line)) {
      const items = [];
      while (i < lines.length && /^\s*[-*]\s+/.test(lines[i])) { items.push(lines[i].replace(/^\s*[-*]\s+/, "")); i++; }
      out.push("<ul>" + items.map((t) => `<li>${inlineMD(t)}</li>`).join("") + "</ul>"); continue;
    }
    if (/^\s*>/.test(line)) {
      const quote = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) { quote.push(lines[i].replace(/^\s*>\s?/, "")); i++; }
      out.push(`<blockquote>${inlineMD(quote.join(" "))}</blockquote>`); continue;
    }
    const para = [];
    while (i < lines.length && !/^\s*$/.test(lines[i]) && !/^(#{1,4}\s|\s*\||\s*[-*]\s|\s*>)/.test(lines[i])) {
      para.push(lines[i]); i++;
    }
    out.push(`<p>${inlineMD(para.join(" "))}</p>`);
  }
  return out.join("\n");
}

function renderCards(highlight) {
  const box = $("cards");
  box.replaceChildren();
  if (!state.models.length) {
    box.append(el("p", { class: "muted", text: "No model is served." }));
    return;
  }
  for (const m of state.models) {
    const open = highlight ? highlight.includes(m.name) : false;
    const details = el("details", { class: "card", id: "card-" + m.name });
    if (open) details.open = true;
    const summary = el("summary", {}, el("strong", { text: m.name }),
      ` — task ${m.task}, ${m.architecture || "?"}, version ${m.version}`);
    const body = el("div", { class: "card-body" });
    body.innerHTML = m.model_card ? renderMarkdown(m.model_card) : "<p>(no model card)</p>";
    details.append(summary, body);
    box.append(details);
  }
}

// ----------------------------------------------------------------------------------------- probability bars

function renderBars(container, cls) {
  container.replaceChildren();
  for (const name of cls.class_names) {
    const p = cls.probabilities[name];
    const bar = el("div", { class: "bar-fill" });
    bar.style.width = Math.max(0, Math.min(100, 100 * p)).toFixed(1) + "%";
    const track = el("div", { class: "bar-track" }, bar);
    if (name === cls.positive_class && cls.threshold !== null && cls.threshold !== undefined) {
      const tick = el("div", { class: "bar-threshold", title: "operating threshold " + fmtProb(cls.threshold) });
      tick.style.left = (100 * cls.threshold).toFixed(1) + "%";
      track.append(tick);
    }
    const row = el("div", { class: "bar" + (name === cls.label ? " chosen" : ""), "data-class": name },
      el("span", { class: "bar-name", text: displayName(name) }), track, el("span", { class: "bar-value", text: fmtProb(p) }));
    container.append(row);
  }
}

// Class names as people read them: "normal_or_benign" is shown as "normal or benign" (the API keeps the name).
function displayName(name) {
  return String(name).replace(/_/g, " ");
}

function ruleText(cls) {
  if (cls.threshold === null || cls.threshold === undefined) return "Label: the most probable class." + calibrationText(cls);
  return `Label at the model's operating point: ${cls.positive_class} when P(${cls.positive_class}) ≥ ` +
    `${fmtProb(cls.threshold)} (the black tick on its bar), else the most probable other class.` +
    thresholdRuleText(cls) + calibrationText(cls);
}

// How the served model's threshold was chosen (meta.json threshold_rule, listed by GET /v1/models), where the answer
// uses that threshold: a lesion-aware fusion answers with a threshold of its own.
function thresholdRuleText(cls) {
  const info = state.models.find((m) => m.name === cls.model.name);
  if (cls.lesion_aware || !info || !info.threshold_rule || info.threshold === null ||
      Math.abs(info.threshold - cls.threshold) > 1e-6) return "";
  return ` How the threshold was chosen: ${info.threshold_rule}.`;
}

// Image classifiers' probabilities are temperature-scaled on the validation split; said only where the answer gives
// the temperature and the probabilities are the scaled model's own (not a lesion-aware fusion).
function calibrationText(cls) {
  if (cls.lesion_aware || cls.temperature === null || cls.temperature === undefined) return "";
  return ` Probabilities calibrated by temperature scaling (T = ${fmtNum(cls.temperature, 2)}).`;
}

function addDetail(dl, term, value) {
  dl.append(el("dt", { text: term }), el("dd", { text: value }));
}

// ----------------------------------------------------------------------------------------- images

function currentTask() { return $("task-select").value; }

function setupTasks() {
  const select = $("task-select");
  select.replaceChildren();
  // The combined ultrasound endpoint first, then the single tasks.
  const imageTasks = state.tasks.filter((t) => t !== "wdbc")
    .sort((a, b) => (b === "ultrasound") - (a === "ultrasound") || a.localeCompare(b));
  for (const t of imageTasks) select.append(el("option", { value: t, text: TASK_TITLES[t] || t }));
  const none = imageTasks.length === 0;
  select.disabled = none;
  $("file-input").disabled = none;
  $("dropzone").classList.toggle("disabled", none);
  $("task-help").textContent = none ? "No image model is shipped in this installation." : "";
  const hasWDBC = state.tasks.includes("wdbc");
  $("wdbc-submit").disabled = !hasWDBC;
  $("wdbc-example").disabled = !hasWDBC;
  $("wdbc-file").disabled = !hasWDBC;
  if (!hasWDBC) showError("wdbc-error", "No WDBC model is shipped in this installation.");
}

function areaText(seg) {
  if (!seg) return "";
  if (!seg.lesion_found) return "no lesion";
  const mm = seg.lesion_area_mm2 !== null && seg.lesion_area_mm2 !== undefined ? `${seg.lesion_area_mm2.toFixed(1)} mm²` : null;
  return mm ? `${mm} (${seg.lesion_area_px} px)` : `${seg.lesion_area_px} px`;
}

function nucleiText(nuc) {
  if (!nuc) return "";
  const med = nuc.median_area_um2 !== null && nuc.median_area_um2 !== undefined ? `median ${nuc.median_area_um2.toFixed(1)} µm²` :
    (nuc.median_area_px !== null && nuc.median_area_px !== undefined ? `median ${nuc.median_area_px.toFixed(0)} px` : "");
  return med ? `${nuc.n_nuclei} nuclei, ${med}` : `${nuc.n_nuclei} nuclei`;
}

function showNuclei(dl, nuc) {
  // Morphometry of the nuclei the model found: the per-tile columns under the cytology names, not a diagnosis.
  const label = $("pred-label");
  label.textContent = `${nuc.n_nuclei} nuclei`;
  label.dataset.label = "nuclei";
  $("pred-rule").textContent = nuc.cytology_note;
  $("prob-bars").replaceChildren();
  $("pred-uncertain").hidden = true;
  const um = nuc.features_um;
  const f = um || nuc.features_px;
  addDetail(dl, "Nuclei", `${nuc.n_nuclei} found; ${nuc.n_in_summary} measured (at least 30 px, not on the tile's edge)`);
  if (nuc.median_area_px !== null) {
    addDetail(dl, "Median nucleus area", (nuc.median_area_um2 !== null ? `${nuc.median_area_um2.toFixed(1)} µm² (` : "") +
      `${nuc.median_area_px.toFixed(0)} px` + (nuc.median_area_um2 !== null ? ")" : ""));
  }
  const fromFile = (nuc.resolution_source || "").startsWith("file");
  addDetail(dl, "Resolution", um ? `${nuc.microns_per_pixel} µm per pixel ` + (fromFile ? "(the file's pixel spacing)"
    : "assumed (40x, as the model was trained)") : "unknown: lengths in pixels");
  for (const [name, unit] of NUCLEUS_FEATURES) {
    const mean = f[name + "_mean"];
    const worst = f[name + "_worst"];
    const u = um ? unit : (unit.startsWith("µm") ? unit.replace("µm", "px") : unit);
    const measured = mean !== null && mean !== undefined;  // none where no nucleus is measured
    addDetail(dl, `${name.replace("_", " ")} (mean / worst)`,
      measured ? `${fmtNum(mean)} / ${fmtNum(worst)}${u ? " " + u : ""}` : "n/a (no nucleus measured)");
  }
  addDetail(dl, "Nucleus model", `${nuc.model.name} (version ${nuc.model.version})`);
}

function showAnswer(index) {
  const item = state.batch[index];
  state.selected = index;
  for (const [k, row] of [...$("batch-table").tBodies[0].rows].entries()) row.classList.toggle("selected", k === index);
  if (!item || !item.answer) { $("image-result").hidden = true; return; }
  const a = item.answer;
  const wasHidden = $("image-result").hidden;
  $("image-result").hidden = false;
  // On a narrow screen the result sits far below the upload: bring it into view when it first appears.
  if (wasHidden && window.matchMedia("(max-width: 860px)").matches) $("image-result").scrollIntoView({ block: "start" });
  $("layer-image").src = a.image.image_png;
  const cls = a.classification;
  const seg = a.segmentation;
  const nuc = a.nuclei;
  const heat = $("layer-heatmap");
  const cont = $("layer-contour");
  const outline = seg ? seg.contour_overlay_png : (nuc ? nuc.outline_overlay_png : null);
  if (cls && cls.gradcam_overlay_png) { heat.src = cls.gradcam_overlay_png; heat.hidden = false; } else { heat.removeAttribute("src"); heat.hidden = true; }
  if (outline) { cont.src = outline; cont.hidden = !$("contour-toggle").checked; } else { cont.removeAttribute("src"); cont.hidden = true; }
  cont.alt = nuc ? "Outlines of the nuclei found" : "Predicted lesion contour";
  $("contour-toggle-text").textContent = nuc ? " Nucleus outlines" : " Lesion contour";
  $("heatmap-control").hidden = !(cls && cls.gradcam_overlay_png);
  $("heat-legend").hidden = $("heatmap-control").hidden;
  $("heat-class").textContent = $("heat-legend").hidden ? "" :
    `Grad-CAM: where the model looked for "${displayName(cls.label)}" (P = ${fmtProb(cls.probabilities[cls.label])})`;
  $("contour-legend").hidden = !seg;
  $("nuclei-legend").hidden = !nuc;
  $("contour-control").hidden = !outline;
  applyOpacity();
  $("image-caption").textContent = `${a.image.width} × ${a.image.height} px, ${a.image.format}` +
    (a.image.spacing_mm ? `, pixel spacing ${a.image.spacing_mm.map((s) => s.toFixed(3)).join(" × ")} mm` : ", pixel spacing unknown") +
    (a.image.spacing_note ? ` (${a.image.spacing_note})` : "") +
    (a.image.frame ? `; cine loop: frame ${a.image.frame[0]} of ${a.image.frame[1]} shown and predicted` : "");
  $("result-file").textContent = a.image.filename || state.batch[index].file.name;  // DICOM: the service keeps no name
  const label = $("pred-label");
  const dl = $("pred-details");
  const scope = $("scope-warning");
  scope.hidden = a.image.in_scope !== false;
  scope.textContent = scope.hidden ? "" : "Out of scope: this image is " + a.image.scope_note +
    ". The result below is not to be trusted.";
  const seen = a.image.seen_in_training;
  $("training-warning").hidden = seen !== "yes" && seen !== "near-duplicate";
  $("training-warning").textContent = seen === "yes" ? "The model was trained on this image: the result below " +
    "is not that of a new case." : seen === "near-duplicate" ? "The model was trained on a near-duplicate of this " +
    "image (another frame of the lesion, or a re-saved or re-cropped copy): the result below is not that of a new " +
    "case." : "";
  $("disagreement").hidden = !a.disagreement;
  $("disagreement").textContent = a.disagreement || "";
  dl.replaceChildren();
  $("nuclei-csv").hidden = !(nuc && nuc.per_nucleus);
  if (nuc) {
    showNuclei(dl, nuc);
  } else if (cls) {
    label.textContent = displayName(cls.label);
    label.dataset.label = cls.label;
    $("pred-rule").textContent = ruleText(cls);
    renderBars($("prob-bars"), cls);
    addDetail(dl, "Classifier", `${cls.model.name} (version ${cls.model.version})`);
    if (cls.lesion_aware) {
      addDetail(dl, "Lesion-aware", "whole image fused with the lesion crop found by the segmenter (Grad-CAM: whole image)");
    }
    if (cls.label_argmax !== cls.label) addDetail(dl, "Most probable class", displayName(cls.label_argmax));
    const set = cls.prediction_set;
    if (set) {
      const level = `${Math.round(100 * cls.prediction_set_level)}%`;
      addDetail(dl, `Prediction set (${level})`, set.map(displayName).join(", "));
    }
    const unsure = $("pred-uncertain");
    unsure.hidden = !(set && set.length > 1);
    unsure.textContent = unsure.hidden ? "" :
      `The model is uncertain between ${set.map(displayName).join(" and ")}: at the ${Math.round(100 * cls.prediction_set_level)}% ` +
      "level it cannot narrow the answer to one class. This case needs a specialist's reading.";
  } else {
    $("pred-uncertain").hidden = true;
    label.textContent = seg && seg.lesion_found ? "lesion found" : "no lesion found";
    label.dataset.label = label.textContent;
    $("pred-rule").textContent = "Segmentation only: " + (state.tasks.includes("busi-cls") ? "this model gives no " +
      "class (the combined ultrasound model adds the classifier's)." : "no classifier is served.");
    $("prob-bars").replaceChildren();
  }
  if (seg) {
    addDetail(dl, "Lesion area", areaText(seg) + (seg.lesion_found && seg.lesion_area_mm2 === null ? " — mm² needs a DICOM with pixel spacing" : ""));
    if (seg.lesion_found) {
      const d = seg.lesion_max_diameter_mm;
      addDetail(dl, "Longest diameter", (d !== null && d !== undefined ? `${d.toFixed(1)} mm (` : "") +
        `${fmtNum(seg.lesion_max_diameter_px, 0)} px` + (d !== null && d !== undefined ? ")" : ""));
    }
    addDetail(dl, "Lesion regions", String(seg.n_components));
    addDetail(dl, "Segmentation", `${seg.model.name} (version ${seg.model.version}), pixel threshold ${fmtNum(seg.threshold, 2)}`);
  }
  addDetail(dl, "Time taken", `${a.elapsed_ms.toFixed(0)} ms (server)`);
  addDetail(dl, "Input SHA-256", a.input_sha256);
  addDetail(dl, "Prediction id", String(a.prediction_id));
  for (const note of a.notes || []) addDetail(dl, "Note", note);
  renderCards(a.models.map((m) => m.name));
}

function applyOpacity() {
  const v = Number($("heatmap-opacity").value);
  $("layer-heatmap").style.opacity = String(v / 100);
  $("heatmap-opacity-value").textContent = v + "%";
}

function renderBatchRow(index) {
  const item = state.batch[index];
  const tbody = $("batch-table").tBodies[0];
  let row = tbody.rows[index];
  if (!row) {
    row = el("tr", { tabindex: "0" });
    row.addEventListener("click", () => showAnswer(index));
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") showAnswer(index); });
    tbody.append(row);
  }
  row.replaceChildren();
  row.append(el("td", { text: item.file.name }));
  if (item.status === "pending") {
    row.append(el("td", { colspan: "4", class: "muted", text: "waiting…" }));
  } else if (item.status === "error") {
    row.classList.add("failed");
    row.append(el("td", { colspan: "4", class: "error-text", text: item.error }));
  } else {
    const a = item.answer;
    const cls = a.classification;
    const probs = cls ? cls.class_names.map((n) => `${displayName(n)} ${fmtProb(cls.probabilities[n])}`).join(", ") : "";
    const label = a.nuclei ? `${a.nuclei.n_nuclei} nuclei` : cls ? displayName(cls.label) :
      (a.segmentation && a.segmentation.lesion_found ? "lesion found" : "no lesion found");
    const warnings = answerWarnings(a);
    const labelCell = el("td", { text: label });
    if (warnings.length) labelCell.append(el("br"), el("span", { class: "row-warning", text: "⚠ " + warnings.join("; ") }));
    row.append(labelCell, el("td", { text: probs }), el("td", { text: a.nuclei ? nucleiText(a.nuclei) : areaText(a.segmentation) }),
      el("td", { text: a.elapsed_ms.toFixed(0) + " ms" }));
  }
}

// What the result view warns of, in short, for the answer's batch row: a row must not read as a plain result.
function answerWarnings(a) {
  const out = [];
  const img = a.image || {};
  if (img.in_scope === false) out.push("out of scope");
  if (img.seen_in_training === "yes") out.push("the model was trained on this image");
  else if (img.seen_in_training === "near-duplicate") out.push("the model was trained on a near-duplicate of it");
  const set = a.classification && a.classification.prediction_set;
  if (set && set.length > 1) out.push(`uncertain between ${set.map(displayName).join(" and ")}`);
  if (a.disagreement) out.push("the models disagree");
  return out;
}

// An answer may take a while (a large H&E tile: 20 s and more): say which file is being predicted, and for how long.
function startProgress(name, k, n) {
  clearInterval(state.progressTimer);
  $("image-progress-text").textContent = `Predicting ${name}` + (n > 1 ? ` (${k} of ${n})` : "") + "…";
  $("image-progress-time").textContent = "";
  $("image-progress").hidden = false;
  const t0 = Date.now();
  state.progressTimer = setInterval(() => {
    $("image-progress-time").textContent = `${Math.round((Date.now() - t0) / 1000)} s`;
  }, 1000);
}

function stopProgress() {
  clearInterval(state.progressTimer);
  $("image-progress").hidden = true;
}

async function predictFile(file, task) {
  const form = new FormData();
  form.append("file", file, file.name);
  const query = task === "monuseg" ? "?per_nucleus=true" : "";  // the nuclei table, for its CSV download
  return fetchJSON("/v1/predict/" + encodeURIComponent(task) + query, { method: "POST", body: form });
}

async function handleFiles(files) {
  files = [...files];
  if (!files.length) return;
  showError("image-error", "");
  const task = currentTask();
  if (!task) { showError("image-error", noModelText("image")); return; }
  const run = ++state.upload;
  state.batch = files.map((file) => ({ file, status: "pending", answer: null, error: null }));
  state.selected = -1;
  $("batch-table").tBodies[0].replaceChildren();
  $("batch").hidden = files.length < 2;
  $("area-header").textContent = task === "monuseg" ? "Nuclei" : "Lesion area";
  $("csv-download").disabled = true;
  $("image-result").hidden = true;
  state.batch.forEach((_, k) => renderBatchRow(k));
  let done = 0;
  for (const [k, item] of state.batch.entries()) {
    $("batch-progress").textContent = `(${done} of ${files.length} done)`;
    startProgress(item.file.name, k + 1, files.length);
    try {
      const answer = await predictFile(item.file, task);
      if (run !== state.upload) return;  // replaced by a newer upload: its files are not sent, its rows not shown
      item.answer = answer;
      item.status = "done";
      if (state.selected < 0) showAnswer(k);
    } catch (err) {
      if (run !== state.upload) return;
      item.status = "error";
      item.error = err.message;
      if (files.length === 1) showError("image-error", item.file.name + ": " + err.message);
    }
    done++;
    renderBatchRow(k);
  }
  stopProgress();
  $("batch-progress").textContent = `(${done} of ${files.length} done)`;
  $("csv-download").disabled = false;
  if (state.selected >= 0) showAnswer(state.selected);
}

function csvField(v) {
  let s = v === null || v === undefined ? "" : String(v);
  // A text cell starting with = + - @ tab or CR is a formula to a spreadsheet (OWASP, CSV injection): quote it.
  if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = "'" + s;
  return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

function batchCSV() {
  const classNames = [];
  for (const item of state.batch) {
    const cls = item.answer && item.answer.classification;
    if (cls) for (const n of cls.class_names) if (!classNames.includes(n)) classNames.push(n);
  }
  // Tiles of monuseg: the 30 cytology columns, in µm where the resolution is known (else px; feature_unit says).
  const nucleusColumns = [];
  for (const item of state.batch) {
    const nuc = item.answer && item.answer.nuclei;
    if (nuc) for (const n of Object.keys(nuc.features_um || nuc.features_px)) if (!nucleusColumns.includes(n)) nucleusColumns.push(n);
  }
  const header = ["file", "task", "label", "threshold", ...classNames.map((n) => "p_" + n), "lesion_found",
    "lesion_area_px", "lesion_area_mm2", "n_nuclei", "median_nucleus_area_um2",
    ...(nucleusColumns.length ? ["feature_unit", ...nucleusColumns] : []), "in_scope", "scope_note",
    "seen_in_training", "prediction_set", "disagreement", "model", "model_version", "prediction_id", "input_sha256", "elapsed_ms", "error"];
  const lines = [header.join(",")];
  for (const item of state.batch) {
    const a = item.answer;
    const cls = a && a.classification;
    const seg = a && a.segmentation;
    const nuc = a && a.nuclei;
    const row = [
      item.file.name, a ? a.task : currentTask(),
      nuc ? `${nuc.n_nuclei} nuclei` : cls ? cls.label : (seg ? (seg.lesion_found ? "lesion" : "no lesion") : ""),
      cls ? cls.threshold : "", ...classNames.map((n) => (cls && n in cls.probabilities ? cls.probabilities[n] : "")),
      seg ? seg.lesion_found : "", seg ? seg.lesion_area_px : "", seg && seg.lesion_area_mm2 !== null ? seg.lesion_area_mm2 : "",
      nuc ? nuc.n_nuclei : "", nuc && nuc.median_area_um2 !== null ? nuc.median_area_um2 : "",
      ...(nucleusColumns.length ? [nuc ? (nuc.features_um ? "um" : "px") : "",
        ...nucleusColumns.map((n) => (nuc ? (nuc.features_um || nuc.features_px)[n] : ""))] : []),
      a && a.image ? a.image.in_scope : "", a && a.image ? a.image.scope_note : "",
      a && a.image ? a.image.seen_in_training : "", cls && cls.prediction_set ? cls.prediction_set.join("|") : "",
      a ? a.disagreement : "",
      a ? a.models.map((m) => m.name).join("+") : "", a ? a.models.map((m) => m.version).join("+") : "",
      a ? a.prediction_id : "", a ? a.input_sha256 : "", a ? a.elapsed_ms : "", item.error || "",
    ];
    lines.push(row.map(csvField).join(","));
  }
  lines.push(csvField("# " + state.researchNotice));
  return lines.join("\r\n") + "\r\n";
}

function saveCSV(text, name) {
  const blob = new Blob([text], { type: "text/csv" });
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function downloadCSV() { saveCSV(batchCSV(), "breastdx-predictions.csv"); }

function downloadNuclei() {
  // The shown tile's nuclei, one row per nucleus: the columns of `breastdx predict monuseg`'s nuclei/<tile>.csv.
  const item = state.batch[state.selected];
  const rows = item && item.answer && item.answer.nuclei && item.answer.nuclei.per_nucleus;
  if (!rows) return;
  const columns = rows.length ? Object.keys(rows[0]) : [];
  const cell = (v) => csvField(typeof v === "boolean" ? Number(v) : v);
  const lines = [columns.join(","), ...rows.map((r) => columns.map((c) => cell(r[c])).join(",")),
    csvField("# " + state.researchNotice)];
  saveCSV(lines.join("\r\n") + "\r\n", item.file.name.replace(/\.[^.]*$/, "") + "_nuclei.csv");
}

// ----------------------------------------------------------------------------------------- record

async function loadRecord() {
  const tbody = $("record-table").tBodies[0];
  try {
    const data = await fetchJSON("/v1/predictions?limit=50");
    tbody.replaceChildren();
    for (const e of data.items) {
      // created_at is ISO 8601 with its offset (+00:00): shown as "2026-01-02 03:04:05" under "Time (UTC)"
      const time = e.created_at.replace("T", " ").replace(/\.\d+/, "").replace(/(Z|[+-]00:00)$/, "");
      tbody.append(el("tr", {},
        el("td", { text: e.id }), el("td", { text: time }),
        el("td", { text: e.task }), el("td", { text: `${e.model_name} (${e.model_version})` }),
        el("td", { text: (e.input_name ? e.input_name + " · " : "") + e.input_sha256.slice(0, 12) + "…", title: e.input_sha256 }),
        el("td", { text: e.label ? displayName(e.label) : "" }), el("td", { text: e.elapsed_ms.toFixed(0) })));
    }
    if (!data.items.length) tbody.append(el("tr", {}, el("td", { colspan: "7", class: "muted", text: "Nothing recorded yet." })));
    $("record-count").textContent = data.total > data.items.length ? `The newest ${data.items.length} of ` +
      `${data.total} recorded predictions (GET /v1/predictions?offset=... lists the others).` : "";
  } catch (err) {
    $("record-count").textContent = "";
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "error-text", text: err.message })));
  }
}

// ----------------------------------------------------------------------------------------- start

async function start() {
  for (const t of TABS) {
    $("tab-" + t).addEventListener("click", () => selectTab(t));
    $("tab-" + t).addEventListener("keydown", (e) => tabKey(e, t));
  }
  const drop = $("dropzone");
  const input = $("file-input");
  input.addEventListener("change", () => { handleFiles(input.files); input.value = ""; });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  for (const type of ["dragenter", "dragover"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => { if (e.dataTransfer && e.dataTransfer.files) handleFiles(e.dataTransfer.files); });
  $("heatmap-opacity").addEventListener("input", applyOpacity);
  $("contour-toggle").addEventListener("change", () => {
    const item = state.batch[state.selected];
    $("layer-contour").hidden = !($("contour-toggle").checked && item && item.answer &&
      (item.answer.segmentation || item.answer.nuclei));
  });
  $("csv-download").addEventListener("click", downloadCSV);
  $("nuclei-csv").addEventListener("click", downloadNuclei);
  wireWDBC();
  $("record-refresh").addEventListener("click", loadRecord);
  $("token-form").addEventListener("submit", submitToken);
  try {
    const health = await (await fetch("/healthz")).json();
    $("wdbc-case").placeholder = health.record_names ? "optional; kept in the record" : "optional; shown here only, not recorded";
    if (health.auth && !apiToken()) {
      askToken("This service needs an API token. Enter the token your administrator gave you; it is kept for "
               + "this browser tab only.");
      $("status").textContent = "Waiting for an API token.";
      renderCards(null);
      document.body.dataset.ready = "true";
      return;
    }
  } catch (_) { /* the models request below says what is wrong */ }
  await loadModels();
  document.body.dataset.ready = "true";
}

async function loadModels() {
  $("status").classList.remove("ok", "bad");
  try {
    const data = await fetchJSON("/v1/models");
    state.models = data.models;
    state.tasks = data.tasks;
    state.researchNotice = data.research_use_only;
    // The bold lead already says "Research use only"; show the rest of the statement beside it.
    $("notice-text").textContent = data.research_use_only.replace(/^Research use only\.\s*/i, "");
    // Models left out on purpose (a generator, a second model of a task) are listed by GET /v1/models, not here.
    const failed = data.unavailable.filter((u) => !u.by_design);
    const left = failed.length ? ` Not loaded (failed): ${failed.map((u) => u.name).join(", ")}.` : "";
    $("status").textContent = `Serving: ${data.tasks.join(", ") || "no task"}.` + left;
    $("status").classList.add("ok");
  } catch (err) {
    $("status").textContent = err.message;
    $("status").classList.add("bad");
  }
  setupTasks();
  setupWDBC();
  renderCards(null);
}

document.addEventListener("DOMContentLoaded", start);
