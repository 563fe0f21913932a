// The logits tab (the model's own output distribution, greedy generation) and the embeddings tab.
import { post, Superseded } from "./api.js";
import { barsChart } from "./charts.js";
import { $, el } from "./dom.js";
import { fmtP, visible } from "./text.js";

function showError(id, err) {
  const box = $(id);
  if (err instanceof Superseded) return;
  box.textContent = err ? err.message : "";
  box.hidden = !err;
}

export async function runLogits(state, save) {
  if (!state.text) { // an empty prompt: nothing shown, no old error
    showError("error-logits", null);
    $("logits-table").replaceChildren();
    if (window.Plotly) window.Plotly.purge($("logits-chart"));
    $("generated").hidden = true;
    return;
  }
  const body = { model: state.model, text: state.text, top_k: state.logitsK };
  if (state.target) body.target = state.target;
  if (state.generate > 0) body.generate = state.generate;
  let data;
  try {
    data = await post("logits", "/api/logits", body);
  } catch (err) {
    showError("error-logits", err);
    return;
  }
  showError("error-logits", null);
  const P = data.tokens.length;
  let row = state.logitsRow !== null && state.logitsRow < P ? state.logitsRow : P - 1;
  const gen = $("generated");
  if (data.generated_text !== null && data.generated_text !== undefined) {
    gen.hidden = false;
    gen.replaceChildren(el("span", {}, state.text), el("span", { class: "gen" }, data.generated_text));
  } else gen.hidden = true;
  const what = data.masked ? "at the mask positions" : data.generated_text !== null && data.generated_text !== undefined ? "per generated step" : data.kind === "seq2seq" && !state.target ? "at the first decoder step" : "by position";
  $("logits-title").textContent = `Output distribution \u00b7 ${data.model_name}`;
  const table = $("logits-table");
  const k = data.top_ids[0] ? data.top_ids[0].length : 0;
  const head = el("tr", {}, el("th", {}, "pos"), el("th", {}, "token"), el("th", {}, data.generated_text ? "generated" : "target"),
    ...Array.from({ length: Math.min(k, 5) }, (_, j) => el("th", {}, `top ${j + 1}`)));
  const draw = (i) => {
    row = i;
    for (const tr of table.querySelectorAll("tr[data-row]")) tr.classList.toggle("sel", Number(tr.dataset.row) === i);
    barsChart($("logits-chart"), data.top_tokens[i], data.top_probs[i], `position ${data.positions[i]} (${visible(data.tokens[i])}) \u2192 top ${k}, ${what}`);
    save({ logitsRow: i });
  };
  const rows = data.tokens.map((t, i) =>
    el("tr", { dataset: { row: i }, onclick: () => draw(i) },
      el("td", {}, String(data.positions[i])),
      el("td", {}, el("span", { class: "tok" }, visible(t))),
      el("td", {}, data.target_tokens[i] === null ? "" : el("span", {}, el("span", { class: "tok" }, visible(data.target_tokens[i])), el("span", { class: "pp" }, fmtP(data.target_probs[i])))),
      ...data.top_tokens[i].slice(0, 5).map((tok, j) => el("td", {}, el("span", { class: "tok" }, visible(tok)), el("span", { class: "pp" }, fmtP(data.top_probs[i][j])))),
    ));
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  draw(row);
}

// An empty query shows no neighbours (and no old ones), only what to type.
export async function runEmbed(state) {
  const query = state.embedQuery;
  const results = $("embed-results");
  $("embed-empty").hidden = !!query;
  if (!query) { results.replaceChildren(); showError("error-embed", null); return; }
  let data;
  try {
    data = await post("embed", "/api/nearest", { model: state.model, text: query, k: state.embedK, metric: state.embedMetric });
  } catch (err) {
    showError("error-embed", err);
    return;
  }
  showError("error-embed", null);
  results.replaceChildren(...data.queries.map((q) => {
    const max = Math.max(...q.scores.map(Math.abs), 1e-9);
    return el("div", { class: "card nn-card" },
      el("div", { class: "card-head" }, el("div", { class: "title" }, "nearest to ", el("span", { class: "tok" }, visible(q.query))), el("span", { class: "sub" }, `id ${q.query_id} \u00b7 ${q.metric}`)),
      el("ol", { class: "nn-list" }, ...q.tokens.map((t, i) => el("li", {},
        el("span", { class: "sub" }, String(i + 1)),
        el("span", { class: "bar" }, el("span", { class: "fill", style: `width:${(Math.abs(q.scores[i]) / max * 100).toFixed(1)}%` }), el("span", { class: "tok" }, visible(t))),
        el("span", { class: "p" }, q.scores[i].toFixed(4)),
      ))));
  }));
}
