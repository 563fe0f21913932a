// Compare mode: per-layer KL between the two sides' lens distributions at one position each.
import { post, Superseded } from "./api.js";
import { klChart } from "./charts.js";
import { esc, visible } from "./text.js";

const $ = (id) => document.getElementById(id);

// a, b: the two lens payloads; cell: the selected cell ({side, pos}) or null;
// side(s): the request fields (model, text, target) of side "a" or "b".
export async function compareLayers(a, b, cell, side) {
  const chart = $("kl-chart"), error = $("error-kl");
  if (!a || !b) { chart.innerHTML = ""; return; }
  // The selected cell's side uses its position; the other side the same offset from the end
  // (prompts that differ early line up at their shared ending). No cell: both last positions.
  const lens = { a, b };
  const fromEnd = cell ? lens[cell.side].tokens.length - 1 - cell.pos : 0;
  const at = (s) => (cell && cell.side === s ? cell.pos : Math.max(0, lens[s].tokens.length - 1 - fromEnd));
  try {
    const cmp = await post("compare", "/api/compare", { a: { ...side("a"), position: at("a") }, b: { ...side("b"), position: at("b") } });
    error.hidden = true;
    $("kl-title").innerHTML = `KL between A and B by layer <span class="sub">A at position ${cmp.a.position} <span class="tok">${esc(visible(cmp.a.token))}</span> \u00b7 B at position ${cmp.b.position} <span class="tok">${esc(visible(cmp.b.token))}</span></span>`;
    $("kl-note").textContent = cmp.alignment === "identity" ? "" : "Different depths: each layer of the shallower model is paired with the deeper model's layer at the same fraction of depth.";
    chart.dataset.layers = String(cmp.pairs.length);
    klChart(chart, cmp);
  } catch (err) {
    if (err instanceof Superseded) return;
    chart.innerHTML = "";
    chart.dataset.layers = "0";
    error.textContent = err.message;
    error.hidden = false;
  }
}
