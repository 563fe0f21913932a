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
  // The selected cell's side uses its position; the other side the same offset from the end
  // (prompts that differ early line up at their shared ending). No cell: both last positions.
  const lens = { a, b };
  const fromEnd = cell ? lens[cell.side].tokens.length - 1 - cell.pos : 0;
  const at = (s) => (cell && cell.side === s ? cell.pos : Math.max(0, lens[s].tokens.length - 1 - fromEnd));
  try {
    const cmp = await fetch({ a: at("a"), b: at("b") });
    error.hidden = true;
    ui("kl-title").innerHTML = `KL between A and B by layer <span class="sub">A at position ${cmp.a.position} <span class="tok">${esc(visible(cmp.a.token))}</span> \u00b7 B at position ${cmp.b.position} <span class="tok">${esc(visible(cmp.b.token))}</span></span>`;
    ui("kl-note").textContent = cmp.alignment === "identity" ? "" : "Different depths: each layer of the shallower model is paired with the deeper model's layer at the same fraction of depth.";
    chart.dataset.layers = String(cmp.pairs.length);
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
