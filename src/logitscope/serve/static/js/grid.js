// The lens grid as one SVG: rows = layers (embeddings at the bottom, model output on top),
// columns = positions; each cell shows its top-1 token on the metric's colour.
import { textOn } from "./colors.js";
import { esc, label, visible } from "./text.js";

const FONT = "ui-monospace, DejaVu Sans Mono, Menlo, Consolas, monospace";
const SANS = "system-ui, DejaVu Sans, Arial, sans-serif";
const H = 27, LEFT = 62, TOP = 40, BOTTOM = 46, GAP = 1.5;

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

// Draw the grid into `container`; returns the <svg>.
// selected: {row, pos} outlined solid; paired: {row, pos} outlined dashed (the cell compare mode pairs with it).
export function renderGrid(container, data, { values, color, selected, paired, kind, width, mask }) {
  const S = data.layer_names.length, P = data.tokens.length;
  const W = width || cellWidth(data);
  const totalW = LEFT + P * W + 12, totalH = TOP + S * H + BOTTOM;
  const tok = (id) => data.vocab[String(id)] ?? `<${id}>`;
  const parts = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${totalW}" height="${totalH}" viewBox="0 0 ${totalW} ${totalH}" data-rows="${S}" data-cols="${P}">`);
  parts.push(`<rect x="0" y="0" width="${totalW}" height="${totalH}" fill="#ffffff"/>`);
  const targetTitle = kind === "masked" ? "scored token" : "target (next token)";
  const inputTitle = kind === "seq2seq" ? "decoder input" : "input token";
  parts.push(`<text x="${LEFT}" y="12" font-family="${SANS}" font-size="10.5" fill="#6b7385">${targetTitle}</text>`);
  parts.push(`<text x="${LEFT}" y="${totalH - 6}" font-family="${SANS}" font-size="10.5" fill="#6b7385">${inputTitle}</text>`);
  parts.push(`<text transform="translate(12 ${TOP + (S * H) / 2}) rotate(-90)" text-anchor="middle" font-family="${SANS}" font-size="10.5" fill="#6b7385">layer</text>`);
  for (let r = 0; r < S; r++) {
    const y = TOP + (S - 1 - r) * H;
    const name = data.layer_names[r];
    const isOut = r === S - 1;
    parts.push(`<text x="${LEFT - 8}" y="${y + H / 2}" text-anchor="end" dominant-baseline="central" font-family="${SANS}" font-size="11" fill="${isOut ? "#1d2330" : "#4a5263"}" font-weight="${isOut || r === 0 ? 600 : 400}">${esc(name)}</text>`);
    for (let p = 0; p < P; p++) {
      const x = LEFT + p * W;
      const v = values[r][p];
      const bg = color(v);
      const top1 = data.top_ids[r][p][0];
      const hit = data.target_ids[p] >= 0 && top1 === data.target_ids[p];
      parts.push(
        `<g class="cell" data-row="${r}" data-layer="${data.layers[r]}" data-name="${esc(name)}" data-pos="${p}" data-top1="${top1}">` +
          `<rect class="bg" x="${x}" y="${y}" width="${W - GAP}" height="${H - GAP}" rx="2" fill="${bg}"/>` +
          `<text x="${x + (W - GAP) / 2}" y="${y + H / 2}" text-anchor="middle" dominant-baseline="central" font-family="${FONT}" font-size="11.5" fill="${textOn(bg)}"${hit ? ' font-weight="700"' : ""}>${esc(label(tok(top1), 9))}</text></g>`,
      );
    }
  }
  for (let p = 0; p < P; p++) {
    const cx = LEFT + p * W + (W - GAP) / 2;
    const isMask = mask && data.tokens[p] === mask; // masked LMs: the hidden positions stand out
    parts.push(`<text class="xlabel" x="${cx}" y="${TOP + S * H + 14}" text-anchor="middle" font-family="${FONT}" font-size="11" fill="${isMask ? "#4f46e5" : "#1d2330"}"${isMask ? ' font-weight="700"' : ""}>${esc(label(data.tokens[p], 9))}</text>`);
    parts.push(`<text x="${cx}" y="${TOP + S * H + 28}" text-anchor="middle" font-family="${SANS}" font-size="9" fill="#9aa1b0">${p}</text>`);
    const t = data.target_ids[p];
    if (t >= 0) parts.push(`<text x="${cx}" y="${TOP - 10}" text-anchor="middle" font-family="${FONT}" font-size="11" font-style="italic" fill="#0b7a43">${esc(label(tok(t), 9))}</text>`);
  }
  if (selected && selected.row < S && selected.pos < P) {
    const x = LEFT + selected.pos * W - 1, y = TOP + (S - 1 - selected.row) * H - 1;
    parts.push(`<rect class="selected" data-row="${selected.row}" data-pos="${selected.pos}" x="${x}" y="${y}" width="${W + 1}" height="${H + 1}" rx="3" fill="none" stroke="#111827" stroke-width="2.5" pointer-events="none"/>`);
    parts.push(`<rect x="${x + 2.5}" y="${y + 2.5}" width="${W - 4}" height="${H - 4}" rx="2" fill="none" stroke="#ffffff" stroke-width="1" pointer-events="none"/>`);
  }
  if (paired && paired.row < S && paired.pos < P) {
    const x = LEFT + paired.pos * W - 1, y = TOP + (S - 1 - paired.row) * H - 1;
    parts.push(`<rect class="paired" data-row="${paired.row}" data-pos="${paired.pos}" x="${x}" y="${y}" width="${W + 1}" height="${H + 1}" rx="3" fill="none" stroke="#111827" stroke-width="2" stroke-dasharray="4 2" pointer-events="none"/>`);
  }
  parts.push("</svg>");
  container.innerHTML = parts.join("");
  return container.firstElementChild;
}

// Tooltip HTML of one cell.
export function cellTooltip(data, r, p, metricLabel, value) {
  const tok = (id) => data.vocab[String(id)] ?? `<${id}>`;
  const rows = data.top_ids[r][p].slice(0, 5).map((id, j) =>
    `<div class="tt-r"><span>${esc(visible(tok(id)))}</span><span>${data.top_probs[r][p][j].toFixed(3)}</span></div>`).join("");
  const v = Number.isFinite(value) ? (Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3)) : "\u2013";
  return `<div class="tt-h">layer ${esc(data.layer_names[r])} \u00b7 pos ${p} ${esc(visible(data.tokens[p]))}</div>${rows}<div class="tt-m">${esc(metricLabel)}: ${v}</div>`;
}
