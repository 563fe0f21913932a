// Metric values and colours, matching logitscope.render.metrics (colour scales come from the server).

export const METRIC_NAMES = ["entropy", "prob", "target", "rank", "kl"];

// (S, P) values of a metric from a lens payload; NaN where undefined. Ranks are 1-based.
export function metricValues(data, metric) {
  const S = data.layer_names.length, P = data.tokens.length;
  const out = [];
  for (let r = 0; r < S; r++) {
    const row = new Array(P);
    for (let p = 0; p < P; p++) {
      let v;
      if (data.extra && data.extra[metric]) v = data.extra[metric][r][p]; // a result's own metric (a diff's KL)
      else if (metric === "entropy") v = data.entropy[r][p];
      else if (metric === "prob") v = data.top_probs[r][p][0];
      else if (metric === "target") v = data.target_prob[r][p];
      else if (metric === "rank") v = data.target_rank[r][p] >= 0 ? data.target_rank[r][p] + 1 : NaN;
      else v = data.kl_to_final[r][p];
      row[p] = v === null || v === undefined ? NaN : v;
    }
    out.push(row);
  }
  return out;
}

// Colour limits [lo, hi]: the metric's fixed bounds, else the data's range (over several grids).
export function colorLimits(valueGrids, spec) {
  let lo = spec.bounds[0], hi = spec.bounds[1];
  let min = Infinity, max = -Infinity;
  for (const grid of valueGrids) for (const row of grid) for (const v of row) {
    if (Number.isFinite(v)) { if (v < min) min = v; if (v > max) max = v; }
  }
  if (lo === null) lo = Number.isFinite(min) ? min : 0;
  if (hi === null) {
    hi = Number.isFinite(max) ? max : lo + 1;
    if (spec.log) hi = Math.max(hi, 10);
  }
  if (hi <= lo) hi = lo + (spec.log ? 9 : 1);
  return [lo, hi];
}

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

// A function value -> "#rrggbb" (or the missing colour for NaN).
export function scaleFor(spec, limits, missing) {
  const stops = spec.colorscale.map(([t, c]) => [t, hexToRgb(c)]);
  const [lo, hi] = spec.log ? limits.map(Math.log10) : limits;
  return (v) => {
    if (!Number.isFinite(v)) return missing;
    let t = ((spec.log ? Math.log10(v) : v) - lo) / (hi - lo);
    t = Math.min(1, Math.max(0, t));
    let i = 1;
    while (i < stops.length - 1 && stops[i][0] < t) i++;
    const [t0, c0] = stops[i - 1], [t1, c1] = stops[i];
    const f = t1 > t0 ? (t - t0) / (t1 - t0) : 0;
    const c = c0.map((x, j) => Math.round(x + f * (c1[j] - x)));
    return "#" + c.map((x) => x.toString(16).padStart(2, "0")).join("");
  };
}

// Black or white text on a background, by WCAG luminance (as render.metrics.text_color).
export function textOn(hex) {
  const lin = hexToRgb(hex).map((x) => {
    const c = x / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2] > 0.179 ? "#111111" : "#ffffff";
}

// The legend's words: [low end, high end, metric name] (the page's legend and the PNG's).
export function legendParts(spec, limits) {
  const fmt = (x) => (spec.log ? Math.round(x).toLocaleString() : Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2));
  return [fmt(limits[0]), fmt(limits[1]), `${spec.label}${spec.log ? " (log)" : ""}`];
}

export function legendHTML(spec, limits) {
  const stops = spec.colorscale.map(([t, c]) => `${c} ${(t * 100).toFixed(0)}%`).join(", ");
  const [lo, hi, name] = legendParts(spec, limits);
  return `<span>${lo}</span><span class="bar" style="background: linear-gradient(90deg, ${stops})"></span><span>${hi}</span><span class="sub">${name}</span>`;
}
