// The lens grid: rows = layers (embeddings at the bottom, model output on top), columns = positions;
// each cell shows its top-1 token on the metric's colour. One layout (gridScene: a list of rects,
// cells and texts) is written out as the page's SVG (renderGrid) and painted onto the PNG export's
// canvas (paint.js), so both show the same picture.
import { textOn } from "./colors.js";
import { esc, label, visible } from "./text.js";

export const FONT = "ui-monospace, DejaVu Sans Mono, Menlo, Consolas, monospace";
export const SANS = "system-ui, DejaVu Sans, Arial, sans-serif";
const H = 27, LEFT = 62, TOP = 40, BOTTOM = 46, GAP = 1.5;
const GREY = "#6b7385";

export function cellWidth(data) {
  let longest = 3;
  for (const row of data.top_ids) for (const cell of row) {
    const n = Array.from(label(data.vocab[String(cell[0])] ?? "", 9)).length;
    if (n > longest) longest = n;
  }
  for (const t of data.tokens) longest = Math.max(longest, Math.min(Array.from(label(t, 9)).length, 9));
  return Math.round(Math.min(86, Math.max(40, 14 + 7 * longest)));
}

// The cell width that fills `available` pixels (never below what the labels need, never above 112).
export function fitWidth(need, P, available) {
  return Math.round(Math.max(need, Math.min(112, (available - LEFT - 12) / Math.max(P, 1))));
}

// The grid as drawing items, in painting order: {width, height, items}. An item is
//   {kind: "rect", x, y, w, h, rx, fill, stroke?, lineWidth?, dash?, cls?, data?}
//   {kind: "text", x, y, s, family, size, fill, anchor?, central?, weight?, italic?, rotate?, cls?}
//   {kind: "cell", x, y, w, h, bg, s, fg, bold, data}: one cell (its background and top-1 token).
// selected: {row, pos} outlined solid; paired: {row, pos} outlined dashed (the cell compare mode pairs with it).
export function gridScene(data, { values, color, selected, paired, kind, width, mask }) {
  const S = data.layer_names.length, P = data.tokens.length;
  const W = width || cellWidth(data);
  const totalW = LEFT + P * W + 12, totalH = TOP + S * H + BOTTOM;
  const tok = (id) => data.vocab[String(id)] ?? `<${id}>`;
  const items = [];
  const text = (x, y, s, o) => items.push({ kind: "text", x, y, s, family: SANS, size: 10.5, fill: GREY, ...o });
  items.push({ kind: "rect", x: 0, y: 0, w: totalW, h: totalH, fill: "#ffffff" });
  text(LEFT, 12, kind === "masked" ? "scored token" : "target (next token)");
  text(LEFT, totalH - 6, kind === "seq2seq" ? "decoder input" : "input token");
  text(12, TOP + (S * H) / 2, "layer", { anchor: "middle", rotate: -90 });
  for (let r = 0; r < S; r++) {
    const y = TOP + (S - 1 - r) * H;
    const name = data.layer_names[r];
    const isOut = r === S - 1;
    text(LEFT - 8, y + H / 2, name, { anchor: "end", central: true, size: 11, fill: isOut ? "#1d2330" : "#4a5263", weight: isOut || r === 0 ? 600 : 400 });
    for (let p = 0; p < P; p++) {
      const bg = color(values[r][p]);
      const top1 = data.top_ids[r][p][0];
      const hit = data.target_ids[p] >= 0 && top1 === data.target_ids[p];
      items.push({
        kind: "cell", x: LEFT + p * W, y, w: W - GAP, h: H - GAP, bg, s: label(tok(top1), 9), fg: textOn(bg), bold: hit,
        data: { row: r, layer: data.layers[r], name, pos: p, top1 },
      });
    }
  }
  for (let p = 0; p < P; p++) {
    const cx = LEFT + p * W + (W - GAP) / 2;
    const isMask = mask && data.tokens[p] === mask; // masked LMs: the hidden positions stand out
    text(cx, TOP + S * H + 14, label(data.tokens[p], 9), { cls: "xlabel", anchor: "middle", family: FONT, size: 11, fill: isMask ? "#4f46e5" : "#1d2330", weight: isMask ? 700 : undefined });
    text(cx, TOP + S * H + 28, String(p), { anchor: "middle", size: 9, fill: "#9aa1b0" });
    const t = data.target_ids[p];
    if (t >= 0) text(cx, TOP - 10, label(tok(t), 9), { anchor: "middle", family: FONT, size: 11, italic: true, fill: "#0b7a43" });
  }
  const outline = (at, o) => {
    const x = LEFT + at.pos * W - 1, y = TOP + (S - 1 - at.row) * H - 1;
    items.push({ kind: "rect", x, y, w: W + 1, h: H + 1, rx: 3, fill: "none", stroke: "#111827", data: { row: at.row, pos: at.pos }, ...o });
    return [x, y];
  };
  if (selected && selected.row < S && selected.pos < P) {
    const [x, y] = outline(selected, { cls: "selected", lineWidth: 2.5 });
    items.push({ kind: "rect", x: x + 2.5, y: y + 2.5, w: W - 4, h: H - 4, rx: 2, fill: "none", stroke: "#ffffff", lineWidth: 1 });
  }
  if (paired && paired.row < S && paired.pos < P) outline(paired, { cls: "paired", lineWidth: 2, dash: [4, 2] });
  return { width: totalW, height: totalH, rows: S, cols: P, items };
}

const scenes = new WeakMap(); // <svg> -> the scene it was written from (what the PNG export paints)
export const sceneOf = (svg) => scenes.get(svg);

function svgRect(it) {
  const a = [`x="${it.x}" y="${it.y}" width="${it.w}" height="${it.h}"`];
  if (it.cls) a.unshift(`class="${it.cls}"`, `data-row="${it.data.row}" data-pos="${it.data.pos}"`);
  if (it.rx) a.push(`rx="${it.rx}"`);
  a.push(`fill="${it.fill}"`);
  if (it.stroke) a.push(`stroke="${it.stroke}" stroke-width="${it.lineWidth}"`);
  if (it.dash) a.push(`stroke-dasharray="${it.dash.join(" ")}"`);
  if (it.stroke) a.push('pointer-events="none"');
  return `<rect ${a.join(" ")}/>`;
}

function svgText(it) {
  const a = [it.rotate ? `transform="translate(${it.x} ${it.y}) rotate(${it.rotate})"` : `x="${it.x}" y="${it.y}"`];
  if (it.cls) a.unshift(`class="${it.cls}"`);
  if (it.anchor) a.push(`text-anchor="${it.anchor}"`);
  if (it.central) a.push('dominant-baseline="central"');
  a.push(`font-family="${it.family}" font-size="${it.size}" fill="${it.fill}"`);
  if (it.weight) a.push(`font-weight="${it.weight}"`);
  if (it.italic) a.push('font-style="italic"');
  return `<text ${a.join(" ")}>${esc(it.s)}</text>`;
}

function svgCell(it) {
  const d = it.data;
  return `<g class="cell" data-row="${d.row}" data-layer="${d.layer}" data-name="${esc(d.name)}" data-pos="${d.pos}" data-top1="${d.top1}">` +
    `<rect class="bg" x="${it.x}" y="${it.y}" width="${it.w}" height="${it.h}" rx="2" fill="${it.bg}"/>` +
    `<text x="${it.x + it.w / 2}" y="${it.y + (it.h + GAP) / 2}" text-anchor="middle" dominant-baseline="central" font-family="${FONT}" font-size="11.5" fill="${it.fg}"${it.bold ? ' font-weight="700"' : ""}>${esc(it.s)}</text></g>`;
}

// Draw the grid into `container` as SVG; returns the <svg> (sceneOf(svg) is its scene).
export function renderGrid(container, data, opts) {
  const scene = gridScene(data, opts);
  const { width, height } = scene;
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" data-rows="${scene.rows}" data-cols="${scene.cols}">`];
  for (const it of scene.items) parts.push(it.kind === "cell" ? svgCell(it) : it.kind === "text" ? svgText(it) : svgRect(it));
  parts.push("</svg>");
  container.innerHTML = parts.join("");
  const svg = container.firstElementChild;
  scenes.set(svg, scene);
  return svg;
}

// Tooltip HTML of one cell.
export function cellTooltip(data, r, p, metricLabel, value) {
  const tok = (id) => data.vocab[String(id)] ?? `<${id}>`;
  const rows = data.top_ids[r][p].slice(0, 5).map((id, j) =>
    `<div class="tt-r"><span>${esc(visible(tok(id)))}</span><span>${data.top_probs[r][p][j].toFixed(3)}</span></div>`).join("");
  const v = Number.isFinite(value) ? (Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3)) : "\u2013";
  return `<div class="tt-h">layer ${esc(data.layer_names[r])} \u00b7 pos ${p} ${esc(visible(data.tokens[p]))}</div>${rows}<div class="tt-m">${esc(metricLabel)}: ${v}</div>`;
}
