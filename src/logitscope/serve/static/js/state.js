// The view's state, mirrored in the URL hash so a copied link reproduces the view.

const KEYS = {
  tab: "t", model: "m", text: "q", target: "tg", topK: "k", metric: "c", stride: "s", pins: "pin",
  cell: "cell", compare: "cmp", modelB: "mb", textB: "qb", targetB: "tb", traj: "tm",
  generate: "g", logitsK: "lk", logitsRow: "lr", embedQuery: "eq", embedK: "ek", embedMetric: "em",
  sublayers: "sub", lens: "lens",
};

export const DEFAULTS = {
  tab: "lens", model: "", text: "", target: "", topK: 10, metric: "entropy", stride: null, pins: [],
  cell: null, compare: false, modelB: "", textB: "", targetB: "", traj: "prob",
  generate: 0, logitsK: 10, logitsRow: null, embedQuery: "", embedK: 12, embedMetric: "cosine",
  sublayers: false, lens: "logit",
};

const NUMBERS = new Set(["topK", "stride", "generate", "logitsK", "logitsRow", "embedK"]);

export function readURL() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const state = structuredClone(DEFAULTS);
  for (const [name, key] of Object.entries(KEYS)) {
    if (!params.has(key)) continue;
    const raw = params.get(key);
    if (name === "pins") {
      try { const v = JSON.parse(raw); if (Array.isArray(v)) state.pins = v.filter((x) => typeof x === "string" || Number.isInteger(x)).slice(0, 8); } catch { /* ignore */ }
    } else if (name === "cell") {
      const m = /^([ab]):(embed|\d+(?:\.attn|\.in\+attn)?):(\d+)$/.exec(raw);
      if (m) state.cell = { side: m[1], layer: m[2], pos: Number(m[3]) };
    } else if (name === "compare" || name === "sublayers") state[name] = raw === "1";
    else if (name === "lens") state.lens = raw === "tuned" || raw === "jacobian" ? raw : "logit";
    else if (NUMBERS.has(name)) { const n = parseInt(raw, 10); state[name] = Number.isFinite(n) ? n : DEFAULTS[name]; }
    else state[name] = raw;
  }
  return state;
}

export function writeURL(state) {
  const params = new URLSearchParams();
  for (const [name, key] of Object.entries(KEYS)) {
    const v = state[name];
    if (JSON.stringify(v) === JSON.stringify(DEFAULTS[name])) continue;
    if (name === "pins") params.set(key, JSON.stringify(v));
    else if (name === "cell") params.set(key, `${v.side}:${v.layer}:${v.pos}`);
    else if (name === "compare" || name === "sublayers") params.set(key, v ? "1" : "0");
    else params.set(key, String(v));
  }
  const hash = "#" + params.toString();
  if (location.hash !== hash) history.replaceState(null, "", hash);
}
