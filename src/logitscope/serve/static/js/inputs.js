// The viewer page's input card: fields per model kind, tabs, and every control's events.
// `app`: {state, meta, model(name), save(), runTab(), lens: the mounted lens tab (viewer.js)}.
import { $, bindSeg, setSeg } from "./dom.js";

export const EXAMPLES = {
  causal: "Jesus answered and said unto them, Verily I say unto",
  seq2seq: "translate English to German: The house is wonderful.",
  masked: (mask) => `The capital of France is ${mask || "[MASK]"}.`,
};

export function applyKind(app) {
  const { state, meta } = app;
  const m = app.model(state.model);
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
  $("lens-kind").querySelector('[data-lens="jacobian"]').disabled = !m.jacobian_lens;
  if (!m.jacobian_lens && state.lens === "jacobian") state.lens = "logit";
  setSeg($("lens-kind"), "lens", state.lens);
  lensRules(app);
}

// Sub-layer rows are the logit lens's only: another lens turns them off and greys the switch.
export function lensRules(app) {
  const { state } = app;
  const other = state.lens !== "logit";
  if (other && state.sublayers) state.sublayers = false;
  $("sublayers").checked = state.sublayers;
  $("sublayers").disabled = other;
  $("sublayers").closest("label").title = other
    ? "sub-layer rows use the logit lens: pick the logit lens to show them"
    : "also show each block's stream after attention (rows like 3.attn)";
}

// Numbers from a link or a field, within what the server accepts.
export function clampNumbers(app) {
  const { state, meta } = app;
  const clamp = (v, lo, hi, dflt) => (Number.isFinite(v) ? Math.max(lo, Math.min(hi, Math.round(v))) : dflt);
  state.topK = clamp(state.topK, 1, meta.limits.max_top_k, 10);
  state.logitsK = clamp(state.logitsK, 1, meta.limits.max_top_k, 10);
  state.embedK = clamp(state.embedK, 1, meta.limits.max_nearest ?? 50, 12);
  state.generate = clamp(state.generate, 0, meta.limits.max_generate ?? 64, 0);
  if (state.stride !== null && !(state.stride >= 1)) state.stride = null;
}

export function showTab(app) {
  const { state } = app;
  const tab = state.tab;
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const name of ["lens", "logits", "embed"]) $(`tab-${name}`).hidden = name !== tab;
  $("lens-toolbar").hidden = tab !== "lens";
  $("logits-toolbar").hidden = tab !== "logits";
  $("embed-toolbar").hidden = tab !== "embed";
  $("compare-fields").hidden = tab !== "lens" || !state.compare;
  $("text-fields").hidden = tab === "embed";
  app.lens.view.layout();
}

export function syncInputs(app) {
  const { state } = app;
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
  setSeg($("lens-kind"), "lens", state.lens);
  $("logits-k").value = state.logitsK;
  $("generate").value = state.generate;
  $("embed-query").value = state.embedQuery;
  $("embed-k").value = state.embedK;
  setSeg($("metric"), "metric", state.metric);
  app.lens.view.syncTraj();
  setSeg($("embed-metric"), "m", state.embedMetric);
  showTab(app);
  app.lens.drawPins();
}

export function bindInputs(app) {
  const { state } = app;
  const lens = () => app.lens.run();
  let timer = null;
  const soon = (fn, ms = 450) => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  const text = (id, key) => $(id).addEventListener("input", () => { state[key] = $(id).value; app.save(); soon(app.runTab); });
  text("text", "text"); text("target", "target"); text("text-b", "textB"); text("target-b", "targetB");
  for (const id of ["text", "target", "text-b", "target-b"]) {
    $(id).addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey || id.startsWith("target"))) { e.preventDefault(); clearTimeout(timer); app.runTab(); } });
  }
  $("model").addEventListener("change", () => {
    const prev = app.model(state.model).kind;
    state.model = $("model").value;
    const m = app.model(state.model);
    if (m.kind !== prev) {
      state.text = m.kind === "masked" ? EXAMPLES.masked(m.mask_token) : EXAMPLES[m.kind] || state.text;
      state.target = "";
      $("text").value = state.text; $("target").value = "";
    }
    state.cell = null;
    applyKind(app);
    app.runTab();
  });
  $("model-b").addEventListener("change", () => { state.modelB = $("model-b").value; lens(); });
  $("topk").addEventListener("change", () => {
    state.topK = Math.max(1, Math.min(app.meta.limits.max_top_k, parseInt($("topk").value, 10) || 10));
    $("topk").value = state.topK;
    lens();
  });
  $("stride").addEventListener("change", () => { const v = parseInt($("stride").value, 10); state.stride = v > 0 ? v : null; lens(); });
  $("sublayers").addEventListener("change", () => { state.sublayers = $("sublayers").checked; lens(); });
  bindSeg($("lens-kind"), "lens", (v) => { if (state.lens !== v) { state.lens = v; lensRules(app); lens(); } });
  $("compare").addEventListener("change", () => {
    state.compare = $("compare").checked;
    if (state.compare && !state.textB) { state.textB = state.text; $("text-b").value = state.textB; }
    if (!state.compare && state.cell && state.cell.side === "b") state.cell = null;
    showTab(app);
    lens();
  });
  bindSeg($("metric"), "metric", (v) => { state.metric = v; app.save(); app.lens.view.draw(); });
  bindSeg($("embed-metric"), "m", (v) => { state.embedMetric = v; app.runTab(); });
  $("pin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("pin-input").value;
    if (!v) return;
    $("pin-input").value = "";
    app.lens.pin(v);
  });
  for (const b of document.querySelectorAll(".tabs button")) {
    b.addEventListener("click", () => { state.tab = b.dataset.tab; showTab(app); app.runTab(); });
  }
  $("insert-mask").addEventListener("click", () => {
    const mask = app.model(state.model).mask_token, box = $("text");
    const at = box.selectionStart ?? box.value.length;
    box.value = box.value.slice(0, at) + mask + box.value.slice(box.selectionEnd ?? at);
    state.text = box.value;
    app.runTab();
  });
  $("logits-run").addEventListener("click", () => {
    state.logitsK = parseInt($("logits-k").value, 10) || 10;
    state.generate = Math.max(0, parseInt($("generate").value, 10) || 0);
    clampNumbers(app);
    $("logits-k").value = state.logitsK; $("generate").value = state.generate;
    state.logitsRow = null;
    app.runTab();
  });
  for (const id of ["logits-k", "generate"]) $(id).addEventListener("change", () => $("logits-run").click());
  $("embed-run").addEventListener("click", () => {
    state.embedQuery = $("embed-query").value;
    state.embedK = parseInt($("embed-k").value, 10) || 12;
    clampNumbers(app);
    $("embed-k").value = state.embedK;
    app.runTab();
  });
  $("embed-query").addEventListener("keydown", (e) => { if (e.key === "Enter") $("embed-run").click(); });
}
