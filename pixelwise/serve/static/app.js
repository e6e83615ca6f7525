// pixelwise serve: pick or drop an image, POST it to /api/segment, draw the label map over it.
// Plain browser JavaScript, no libraries; everything it loads comes from this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: new Map(), file: null, request: 0, limits: null };

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
  if (message) document.body.dataset.state = "error";
}

function describeBytes(count) {
  return count >= 1e6 ? `${+(count / 1e6).toFixed(1)} MB` : `${+(count / 1e3).toFixed(1)} kB`;
}

// "runs/synth/best.pt" -> "synth/best.pt": the part of a checkpoint's path that tells runs apart.
function shortPath(path) {
  return path.split(/[\\/]/).filter(Boolean).slice(-2).join("/");
}

async function loadModels() {
  const response = await fetch("/api/models");
  if (!response.ok) throw new Error(`GET /api/models answered ${response.status}`);
  const info = await response.json();
  $("version").textContent = `pixelwise ${info.version}`;
  state.limits = info.limits;
  $("limits").textContent = `up to ${describeBytes(info.limits.max_upload_bytes)}, ` +
    `${info.limits.max_side} pixels a side`;
  const groups = { checkpoint: "Checkpoints", classical: "Classical methods" };
  for (const [kind, label] of Object.entries(groups)) {
    const members = info.models.filter((model) => model.kind === kind);
    if (!members.length) continue;
    const group = document.createElement("optgroup");
    group.label = label;
    for (const model of members) {
      state.models.set(model.name, model);
      const option = document.createElement("option");
      option.value = model.name;
      option.textContent = model.kind === "checkpoint"
        ? `${shortPath(model.name)} (${model.architecture})` : model.name;
      option.title = model.name;
      option.selected = model.name === info.default;
      group.append(option);
    }
    $("model").append(group);
  }
  modelChanged(false);
}

function modelChanged(rerun = true) {
  const model = state.models.get($("model").value);
  if (!model) return;
  $("crf").disabled = !model.crf;
  if (!model.crf) $("crf").checked = false;
  $("segments-row").hidden = !model.segments;
  if (model.segments) {
    $("segments").max = model.segments.max;
    $("segments").value = model.segments.default;
  }
  if (rerun) segment();
}

function pickFile(file) {
  if (!file) return;
  state.file = file;
  const image = $("image");
  if (image.src) URL.revokeObjectURL(image.src);
  $("note").hidden = true;
  image.onerror = () => {
    image.hidden = true;
    $("note").textContent = "This browser cannot show this file type; the label map is shown alone.";
    $("note").hidden = false;
  };
  image.src = URL.createObjectURL(file);
  image.hidden = false;
  segment();
}

async function segment() {
  if (!state.file) return;
  const model = state.models.get($("model").value);
  const request = ++state.request;
  showError("");
  if (state.limits && state.file.size > state.limits.max_upload_bytes) {
    showError(`${state.file.name} is ${describeBytes(state.file.size)}; this server takes at most ` +
      `${describeBytes(state.limits.max_upload_bytes)} (pixelwise serve --max-upload-mb)`);
    return;
  }
  const form = new FormData();
  form.append("file", state.file, state.file.name);
  form.append("model", model.name);
  form.append("crf", $("crf").checked ? "true" : "false");
  if (model.segments) form.append("segments", $("segments").value);
  document.body.dataset.state = "busy";
  $("overlay").dataset.ready = "false";
  $("status").textContent = `Segmenting ${state.file.name} with ${model.name}${$("crf").checked ? " + CRF" : ""}…`;
  let response, body;
  try {
    response = await fetch("/api/segment", { method: "POST", body: form });
    body = await response.json();
  } catch (error) {
    if (request === state.request) showError(`The server did not answer: ${error.message}`);
    return;
  }
  if (request !== state.request) return; // a newer request replaced this one
  if (!response.ok) {
    $("status").textContent = "";
    showError(`${response.status}: ${body.detail || response.statusText}`);
    return;
  }
  render(body);
}

function render(result) {
  const overlay = $("overlay");
  overlay.onload = () => {
    overlay.dataset.ready = "true";
    document.body.dataset.state = "done";
  };
  overlay.src = `data:image/png;base64,${result.label_png}`;
  overlay.hidden = false;
  const image = $("image");
  if (!image.hidden && image.naturalWidth && image.naturalWidth !== result.width) {
    $("note").textContent = `The browser shows the image at ${image.naturalWidth} x ${image.naturalHeight}; ` +
      `the label map is ${result.width} x ${result.height}.`;
    $("note").hidden = false;
  }
  const rows = result.classes.map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.class = row.name;
    tr.dataset.percent = row.percent;
    if (!row.pixels) tr.className = "absent";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = row.color;
    const cells = [swatch, row.name, `${row.percent.toFixed(1)}%`].map((content) => {
      const td = document.createElement("td");
      td.append(content);
      return td;
    });
    cells[2].className = "num";
    tr.append(...cells);
    return tr;
  });
  $("legend").tBodies[0].replaceChildren(...rows);
  const total = result.classes.reduce((sum, row) => sum + row.percent, 0);
  $("legend-total").textContent = `${total.toFixed(1)}%`;
  $("timing").textContent = `inference ${result.inference_ms.toFixed(1)} ms (request ${result.total_ms.toFixed(1)} ms) · ` +
    `${result.width} x ${result.height} pixels`;
  $("status").textContent = `${shortPath(result.model)}${result.crf ? " + dense CRF" : ""}`;
  $("status").title = result.model;
}

function setOpacity() {
  const value = $("opacity").value;
  $("overlay").style.opacity = value / 100;
  $("opacity-value").textContent = `${value}%`;
}

function wireDropZone() {
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    document.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    document.addEventListener(name, (event) => { event.preventDefault(); drop.classList.remove("over"); });
  }
  document.addEventListener("drop", (event) => pickFile(event.dataTransfer.files[0]));
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("file").click(); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", (event) => pickFile(event.target.files[0]));
  $("model").addEventListener("change", () => modelChanged());
  $("crf").addEventListener("change", segment);
  $("segments").addEventListener("change", segment);
  $("opacity").addEventListener("input", setOpacity);
  wireDropZone();
  setOpacity();
  loadModels().catch((error) => showError(error.message));
});
