// A small SVG line chart, for pages without plotly.js (the notebook widget carries no 3.5 MB
// library): category x axis, linear or log y, one <g class="trace"> per series, nulls as gaps.
import { esc } from "./text.js";

const SANS = "system-ui, DejaVu Sans, Arial, sans-serif";
const MONO = "ui-monospace, DejaVu Sans Mono, monospace";

// opts: {x: [labels], series: [{name, y, color, width, dash}], log, reversed, range, xTitle, yTitle,
// ticks: x labels to print (default all), vline: an x label to mark}.
export function lineChart(node, opts) {
  const W = Math.max(node.clientWidth || 340, 240), H = Math.max(node.clientHeight || 240, 160);
  const L = 46, R = 10, T = 10, B = 54;
  const n = opts.x.length, iw = W - L - R, ih = H - T - B;
  const tf = (v) => (opts.log ? Math.log10(Math.max(v, 1e-12)) : v);
  let lo, hi;
  if (opts.range) [lo, hi] = opts.range.map(tf);
  else {
    const all = opts.series.flatMap((s) => s.y).filter((v) => v !== null && Number.isFinite(v)).map(tf);
    lo = opts.log ? 0 : Math.min(0, ...all);
    hi = all.length ? Math.max(...all) : 1;
    if (hi <= lo) hi = lo + 1;
  }
  const xs = (i) => L + (n > 1 ? (i * iw) / (n - 1) : iw / 2);
  const ys = (v) => {
    const t = (tf(v) - lo) / (hi - lo);
    return T + (opts.reversed ? t : 1 - t) * ih;
  };
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="${SANS}" font-size="10">`];
  out.push(`<rect x="${L}" y="${T}" width="${iw}" height="${ih}" fill="#fff" stroke="#e3e6eb"/>`);
  const yt = opts.log ? Array.from({ length: Math.floor(hi) + 1 }, (_, e) => 10 ** e) : [0, 0.25, 0.5, 0.75, 1].map((f) => lo + f * (hi - lo));
  for (const v of yt) {
    const y = ys(v);
    out.push(`<line x1="${L}" x2="${L + iw}" y1="${y}" y2="${y}" stroke="#eceef2"/><text class="ytick" x="${L - 4}" y="${y}" text-anchor="end" dominant-baseline="central" fill="#4a5263">${opts.log ? v : +v.toFixed(2)}</text>`);
  }
  const ticks = new Set(opts.ticks || opts.x);
  const every = Math.max(1, Math.ceil(ticks.size / 14));
  let shown = 0;
  opts.x.forEach((label, i) => {
    if (!ticks.has(label) || shown++ % every) return;
    out.push(`<text class="xtick" x="${xs(i)}" y="${T + ih + 12}" text-anchor="middle" fill="#4a5263">${esc(label)}</text>`);
  });
  if (opts.vline !== undefined && opts.vline !== null && opts.x.includes(opts.vline)) {
    const x = xs(opts.x.indexOf(opts.vline));
    out.push(`<line x1="${x}" x2="${x}" y1="${T}" y2="${T + ih}" stroke="#9aa1b0" stroke-dasharray="2 2"/>`);
  }
  out.push(`<text x="${L + iw / 2}" y="${T + ih + 25}" text-anchor="middle" fill="#6b7385">${esc(opts.xTitle || "")}</text>`);
  out.push(`<text transform="translate(11 ${T + ih / 2}) rotate(-90)" text-anchor="middle" fill="#6b7385">${esc(opts.yTitle || "")}</text>`);
  let lx = L;
  for (const s of opts.series) {
    let d = "", pen = false;
    const dots = [];
    s.y.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { pen = false; return; }
      d += `${pen ? "L" : "M"}${xs(i).toFixed(1)},${ys(v).toFixed(1)}`;
      pen = true;
      dots.push(`<circle cx="${xs(i).toFixed(1)}" cy="${ys(v).toFixed(1)}" r="${s.width > 2 ? 2.6 : 1.8}" fill="${s.color}"><title>${esc(s.name)} \u00b7 layer ${esc(opts.x[i])}: ${opts.log ? "rank " + v : v.toFixed(4)}</title></circle>`);
    });
    out.push(`<g class="trace"><path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width || 1.6}"${s.dash ? ' stroke-dasharray="3 3"' : ""}/>${dots.join("")}</g>`);
    const w = 18 + 7 * Array.from(s.name).length;
    if (lx + w > W) continue;
    out.push(`<g transform="translate(${lx} ${H - 12})"><line x1="0" x2="12" y1="0" y2="0" stroke="${s.color}" stroke-width="2"/><text x="15" y="0" dominant-baseline="central" font-family="${MONO}" font-size="10.5" fill="#1d2330">${esc(s.name)}</text></g>`);
    lx += w + 8;
  }
  out.push("</svg>");
  node.innerHTML = out.join("");
}
