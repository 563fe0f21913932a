// The side panel: the selected cell's top-k with rank changes, and token trajectories across layers.
import { PALETTE, trajectoryChart } from "./charts.js";
import { el } from "./dom.js";
import { esc, fmtNum, fmtP, visible } from "./text.js";

// Every function takes `ui`, the part getter of the workspace holding the panel (workspace.js).
export function clearPanel(ui, message = "Click a cell (or move with the arrow keys) to see its top tokens.") {
  ui("panel-empty").textContent = message;
  ui("panel-empty").hidden = false;
  ui("panel-body").hidden = true;
}

// The cell's numbers: entropy and KL to final where the payload has them (a diff's has not), then
// the payload's own metrics (data.extra: a diff's KL(A ‖ B) and Δ log p, labelled from `metrics`).
function cellStats(data, r, p, metrics) {
  const has = (grid) => grid && Number.isFinite(grid[r]?.[p]);
  const stats = [];
  if (has(data.entropy)) stats.push(["entropy", fmtNum(data.entropy[r][p]) + " nats"]);
  if (has(data.kl_to_final)) stats.push(["KL to final", fmtNum(data.kl_to_final[r][p])]);
  for (const [key, grid] of Object.entries(data.extra || {})) {
    if (has(grid)) stats.push([(metrics && metrics[key] && metrics[key].short) || key, fmtNum(grid[r][p])]);
  }
  stats.push(["top-1 p", fmtP(data.top_probs[r][p][0])]);
  return stats;
}

// The cell part (instant, from the lens payload). `pinnedIds` are ids already pinned; `metrics`
// the colour scales' specs (their short names label a payload's own metrics).
export function renderCell(ui, data, r, p, { side, pinnedIds, onPin, metrics }) {
  const tok = (id) => data.vocab[String(id)] ?? `<${id}>`;
  ui("panel-empty").hidden = true;
  ui("panel-body").hidden = false;
  const sideTag = side ? `<span class="stat">${side.toUpperCase()}</span> ` : "";
  const tgt = data.target_ids[p];
  ui("cell-title").innerHTML =
    `${sideTag}layer ${esc(data.layer_names[r])} \u00b7 position ${p} <code>${esc(visible(data.tokens[p]))}</code>` +
    (tgt >= 0 ? ` <span class="sub">\u2192 target</span> <code>${esc(visible(tok(tgt)))}</code>` : "");
  const stats = cellStats(data, r, p, metrics);
  if (tgt >= 0) {
    stats.push(["target p", fmtP(data.target_prob[r][p])]);
    stats.push(["target rank", String(data.target_rank[r][p] + 1)]);
  }
  const box = ui("cell-stats");
  box.replaceChildren(...stats.map(([k, v]) => el("span", { class: "stat" }, `${k} `, el("b", {}, v))));
  const list = ui("topk-list");
  list.dataset.layer = data.layers[r];
  list.dataset.pos = p;
  list.replaceChildren(
    ...data.top_ids[r][p].map((id, j) => {
      const prob = data.top_probs[r][p][j];
      const pinned = pinnedIds.includes(id);
      return el(
        "li",
        { class: "topk-row", dataset: { tokenId: id, prob: String(prob), token: tok(id) } },
        el("span", { class: "n" }, String(j + 1)),
        el(
          "span",
          { class: "tokcell", title: `id ${id}` },
          el("span", { class: "pbar", style: `width:${Math.max(1, prob * 100).toFixed(1)}%` }),
          el("span", { class: "tok" + (id === tgt ? " target" : "") }, visible(tok(id))),
        ),
        el("span", { class: "p" }, fmtP(prob)),
        el("span", { class: "delta", dataset: { id } }, "\u2026"),
        el("button", { class: "pin-btn" + (pinned ? " on" : ""), title: pinned ? "pinned" : "pin this token", onclick: () => onPin(tok(id), id) }, pinned ? "\u2605" : "\u2606"),
      );
    }),
  );
  const below = layerBelow(data.layer_names[r], data.meta.sublayers);
  ui("rank-note").textContent = below === null ? "(embeddings: no layer below)" : `rank change vs layer ${below}`;
}

// The row just below a row name in the full depth: "3" -> "3.attn" with sub-layers (else "2"),
// "3.attn" -> "2", "1" -> "embed"; null for the embeddings.
function layerBelow(name, sublayers) {
  if (name === "embed") return null;
  const [block, part] = name.split(".");
  if (sublayers && !part) return `${block}.${sublayers === "parallel" ? "in+attn" : "attn"}`;
  const n = Number(block) - 1;
  return n === 0 ? "embed" : String(n);
}

// The column part (after /api/column): rank deltas and the trajectory chart.
// A rank the column does not know (null: the token is outside that layer's top-k) shows as "new".
export function renderColumn(ui, data, r, p, col, { pinnedIds, mode }) {
  const here = col.layer_names.indexOf(data.layer_names[r]);
  const under = here - 1;  // the column holds every row in depth order (sub-layers too when asked)
  const index = new Map(col.ids.map((id, i) => [id, i]));
  for (const span of ui("topk-list").querySelectorAll(".delta")) {
    const i = index.get(Number(span.dataset.id));
    span.className = "delta";
    if (i === undefined || under < 0) { span.textContent = ""; continue; }
    const now = col.ranks[i][here], before = col.ranks[i][under];
    if (before === null && now !== null) {
      span.textContent = "new"; span.classList.add("new");
      span.title = `outside the top-${col.k ?? "k"} at layer ${col.layer_names[under]} \u2192 rank ${now + 1}`;
      continue;
    }
    const d = before - now;
    span.title = `rank ${before + 1} at layer ${col.layer_names[under]} \u2192 ${now + 1}`;
    if (d > 0) { span.textContent = `\u25b2${d}`; span.classList.add("up"); }
    else if (d < 0) { span.textContent = `\u25bc${-d}`; span.classList.add("down"); }
    else { span.textContent = "="; span.classList.add("same"); }
  }
  const top = data.top_ids[r][p].slice(0, 3);
  const chosen = [...pinnedIds, ...top.filter((id) => !pinnedIds.includes(id))];
  const series = chosen
    .filter((id) => index.has(id))
    .map((id, n) => ({
      token: col.tokens[index.get(id)],
      values: mode === "rank" ? col.ranks[index.get(id)] : col.probs[index.get(id)],
      color: PALETTE[n % PALETTE.length],
      pinned: pinnedIds.includes(id),
    }));
  ui("traj-title").textContent = `trajectory \u00b7 position ${col.position}`;
  const chart = ui("traj-chart");
  chart.dataset.series = String(series.length);
  chart.dataset.pinned = String(series.filter((s) => s.pinned).length);
  trajectoryChart(chart, col.layer_names, series, mode, data.layer_names[r]);
}
