// Compare mode: per-layer KL between the two sides' lens distributions at one position each.
import { Superseded } from "./api.js";
import { klChart } from "./charts.js";
import { esc, visible } from "./text.js";

// ui: the workspace's part getter; a, b: the two lens payloads; cell: the selected cell
// ({side, pos}) or null; fetch({a: posA, b: posB}) resolves with the comparison (/api/compare's
// answer, or the notebook's precomputed one). Resolves with the comparison, or null.
export async function compareLayers(ui, a, b, cell, fetch) {
  const chart = ui("kl-chart"), error = ui("error-kl");
  if (!a || !b) { chart.innerHTML = ""; return null; }
  // The selected cell's side uses its position; the other side null: the server pairs it (the
  // same token index, a target's k-th token with the other target's k-th). No cell: A's last.
  const at = cell ? { a: null, b: null, [cell.side]: cell.pos } : { a: -1, b: null };
  try {
    const cmp = await fetch(at);
    error.hidden = true;
    ui("kl-title").innerHTML = `KL between A and B by layer <span class="sub">A at position ${cmp.a.position} <span class="tok">${esc(visible(cmp.a.token))}</span> \u00b7 B at position ${cmp.b.position} <span class="tok">${esc(visible(cmp.b.token))}</span></span>`;
    ui("kl-note").textContent = cmp.alignment === "identity" ? "" : "Different depths: each layer of the shallower model is paired with the deeper model's layer at the same fraction of depth.";
    chart.dataset.layers = String(cmp.pairs.length);
    chart.dataset.klMax = String(Math.max(...cmp.kl_ab, ...(cmp.kl_ba || [])));
    chart.dataset.positions = `${cmp.a.position}:${cmp.b.position}`;
    klChart(chart, cmp);
    return cmp;
  } catch (err) {
    if (err instanceof Superseded) return null;
    chart.innerHTML = "";
    chart.dataset.layers = "0";
    error.textContent = err.message;
    error.hidden = false;
    return null;
  }
}
