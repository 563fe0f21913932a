// logitscope serve: the page. State lives in the URL hash; every request goes through api.js,
// where a newer request on the same channel supersedes an older one.
import { getJSON, onBusy, post, Superseded } from "./api.js";
import { colorLimits, legendHTML, metricValues, scaleFor } from "./colors.js";
import { compareLayers } from "./compare.js";
import { exportFile, exportPNG } from "./exporting.js";
import { cellTooltip, cellWidth, fitWidth, renderGrid } from "./grid.js";
import { clearPanel, renderCell, renderColumn } from "./panel.js";
import { DEFAULTS, readURL, writeURL } from "./state.js";
import { runEmbed, runLogits } from "./tabs.js";
import { el, esc, visible } from "./text.js";

const $ = (id) => document.getElementById(id);
let meta = null;
let state = readURL();
const lens = { a: null, b: null };
let lastValues = { a: null, b: null };

const EXAMPLES = {
  causal: "Jesus answered and said unto them, Verily I say unto",
  seq2seq: "translate English to German: The house is wonderful.",
  masked: (mask) => `The capital of France is ${mask || "[MASK]"}.`,
};

function model(name) { return meta.models.find((m) => m.name === name); }
function save(patch = {}) { Object.assign(state, patch); writeURL(state); }
function toast(message) {
  const t = $("toast");
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 2200);
}
function showError(id, err) {
  const box = $(id);
  box.textContent = err ? err.message : "";
  box.hidden = !err;
}

// -- inputs ------------------------------------------------------------------------------------
function applyKind() {
  const m = model(state.model);
  const kind = m.kind;
  $("model-facts").textContent = m.has_head
    ? `${kind} \u00b7 ${m.model_type} \u00b7 ${m.n_layers} layers \u00b7 vocab ${m.vocab_size.toLocaleString()}`
    : `${m.model_type} \u00b7 no LM head (embeddings only)`;
  $("text-label").textContent = kind === "seq2seq" ? "Source (encoder input)" : kind === "masked" ? "Text" : "Prompt";
  $("target-field").hidden = kind === "masked";
  $("target-label").innerHTML = kind === "seq2seq"
    ? 'Target <span class="sub">decoder text, teacher-forced (optional)</span>'
    : 'Target <span class="sub">continuation to score (optional)</span>';
  $("insert-mask").hidden = kind !== "masked" || !m.mask_token;
  $("text-hint").textContent = kind === "seq2seq"
    ? "Positions are decoder positions: the start token, then the target's tokens."
    : kind === "masked" ? `Write ${m.mask_token || "the mask token"} where a token is hidden; each position shows what the model reconstructs there.` : "";
  $("topk").max = meta.limits.max_top_k;
  $("lens-kind").querySelector('[data-lens="tuned"]').disabled = !m.tuned_lens;
  $("lens-kind").title = m.tuned_lens ? `tuned lens: ${m.tuned_lens}` : "this model has no tuned lens on this server (logitscope serve --tuned NAME=DIR)";
  if (!m.tuned_lens && state.lens === "tuned") state.lens = "logit";
  for (const b of document.querySelectorAll("#lens-kind button")) b.classList.toggle("active", b.dataset.lens === state.lens);
}

function syncInputs() {
  $("model").value = state.model;
  $("model-b").value = state.modelB || state.model;
  $("text").value = state.text;
  $("target").value = state.target;
  $("text-b").value = state.textB;
  $("target-b").value = state.targetB;
  $("topk").value = state.topK;
  $("stride").value = state.stride ?? "";
  $("compare").checked = state.compare;
  $("sublayers").checked = state.sublayers;
  for (const b of document.querySelectorAll("#lens-kind button")) b.classList.toggle("active", b.dataset.lens === state.lens);
  $("logits-k").value = state.logitsK;
  $("generate").value = state.generate;
  $("embed-query").value = state.embedQuery;
  $("embed-k").value = state.embedK;
  for (const b of document.querySelectorAll("#metric button")) b.classList.toggle("active", b.dataset.metric === state.metric);
  for (const b of document.querySelectorAll("#traj-mode button")) b.classList.toggle("active", b.dataset.v === state.traj);
  for (const b of document.querySelectorAll("#embed-metric button")) b.classList.toggle("active", b.dataset.m === state.embedMetric);
  showTab(state.tab);
  showCompare();
  renderPins();
}

function showTab(tab) {
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const name of ["lens", "logits", "embed"]) $(`tab-${name}`).hidden = name !== tab;
  $("lens-toolbar").hidden = tab !== "lens";
  $("logits-toolbar").hidden = tab !== "logits";
  $("embed-toolbar").hidden = tab !== "embed";
  $("compare-fields").hidden = tab !== "lens" || !state.compare;
  $("text-fields").hidden = tab === "embed";
}

function showCompare() {
  const on = state.compare && state.tab === "lens";
  $("compare-fields").hidden = !on;
  $("card-b").hidden = !state.compare;
  $("kl-card").hidden = !state.compare;
  $("workspace").classList.toggle("compare", state.compare);
}

function renderPins() {
  const names = lens.a ? lens.a.tracked_tokens : [];
  $("pins").replaceChildren(...state.pins.map((pin, i) =>
    el("span", { class: "chip", style: `border-color:${["#4f46e5", "#e8590c", "#0f9d58", "#d6336c", "#1c7ed6", "#f59f00", "#7048e8", "#0ca678"][i % 8]}` },
      el("span", { class: "dot", style: `background:${["#4f46e5", "#e8590c", "#0f9d58", "#d6336c", "#1c7ed6", "#f59f00", "#7048e8", "#0ca678"][i % 8]}` }),
      visible(typeof pin === "number" ? names[i] ?? `#${pin}` : pin),
      el("button", { title: "unpin", "aria-label": "unpin", onclick: () => { state.pins.splice(i, 1); save(); renderPins(); runLens(); } }, "\u00d7"))));
}

// -- the lens ----------------------------------------------------------------------------------
function lensBody(side) {
  const b = side === "b";
  const body = {
    model: b ? state.modelB || state.model : state.model,
    text: b ? state.textB : state.text,
    top_k: state.topK,
    track: state.pins,
  };
  const target = b ? state.targetB : state.target;
  if (target && model(body.model).kind !== "masked") body.target = target;
  if (state.stride) body.stride = state.stride;
  if (state.sublayers) body.sublayers = true;
  if (state.lens === "tuned") body.lens = "tuned";
  return body;
}

async function runLens() {
  save();
  if (state.tab !== "lens") return;
  if (!state.text) { clearPanel("Type a prompt."); return; }
  const sides = state.compare ? ["a", "b"] : ["a"];
  for (const s of sides) $(`grid-${s}`).classList.add("stale");
  const results = await Promise.allSettled(sides.map((s) => post(`lens-${s}`, "/api/lens", lensBody(s))));
  if (results.some((r) => r.status === "rejected" && r.reason instanceof Superseded)) return;
  results.forEach((r, i) => {
    const s = sides[i];
    $(`grid-${s}`).classList.remove("stale");
    if (r.status === "fulfilled") { lens[s] = r.value; showError(`error-${s}`, null); }
    else { lens[s] = null; $(`grid-${s}`).innerHTML = ""; showError(`error-${s}`, r.reason); }
  });
  if (!state.compare) lens.b = null;
  const failed = results.find((r) => r.status === "rejected");
  if (failed && rejectPin(failed.reason)) return;
  renderPins();
  drawGrids();
  restoreCell();
  if (state.compare) runCompare();
}

function drawGrids() {
  const spec = meta.metrics[state.metric];
  const sides = ["a", "b"].filter((s) => lens[s] && (s === "a" || state.compare));
  const values = Object.fromEntries(sides.map((s) => [s, metricValues(lens[s], state.metric)]));
  const limits = colorLimits(Object.values(values), spec);
  const color = scaleFor(spec, limits, meta.missing);
  const need = Math.max(...sides.map((s) => cellWidth(lens[s])));
  const P = Math.max(...sides.map((s) => lens[s].tokens.length));
  const width = fitWidth(need, P, $("grid-a").parentElement.clientWidth - 24);
  lastValues = values;
  for (const s of sides) {
    const data = lens[s];
    const sel = state.cell && state.cell.side === s ? { row: rowOf(data, state.cell.layer), pos: state.cell.pos } : null;
    const mask = model(data.model_name)?.mask_token;
    renderGrid($(`grid-${s}`), data, { values: values[s], color, selected: sel, kind: data.meta.kind, width, mask });
    $(`legend-${s}`).innerHTML = legendHTML(spec, limits);
    const stride = data.stride > 1 ? ` \u00b7 every ${data.stride} layers` : "";
    const tag = state.compare ? `${s.toUpperCase()} \u00b7 ` : "";
    $(`title-${s}`).innerHTML = `${tag}${esc(data.model_name)} <span class="sub">${data.n_streams_total - 1} layers + embed \u00b7 ${data.layer_names.length} rows \u00d7 ${data.tokens.length} positions${stride}</span>`;
    const src = $(`source-${s}`);
    src.hidden = !data.source_tokens;
    if (data.source_tokens) src.innerHTML = `encoder input: <code>${esc(visible(data.source_tokens.join(""), " "))}</code>`;
  }
  // side by side, the two grids start at the same height (card A's head also holds the export buttons)
  const headB = $("card-b").querySelector(".card-head");
  headB.style.minHeight = state.compare ? `${$("card-a").querySelector(".card-head").offsetHeight}px` : "";
}

// The row of a layer name ("embed", "3", "3.attn"); a name not shown (stride, sub-layers off): the nearest block row.
function rowOf(data, layer) {
  const exact = data.layer_names.indexOf(String(layer));
  if (exact >= 0) return exact;
  const n = String(layer) === "embed" ? 0 : parseInt(layer, 10) || 0;
  let best = 0;
  data.layers.forEach((l, r) => { if (Math.abs(l - n) < Math.abs(data.layers[best] - n)) best = r; });
  return best;
}

function restoreCell() {
  let cell = state.cell;
  const data = cell ? lens[cell.side] : null;
  if (!cell || !data || cell.pos >= data.tokens.length) {
    const a = lens.a;
    if (!a) { clearPanel(); return; }
    cell = { side: "a", layer: a.layer_names[a.layer_names.length - 1], pos: a.tokens.length - 1 };
  }
  selectCell(cell.side, rowOf(lens[cell.side], cell.layer), cell.pos);
}

async function selectCell(side, r, p) {
  const data = lens[side];
  state.cell = { side, layer: data.layer_names[r], pos: p };
  save();
  drawGrids();
  renderCell(data, r, p, { side: state.compare ? side : null, pinnedIds: data.tracked_ids, onPin: (token, id) => addPin(id) });
  const body = { ...lensBody(side), position: p, ids: [...new Set([...data.top_ids[r][p], ...data.tracked_ids])] };
  delete body.top_k; delete body.track; delete body.stride;
  try {
    const col = await post("column", "/api/column", body);
    if (lens[side] !== data) return;
    renderColumn(data, r, p, col, { pinnedIds: data.tracked_ids, mode: state.traj });
  } catch (err) {
    if (!(err instanceof Superseded)) toast(err.message);
  }
}

function runCompare() {
  const side = (s) => {
    const body = lensBody(s);
    return { model: body.model, text: body.text, ...(body.target ? { target: body.target } : {}) };
  };
  return compareLayers(lens.a, lens.b, state.cell, side);
}

// A pin the server refused (not one token, unknown id) is taken back, with its message.
function rejectPin(err) {
  if (!pinAdded || !/track|vocabulary/.test(err.message)) return false;
  state.pins = state.pins.filter((p) => p !== pinAdded);
  pinAdded = null;
  toast(err.message);
  save();
  renderPins();
  runLens();
  return true;
}

let pinAdded = null;
function addPin(pin) {
  if (state.pins.includes(pin)) return;
  if (state.pins.length >= meta.limits.max_track) { toast(`at most ${meta.limits.max_track} pinned tokens`); return; }
  state.pins.push(pin);
  pinAdded = pin;
  save();
  renderPins();
  runLens();
}

// -- wiring ------------------------------------------------------------------------------------
let timer = null;
function soon(fn, ms = 450) { clearTimeout(timer); timer = setTimeout(fn, ms); }
function runTab() {
  save();
  if (state.tab === "lens") runLens();
  else if (state.tab === "logits") runLogits(state, save);
  else runEmbed(state);
}

function bind() {
  onBusy((n) => { $("busy").hidden = n === 0; });
  const text = (id, key) => $(id).addEventListener("input", () => { state[key] = $(id).value; save(); soon(runTab); });
  text("text", "text"); text("target", "target"); text("text-b", "textB"); text("target-b", "targetB");
  for (const id of ["text", "target", "text-b", "target-b"]) {
    $(id).addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey || id.startsWith("target"))) { e.preventDefault(); clearTimeout(timer); runTab(); } });
  }
  $("model").addEventListener("change", () => {
    const prev = model(state.model).kind;
    state.model = $("model").value;
    const kind = model(state.model).kind;
    if (kind !== prev) {
      state.text = kind === "masked" ? EXAMPLES.masked(model(state.model).mask_token) : EXAMPLES[kind] || state.text;
      state.target = "";
      $("text").value = state.text; $("target").value = "";
    }
    state.cell = null;
    applyKind();
    runTab();
  });
  $("model-b").addEventListener("change", () => { state.modelB = $("model-b").value; runLens(); });
  $("topk").addEventListener("change", () => {
    state.topK = Math.max(1, Math.min(meta.limits.max_top_k, parseInt($("topk").value, 10) || 10));
    $("topk").value = state.topK;
    runLens();
  });
  $("stride").addEventListener("change", () => { const v = parseInt($("stride").value, 10); state.stride = v > 0 ? v : null; runLens(); });
  $("sublayers").addEventListener("change", () => { state.sublayers = $("sublayers").checked; runLens(); });
  for (const b of document.querySelectorAll("#lens-kind button")) {
    b.addEventListener("click", () => {
      if (b.disabled || state.lens === b.dataset.lens) return;
      state.lens = b.dataset.lens;
      for (const x of document.querySelectorAll("#lens-kind button")) x.classList.toggle("active", x === b);
      runLens();
    });
  }
  $("compare").addEventListener("change", () => {
    state.compare = $("compare").checked;
    if (state.compare && !state.textB) { state.textB = state.text; $("text-b").value = state.textB; }
    if (!state.compare && state.cell && state.cell.side === "b") state.cell = null;
    showCompare();
    runLens();
  });
  for (const b of document.querySelectorAll("#metric button")) {
    b.addEventListener("click", () => { state.metric = b.dataset.metric; syncMetric(); save(); drawGrids(); });
  }
  for (const b of document.querySelectorAll("#traj-mode button")) {
    b.addEventListener("click", () => {
      state.traj = b.dataset.v;
      for (const x of document.querySelectorAll("#traj-mode button")) x.classList.toggle("active", x === b);
      restoreCell();
    });
  }
  for (const b of document.querySelectorAll("#embed-metric button")) {
    b.addEventListener("click", () => {
      state.embedMetric = b.dataset.m;
      for (const x of document.querySelectorAll("#embed-metric button")) x.classList.toggle("active", x === b);
      runTab();
    });
  }
  $("pin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("pin-input").value;
    if (!v) return;
    $("pin-input").value = "";
    addPin(v);
  });
  for (const b of document.querySelectorAll(".tabs button")) {
    b.addEventListener("click", () => { state.tab = b.dataset.tab; showTab(state.tab); showCompare(); runTab(); });
  }
  $("insert-mask").addEventListener("click", () => {
    const mask = model(state.model).mask_token, box = $("text");
    const at = box.selectionStart ?? box.value.length;
    box.value = box.value.slice(0, at) + mask + box.value.slice(box.selectionEnd ?? at);
    state.text = box.value;
    runTab();
  });
  $("logits-run").addEventListener("click", () => {
    state.logitsK = parseInt($("logits-k").value, 10) || 10;
    state.generate = Math.max(0, parseInt($("generate").value, 10) || 0);
    state.logitsRow = null;
    runTab();
  });
  for (const id of ["logits-k", "generate"]) $(id).addEventListener("change", () => $("logits-run").click());
  $("embed-run").addEventListener("click", () => {
    state.embedQuery = $("embed-query").value;
    state.embedK = parseInt($("embed-k").value, 10) || 12;
    runTab();
  });
  $("embed-query").addEventListener("keydown", (e) => { if (e.key === "Enter") $("embed-run").click(); });
  for (const g of ["a", "b"]) {
    const box = $(`grid-${g}`);
    box.addEventListener("click", (e) => {
      const cell = e.target.closest(".cell");
      if (cell && lens[g]) selectCell(g, Number(cell.dataset.row), Number(cell.dataset.pos)).then(() => { if (state.compare) runCompare(); });
    });
    box.addEventListener("mousemove", (e) => {
      const cell = e.target.closest(".cell"), tip = $("tooltip");
      if (!cell || !lens[g] || !lastValues[g]) { tip.hidden = true; return; }
      const r = Number(cell.dataset.row), p = Number(cell.dataset.pos);
      tip.innerHTML = cellTooltip(lens[g], r, p, meta.metrics[state.metric].label, lastValues[g][r]?.[p]);
      tip.hidden = false;
      const x = Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
      const y = e.clientY + 16 + tip.offsetHeight > window.innerHeight ? e.clientY - tip.offsetHeight - 10 : e.clientY + 16;
      tip.style.left = `${x}px`; tip.style.top = `${y}px`;
    });
    box.addEventListener("mouseleave", () => ($("tooltip").hidden = true));
  }
  for (const b of document.querySelectorAll("[data-export]")) {
    b.addEventListener("click", async () => {
      const fmt = b.dataset.export;
      try {
        if (fmt === "png") {
          const svgs = ["a", "b"].filter((s) => lens[s] && (s === "a" || state.compare)).map((s) => $(`grid-${s}`).querySelector("svg"));
          await exportPNG(svgs, `logitscope-${state.model.replace(/[^A-Za-z0-9._-]/g, "_")}-${state.metric}.png`);
        } else await exportFile(fmt, lensBody("a"), state.metric);
      } catch (err) {
        if (!(err instanceof Superseded)) toast(`export failed: ${err.message}`);
      }
    });
  }
  document.addEventListener("keydown", (e) => { // arrow keys move the selected cell
    const moves = { ArrowUp: [1, 0], ArrowDown: [-1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (!moves[e.key] || state.tab !== "lens" || !state.cell || /INPUT|TEXTAREA|SELECT/.test(e.target.tagName)) return;
    const data = lens[state.cell.side];
    if (!data) return;
    e.preventDefault();
    const r = Math.min(data.layers.length - 1, Math.max(0, rowOf(data, state.cell.layer) + moves[e.key][0]));
    const p = Math.min(data.tokens.length - 1, Math.max(0, state.cell.pos + moves[e.key][1]));
    selectCell(state.cell.side, r, p).then(() => { if (state.compare) runCompare(); });
  });
  $("copy-link").addEventListener("click", async () => {
    save();
    try { await navigator.clipboard.writeText(location.href); toast("link copied"); }
    catch { toast("copy the address bar: it holds this view"); }
  });
}

function syncMetric() {
  for (const b of document.querySelectorAll("#metric button")) b.classList.toggle("active", b.dataset.metric === state.metric);
}

function fillDefaults() {
  if (!model(state.model)) state.model = meta.models[0].name;
  if (state.modelB && !model(state.modelB)) state.modelB = "";
  if (!meta.metrics[state.metric]) state.metric = DEFAULTS.metric;
  const kind = model(state.model).kind;
  if (!state.text) state.text = kind === "masked" ? EXAMPLES.masked(model(state.model).mask_token) : EXAMPLES[kind] || "";
}

async function init() {
  meta = await getJSON("/api/models");
  for (const id of ["model", "model-b"]) {
    $(id).replaceChildren(...meta.models.map((m) => el("option", { value: m.name }, m.name)));
  }
  fillDefaults();
  applyKind();
  syncInputs();
  bind();
  runTab();
  window.addEventListener("hashchange", () => { // a link pasted into the address bar of an open page
    state = readURL();
    fillDefaults();
    applyKind();
    syncInputs();
    runTab();
  });
}

init().catch((err) => { document.body.prepend(el("div", { class: "error" }, `logitscope could not start: ${err.message}`)); });
