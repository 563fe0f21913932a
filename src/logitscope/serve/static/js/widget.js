// The notebook widget: the viewer's lens view (lensview.js) mounted into one output cell, its data
// from an inline payload (logitscope.render.widget) instead of the server. Each widget is its own
// closure over its own root: several in one notebook never share state.
import { bindSeg, el, toast } from "./dom.js";
import { createLensView } from "./lensview.js";
import { renderPins } from "./pins.js";
import { visible } from "./text.js";

function bytes(b64) {
  const bin = atob(b64), out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

// One packed array (see render/widget.py _pack) -> nested JS arrays of its shape; "ids" are
// indices into the side's vocabulary ids.
function unpack(a, vocabIds) {
  if (a === null || a === undefined) return a;
  const n = a.shape.reduce((x, y) => x * y, 1);
  let flat;
  if (a.fill !== undefined) flat = new Array(n).fill(a.fill === null ? NaN : a.fill);
  else {
    const raw = a.enc === "i32" ? new Int32Array(bytes(a.data)) : new Uint16Array(bytes(a.data));
    if (a.enc === "log16") flat = Array.from(raw, (q) => (q === 65535 ? NaN : Math.exp(-q * a.step)));
    else if (a.enc === "lin16") flat = Array.from(raw, (q) => (q === 65535 ? NaN : a.lo + q * a.step));
    else if (a.enc === "ids") flat = Array.from(raw, (q) => vocabIds[q]);
    else flat = Array.from(raw);
  }
  const build = (off, dims) => {
    if (dims.length === 1) return flat.slice(off, off + dims[0]);
    const size = dims.slice(1).reduce((x, y) => x * y, 1);
    return Array.from({ length: dims[0] }, (_, i) => build(off + i * size, dims.slice(1)));
  };
  return a.shape.length ? build(0, a.shape) : flat;
}

function decode(side) {
  const data = { ...side };
  const ids = unpack(side.vocab_ids);
  data.vocab = Object.fromEntries(ids.map((id, i) => [String(id), side.vocab_tokens[i]]));
  for (const [k, v] of Object.entries(side.arrays)) data[k] = unpack(v, ids);
  delete data.vocab_ids; delete data.vocab_tokens;
  data.extra = Object.fromEntries(Object.entries(side.extra || {}).map(([k, v]) => [k, unpack(v)]));
  delete data.arrays;
  return data;
}

// A token's probability and rank at every row of one position, from what the payload holds:
// the top-k of each cell and the tracked tokens; null where the token is outside that row's top-k.
function column(data, p, ids) {
  const S = data.layer_names.length;
  const probs = [], ranks = [];
  for (const id of ids) {
    const t = data.tracked_ids.indexOf(id);
    const pr = [], rk = [];
    for (let r = 0; r < S; r++) {
      const j = data.top_ids[r][p].indexOf(id);
      if (t >= 0) { pr.push(data.tracked_probs[t][r][p]); rk.push(data.tracked_ranks[t][r][p]); }
      else if (j >= 0) { pr.push(data.top_probs[r][p][j]); rk.push(j); }
      else { pr.push(null); rk.push(null); }
    }
    probs.push(pr); ranks.push(rk);
  }
  const tok = (id) => data.vocab[String(id)] ?? `<${id}>`;
  return { position: p, layer_names: data.layer_names, ids, tokens: ids.map(tok), probs, ranks, k: data.top_ids[0][0].length };
}

// A diff's per-layer KL at one position (the payload's kl grid), as /api/compare answers.
function compare(payload, lens, pos) {
  const side = (data, p) => ({
    position: p,
    token: data.tokens[p],
    layer_names: data.layer_names,
    top1_tokens: data.top_ids.map((row) => data.vocab[String(row[p][0])] ?? ""),
  });
  // the two sides of a diff share their positions: the selected one (a null side is paired with it)
  const n = lens.a.tokens.length;
  let p = pos.a ?? pos.b ?? -1;
  if (p < 0) p += n;
  p = Math.max(0, Math.min(p, n - 1));
  const S = lens.a.layer_names.length;
  const kl = lens.a.extra.klab;
  return {
    a: side(lens.a, p),
    b: side(lens.b, Math.min(p, lens.b.tokens.length - 1)),
    pairs: Array.from({ length: S }, (_, r) => [r, r]),
    kl_ab: kl.map((row) => row[p]),
    kl_ba: null,
    alignment: payload.alignment,
  };
}

// A payload sent deflated ({z: base64}) is inflated first.
export async function mountWidget(root, payload) {
  if (payload.z) {
    const stream = new Blob([bytes(payload.z)]).stream().pipeThrough(new DecompressionStream("deflate"));
    payload = JSON.parse(await new Response(stream).text());
  }
  root.replaceChildren();
  root.classList.add("ls-w");
  root.tabIndex = 0;
  const lens = { a: decode(payload.a), b: payload.b ? decode(payload.b) : null };
  // pins: ids; the result's tracked tokens come pinned (their trajectories are complete)
  const state = { metric: payload.metric, traj: "prob", cell: null, compare: !!payload.b, pins: [...lens.a.tracked_ids] };
  const pinned = () => state.pins;
  const metricSeg = el("div", { class: "seg", role: "radiogroup", "aria-label": "colour by", dataset: { part: "metric" } },
    ...Object.entries(payload.metrics).map(([name, spec]) =>
      el("button", { dataset: { metric: name }, class: name === state.metric ? "active" : null }, spec.short || name)));
  const pinInput = el("input", { type: "text", spellcheck: "false", placeholder: "pin a token, e.g. \u2423LORD", "aria-label": "pin a token", dataset: { part: "pin-input" } });
  const chips = el("div", { class: "pins", dataset: { part: "pins" } });
  const form = el("form", { class: "pin-form", autocomplete: "off", dataset: { part: "pin-form" } }, pinInput, el("button", { type: "submit", class: "small" }, "pin"));
  const toolbar = el("div", { class: "toolbar ls-toolbar" }, metricSeg, el("div", { class: "spacer" }), form, chips);
  const note = el("div", { class: "hint ls-note", dataset: { part: "note" } }, payload.note || "");
  const body = el("div", { class: "ls-body" });
  root.append(toolbar, body, note);

  const view = createLensView(body, {
    metrics: payload.metrics,
    missing: payload.missing,
    state,
    source: {
      column: async (side, data, r, p) => column(data, p, [...new Set([...data.top_ids[r][p], ...pinned(data)])]),
      compare: async (pos) => compare(payload, lens, pos),
    },
    onPin: (token, id) => pin(id),
    pinnedIds: pinned,
    toast: (m) => toast(m, root),
    keys: root,
  });
  const drawPins = () => renderPins(chips, state.pins, state.pins.map((id) => lens.a.vocab[String(id)]), (i) => {
    state.pins.splice(i, 1); drawPins(); view.restoreCell();
  });
  function pin(id) {
    if (state.pins.includes(id)) return;
    state.pins.push(id);
    drawPins();
    view.restoreCell();
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = pinInput.value;
    if (!text) return;
    const want = [text, text.replace(/\u2423/g, " ")];
    const hit = Object.entries(lens.a.vocab).find(([, t]) => want.includes(t) || want.includes(visible(t)));
    if (!hit) { toast(`${visible(text)} is not among this result's tokens; follow it with track= in scope.lens`, root); return; }
    pinInput.value = "";
    pin(Number(hit[0]));
  });
  bindSeg(metricSeg, "metric", (m) => { state.metric = m; view.draw(); });
  drawPins();
  view.show(lens);
  return view;
}
