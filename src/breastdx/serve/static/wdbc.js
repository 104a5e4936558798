// breastdx web page, cytology panel: the 30 WDBC features of one case (typed, pasted as a spreadsheet row, or an
// example), or a CSV of cases predicted one request each; results, SHAP reasons and a CSV download. Loaded before
// app.js, whose helpers ($, el, state, fetchJSON, showError, noModelText, ruleText, renderBars, addDetail,
// renderCards, csvField, saveCSV) it uses when the page runs.
"use strict";

function wdbcModel() { return state.models.find((m) => m.task === "wdbc"); }

function setupWDBC() {
  const box = $("wdbc-fields");
  box.replaceChildren();
  const model = wdbcModel();
  if (!model) return;
  const groups = { mean: [], error: [], worst: [] };
  for (const name of model.input.features) {
    const g = name.startsWith("mean ") ? "mean" : name.startsWith("worst ") ? "worst" : "error";
    groups[g].push(name);
  }
  const titles = { mean: "Mean", error: "Standard error", worst: "Worst (mean of the 3 largest)" };
  for (const g of ["mean", "error", "worst"]) {
    const fs = el("fieldset", {}, el("legend", { text: titles[g] }));
    for (const name of groups[g]) {
      const id = "f-" + name.replace(/\s+/g, "-");
      const unit = model.input.units ? model.input.units[name] : "";
      const input = el("input", { type: "text", inputmode: "decimal", id, "data-feature": name, autocomplete: "off" });
      fs.append(el("label", { for: id, title: unit ? "unit: " + unit : "" }, name), input);
    }
    box.append(fs);
  }
}

function fillExample() {
  const model = wdbcModel();
  if (!model) return;
  for (const input of document.querySelectorAll("#wdbc-fields input")) {
    const v = model.input.example[input.dataset.feature];
    input.value = v === undefined ? "" : String(v);
    input.classList.remove("invalid");
  }
  $("wdbc-case").value = "example";
}

// A number as typed: "17.99", or "17,99" where the comma is the decimal mark (as the CLI reads ;-separated files).
function typedNumber(text) {
  const t = /^[+-]?\d+,\d+$/.test(text) ? text.replace(",", ".") : text;
  const num = Number(t);
  return Number.isFinite(num) && t !== "" ? num : text;
}

// A row pasted from a spreadsheet or a CSV into any feature field fills all 30 (WDBC order, the order of the form
// and of wdbc.data), after an optional ID and diagnosis; anything else is pasted as typed.
function pasteRow(event) {
  if (!event.target.dataset.feature) return;
  const text = (event.clipboardData || window.clipboardData).getData("text").trim();
  if (text.includes("\n")) {
    event.preventDefault();
    showError("wdbc-error", "Paste one case (one row of 30 values) at a time.");
    return;
  }
  const sep = text.includes("\t") ? "\t" : text.includes(";") ? ";" : ",";
  const cells = text.split(sep).map((c) => c.trim());
  if (cells.length > 30 && cells[cells.length - 1] === "") cells.pop();  // a line's trailing comma (Kaggle's data.csv)
  if (cells.length !== 30 && cells.length !== 32) return;
  event.preventDefault();
  showError("wdbc-error", "");
  const values = cells.slice(cells.length - 30);
  const inputs = document.querySelectorAll("#wdbc-fields input");
  inputs.forEach((input, i) => { input.value = values[i]; input.classList.remove("invalid"); });
  if (cells.length === 32) $("wdbc-case").value = cells[0];
}

function clearWDBC() {
  for (const input of document.querySelectorAll("#wdbc-fields input")) { input.value = ""; input.classList.remove("invalid"); }
  $("wdbc-case").value = "";
  $("wdbc-result").hidden = true;
  showError("wdbc-error", "");
}

async function submitWDBC(event) {
  event.preventDefault();
  showError("wdbc-error", "");
  const features = {};
  for (const input of document.querySelectorAll("#wdbc-fields input")) {
    const text = input.value.trim();
    input.classList.remove("invalid");
    if (text === "") continue;  // the service lists every missing feature
    features[input.dataset.feature] = typedNumber(text);
  }
  const body = { features };
  const caseId = $("wdbc-case").value.trim();
  if (caseId) body.case_id = caseId;
  $("wdbc-submit").disabled = true;
  try {
    const a = await fetchJSON("/v1/predict/wdbc", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    showWDBC(a);
  } catch (err) {
    $("wdbc-result").hidden = true;
    showError("wdbc-error", err.message);
    for (const input of document.querySelectorAll("#wdbc-fields input")) {
      const name = input.dataset.feature;
      if (err.message.includes(`'${name}'`)) input.classList.add("invalid");
    }
  } finally {
    $("wdbc-submit").disabled = false;
  }
}

function showWDBC(a) {
  const cls = a.classification;
  $("wdbc-result").hidden = false;
  $("wdbc-label").textContent = cls.label;
  $("wdbc-label").dataset.label = cls.label;
  $("wdbc-rule").textContent = ruleText(cls);
  renderBars($("wdbc-bars"), cls);
  const reasons = $("wdbc-reasons");
  reasons.replaceChildren();
  const top = cls.top_contributions || [];
  const scale = Math.max(1e-9, ...top.map((c) => Math.abs(c.value)));
  for (const c of top) {
    const bar = el("div", { class: "bar-fill " + (c.value >= 0 ? "up" : "down") });
    bar.style.width = (50 * Math.abs(c.value) / scale).toFixed(1) + "%";
    bar.style.left = c.value >= 0 ? "50%" : (50 - 50 * Math.abs(c.value) / scale).toFixed(1) + "%";
    reasons.append(el("div", { class: "bar" },
      el("span", { class: "bar-name", text: `${c.feature} = ${c.input_value}` }),
      el("div", { class: "bar-track centered" }, bar),
      el("span", { class: "bar-value", text: (c.value >= 0 ? "+" : "") + c.value.toFixed(3) })));
  }
  const dl = $("wdbc-details");
  dl.replaceChildren();
  addDetail(dl, "Model", `${cls.model.name} (version ${cls.model.version})`);
  addDetail(dl, "Time taken", `${a.elapsed_ms.toFixed(0)} ms (server)`);
  addDetail(dl, "Input SHA-256", a.input_sha256);
  addDetail(dl, "Prediction id", String(a.prediction_id));
  renderCards(a.models.map((m) => m.name));
}

// ----------------------------------------------------------------------------------------- a CSV of cases
// The file is read here, in the browser, and never uploaded as a file: each row's features (and case id) go to the
// service as one request, which checks every value as for one typed case, so a bad row is listed with its reason
// and the others go on. A header names the columns (the service's names: `mean radius` or `radius_mean`; id and
// diagnosis columns as the CLI reads them); without one, each row is wdbc.data's ID, diagnosis and 30 features.

const MAX_CSV_CASES = 1000;
const ID_COLUMNS = ["id", "case_id"];
const LABEL_COLUMNS = ["diagnosis", "label", "target"];
const REFERENCE = { M: "malignant", B: "benign", 1: "malignant", 0: "benign", malignant: "malignant", benign: "benign" };
// scikit-learn's 'target' (load_breast_cancer(as_frame=True).frame) codes 0 = malignant, 1 = benign, as the CLI reads it
const SKLEARN_TARGET = { ...REFERENCE, 0: "malignant", 1: "benign" };

function splitCSV(text, sep) {  // RFC 4180: quoted fields may hold the separator, quotes ("") and line breaks
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c !== '"') field += c;
      else if (text[i + 1] === '"') { field += '"'; i++; } else quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === sep) { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (field !== "" || row.length) { row.push(field); rows.push(row); }
  return rows.filter((r) => r.some((c) => c.trim() !== ""));
}

// As the CLI's reader: ; or tab where it splits the first line into 30 fields or more (a comma is then the decimal
// mark), else the separator that splits it into the most fields.
function csvSeparator(firstLine) {
  for (const d of [";", "\t"]) if (firstLine.split(d).length >= 30) return d;
  return [",", ";", "\t"].reduce((a, d) => (firstLine.split(d).length > firstLine.split(a).length ? d : a));
}

function casesFromCSV(text) {
  const clean = text.replace(/^\uFEFF/, "");
  const sep = csvSeparator(clean.split(/\r?\n/).find((l) => l.trim() !== "") || "");
  const rows = splitCSV(clean, sep).map((r) => r.map((c) => c.trim()));
  if (!rows.length) throw new Error("The file holds no rows.");
  const value = (c) => typedNumber(sep === "," ? c : c.replace(",", "."));
  const header = rows[0].filter((c) => !Number.isFinite(Number(c.replace(",", ".")))).length > 5;
  const names = header ? rows[0] : ["id", "diagnosis", ...wdbcModel().input.features];
  const idCol = names.findIndex((n) => ID_COLUMNS.includes(n.toLowerCase()));
  const labelCol = names.findIndex((n) => LABEL_COLUMNS.includes(n.toLowerCase()));
  const coding = labelCol >= 0 && names[labelCol].toLowerCase() === "target" ? SKLEARN_TARGET : REFERENCE;
  return rows.slice(header ? 1 : 0).map((r, k) => {
    const features = {};
    names.forEach((n, j) => { if (j !== idCol && j !== labelCol && n !== "") features[n] = r[j] === undefined ? "" : value(r[j]); });
    const problem = r.length === names.length ? "" : `${r.length} fields, but ${header ? "the header has" : "wdbc.data rows have"} ${names.length}`;
    return { line: k + (header ? 2 : 1), caseId: idCol >= 0 ? r[idCol] : "", features, problem,
             reference: labelCol >= 0 ? (coding[r[labelCol]] || r[labelCol]) : "" };
  });
}

// "worst area +0.120; ..." for the first `n` SHAP contributions of an answer (all by default), as predict wdbc writes
// top_features; "" without an answer.
function contributionsText(cls, n) {
  const top = cls ? (cls.top_contributions || []).slice(0, n) : [];
  return top.map((t) => `${t.feature} ${t.value >= 0 ? "+" : ""}${t.value.toFixed(3)}`).join("; ");
}

async function predictCSV() {
  const file = $("wdbc-file").files[0];
  $("wdbc-file").value = "";
  if (!file) return;
  if (!wdbcModel()) { showError("wdbc-error", noModelText("WDBC")); return; }
  const run = ++state.wdbcUpload;
  let cases;
  try {
    cases = casesFromCSV(await file.text());
  } catch (err) {
    if (run === state.wdbcUpload) showError("wdbc-error", `${file.name}: ${err.message}`);
    return;
  }
  if (run !== state.wdbcUpload) return;
  showError("wdbc-error", cases.length > MAX_CSV_CASES ? `${file.name}: ${cases.length} cases; the page predicts ` +
    `at most ${MAX_CSV_CASES} at a time (breastdx predict wdbc takes any number).` : "");
  state.wdbcBatch = [];
  const tbody = $("wdbc-batch-table").tBodies[0];
  tbody.replaceChildren();
  $("wdbc-batch").hidden = false;
  $("wdbc-batch-csv").disabled = true;
  for (const c of cases.slice(0, MAX_CSV_CASES)) {
    $("wdbc-batch-status").textContent = `${file.name}: case ${state.wdbcBatch.length + 1} of ${cases.length}…`;
    const body = { features: c.features, ...(c.caseId ? { case_id: c.caseId } : {}) };
    let answer = null, error = c.problem;
    if (!error) {
      try {
        answer = await fetchJSON("/v1/predict/wdbc", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      } catch (err) { error = err.message.replace(/\n/g, " "); }
      if (run !== state.wdbcUpload) return;  // replaced by a newer file: its cases are not sent, its rows not shown
    }
    const cls = answer && answer.classification;
    const reasons = contributionsText(cls, 3);
    state.wdbcBatch.push({ ...c, answer, error });
    tbody.append(el("tr", {},
      el("td", { text: c.line }), el("td", { text: c.caseId }), el("td", { text: c.reference }),
      el("td", { text: cls ? cls.label : "error" }),
      el("td", { text: cls ? fmtProb(cls.probabilities.malignant) : "" }), el("td", { text: error || reasons })));
  }
  const failed = state.wdbcBatch.filter((b) => b.error).length;
  $("wdbc-batch-status").textContent = `${file.name}: ${state.wdbcBatch.length - failed} case(s) predicted` +
    (failed ? `, ${failed} could not be (their rows say why)` : "") + ". Research use only — not for diagnosis.";
  $("wdbc-batch-csv").disabled = false;
}

function wdbcBatchCSV() {
  const lines = [["line", "case_id", "reference_diagnosis", "label", "p_malignant", "threshold", "top_features",
    "model_version", "prediction_id", "error"].join(",")];
  for (const b of state.wdbcBatch) {
    const a = b.answer, cls = a && a.classification;
    const top = contributionsText(cls);
    lines.push([b.line, b.caseId, b.reference, cls ? cls.label : "", cls ? cls.probabilities.malignant : "",
      cls ? cls.threshold : "", top, a ? a.models.map((m) => m.version).join("+") : "", a ? a.prediction_id : "",
      b.error || ""].map(csvField).join(","));
  }
  lines.push(csvField("# " + state.researchNotice));
  return lines.join("\r\n") + "\r\n";
}

function wireWDBC() {
  $("wdbc-form").addEventListener("submit", submitWDBC);
  $("wdbc-example").addEventListener("click", fillExample);
  $("wdbc-clear").addEventListener("click", clearWDBC);
  $("wdbc-fields").addEventListener("paste", pasteRow);
  $("wdbc-file").addEventListener("change", predictCSV);
  $("wdbc-batch-csv").addEventListener("click", () => saveCSV(wdbcBatchCSV(), "breastdx-wdbc-predictions.csv"));
}
