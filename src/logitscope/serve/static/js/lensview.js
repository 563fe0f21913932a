// The lens grid(s) + cell panel + compare KL, mounted into any container. The viewer page mounts
// one (data from the server); each notebook widget mounts its own (data from its payload).
//
// createLensView(root, opts) fills root with the workspace (workspace.js) and returns a view:
//   opts.metrics, opts.missing: colour scales (the server's /api/models, or the payload's);
//   opts.state: {metric, traj, cell, compare}, read and written by the view (cell = {side, layer, pos});
//   opts.source: {column(side, data, r, p) -> Promise<column>, compare({a, b}) -> Promise<comparison>};
//   opts.onChange(): the state changed (the viewer writes the URL); opts.onPin(token, id);
//   opts.pinnedIds(data): ids pinned on that side (default data.tracked_ids);
//   opts.mask(data): the mask token shown in that grid (masked LMs), opts.toast(message);
//   opts.keys: the element whose arrow keys move the selection; opts.active(): whether they should.
import { Superseded } from "./api.js";
import { colorLimits, legendHTML, metricValues, scaleFor } from "./colors.js";
import { compareLayers } from "./compare.js";
import { bindSeg, setSeg } from "./dom.js";
import { cellTooltip, cellWidth, fitWidth, renderGrid, sceneOf } from "./grid.js";
import { clearPanel, renderCell, renderColumn } from "./panel.js";
import { esc, visible } from "./text.js";
import { buildWorkspace } from "./workspace.js";

export function createLensView(root, opts) {
  const ui = buildWorkspace(root, { ids: opts.ids });
  const state = opts.state;
  const lens = { a: null, b: null };
  let values = { a: null, b: null };
  let legend = null; // {spec, limits}: the colours of the grids drawn last
  let paired = null; // {a, b}: the positions the KL chart compares (marked on both grids)
  const pinnedIds = opts.pinnedIds || ((data) => data.tracked_ids);
  const changed = () => opts.onChange && opts.onChange();
  const sides = () => ["a", "b"].filter((s) => lens[s] && (s === "a" || state.compare));

  function layout() {
    ui("card-b").hidden = !state.compare;
    ui("kl-card").hidden = !state.compare;
    ui("workspace").classList.toggle("compare", state.compare);
  }

  // The row of a layer name ("embed", "3", "3.attn"); a name not shown (stride, sub-layers off): the nearest block row.
  function rowOf(data, layer) {
    const exact = data.layer_names.indexOf(String(layer));
    if (exact >= 0) return exact;
    const n = String(layer) === "embed" ? 0 : parseInt(layer, 10) || 0;
    let best = 0;
    data.layers.forEach((l, r) => { if (Math.abs(l - n) < Math.abs(data.layers[best] - n)) best = r; });
    return best;
  }

  function draw() {
    layout();
    const shown = sides();
    if (!shown.length) return;
    const spec = opts.metrics[state.metric];
    values = Object.fromEntries(shown.map((s) => [s, metricValues(lens[s], state.metric)]));
    const limits = colorLimits(Object.values(values), spec);
    const color = scaleFor(spec, limits, opts.missing);
    legend = { spec, limits };
    const need = Math.max(...shown.map((s) => cellWidth(lens[s])));
    const P = Math.max(...shown.map((s) => lens[s].tokens.length));
    const width = fitWidth(need, P, ui("grid-a").parentElement.clientWidth - 24);
    for (const s of shown) {
      const data = lens[s];
      const mine = state.cell && state.cell.side === s;
      const sel = mine ? { row: rowOf(data, state.cell.layer), pos: state.cell.pos } : null;
      // the other side of a comparison: the cell the KL chart pairs with the selection
      const pair = !mine && state.compare && state.cell && paired ? { row: rowOf(data, paired.layer[s]), pos: paired[s] } : null;
      renderGrid(ui(`grid-${s}`), data, { values: values[s], color, selected: sel, paired: pair, kind: data.meta.kind, width, mask: opts.mask && opts.mask(data) });
      ui(`legend-${s}`).innerHTML = legendHTML(spec, limits);
      const stride = data.stride > 1 ? ` \u00b7 every ${data.stride} layers` : "";
      const tag = state.compare ? `${s.toUpperCase()} \u00b7 ` : "";
      const blocks = (data.n_streams_total ?? data.layers[data.layers.length - 1] + 1) - 1;
      ui(`title-${s}`).innerHTML = `${tag}${esc(data.model_name ?? data.meta.model ?? "")} <span class="sub">${blocks} layers + embed \u00b7 ${data.layer_names.length} rows \u00d7 ${data.tokens.length} positions${stride}</span>`;
      const src = ui(`source-${s}`);
      src.hidden = !data.source_tokens;
      if (data.source_tokens) src.innerHTML = `encoder input: <code>${esc(visible(data.source_tokens.join(""), " "))}</code>`;
    }
    // side by side, the two grids start at the same height (card A's head may hold more buttons)
    const headB = ui("card-b").querySelector(".card-head");
    headB.style.minHeight = state.compare ? `${ui("card-a").querySelector(".card-head").offsetHeight}px` : "";
  }

  async function runCompare() {
    if (!state.compare) return;
    const cmp = await compareLayers(ui, lens.a, lens.b, state.cell, (pos) => opts.source.compare(pos, lens));
    if (!cmp || !state.cell) return;
    // the other side's row: the one the comparison pairs with the selected row (by fraction of depth)
    const mine = state.cell.side, other = mine === "a" ? "b" : "a";
    const names = cmp[mine].layer_names;
    const at = names.indexOf(String(state.cell.layer).split(".")[0]);
    const pair = cmp.pairs.find((p) => p[mine === "a" ? 0 : 1] === at);
    const layer = { [mine]: state.cell.layer, [other]: pair ? cmp[other].layer_names[pair[mine === "a" ? 1 : 0]] : state.cell.layer };
    const next = { a: cmp.a.position, b: cmp.b.position, layer };
    if (!paired || JSON.stringify(paired) !== JSON.stringify(next)) { paired = next; draw(); }
  }

  async function selectCell(side, r, p) {
    const data = lens[side];
    state.cell = { side, layer: data.layer_names[r], pos: p };
    changed();
    draw();
    const ids = pinnedIds(data);
    renderCell(ui, data, r, p, { side: state.compare ? side : null, pinnedIds: ids, onPin: (token, id) => opts.onPin(token, id), metrics: opts.metrics });
    try {
      const col = await opts.source.column(side, data, r, p);
      if (lens[side] !== data) return;
      renderColumn(ui, data, r, p, col, { pinnedIds: ids, mode: state.traj });
    } catch (err) {
      if (!(err instanceof Superseded)) opts.toast(err.message);
    }
  }

  function restoreCell() {
    let cell = state.cell;
    const data = cell ? lens[cell.side] : null;
    if (!cell || !data || cell.pos >= data.tokens.length || (cell.side === "b" && !state.compare)) {
      const a = lens.a;
      if (!a) { clearPanel(ui); return Promise.resolve(); }
      cell = { side: "a", layer: a.layer_names[a.layer_names.length - 1], pos: a.tokens.length - 1 };
    }
    return selectCell(cell.side, rowOf(lens[cell.side], cell.layer), cell.pos);
  }

  const pick = (side, r, p) => selectCell(side, r, p).then(runCompare);

  for (const g of ["a", "b"]) {
    const box = ui(`grid-${g}`), tip = ui("tooltip");
    box.addEventListener("click", (e) => {
      const cell = e.target.closest(".cell");
      if (cell && lens[g]) pick(g, Number(cell.dataset.row), Number(cell.dataset.pos));
    });
    box.addEventListener("mousemove", (e) => {
      const cell = e.target.closest(".cell");
      if (!cell || !lens[g] || !values[g]) { tip.hidden = true; return; }
      const r = Number(cell.dataset.row), p = Number(cell.dataset.pos);
      tip.innerHTML = cellTooltip(lens[g], r, p, opts.metrics[state.metric].label, values[g][r]?.[p]);
      tip.hidden = false;
      const x = Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
      const y = e.clientY + 16 + tip.offsetHeight > window.innerHeight ? e.clientY - tip.offsetHeight - 10 : e.clientY + 16;
      tip.style.left = `${x}px`; tip.style.top = `${y}px`;
    });
    box.addEventListener("mouseleave", () => (tip.hidden = true));
  }
  bindSeg(ui("traj-mode"), "v", (v) => { state.traj = v; changed(); restoreCell(); });
  (opts.keys || document).addEventListener("keydown", (e) => { // arrow keys move the selected cell
    const moves = { ArrowUp: [1, 0], ArrowDown: [-1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (!moves[e.key] || (opts.active && !opts.active()) || !state.cell || /INPUT|TEXTAREA|SELECT/.test(e.target.tagName)) return;
    const data = lens[state.cell.side];
    if (!data) return;
    e.preventDefault();
    const r = Math.min(data.layers.length - 1, Math.max(0, rowOf(data, state.cell.layer) + moves[e.key][0]));
    const p = Math.min(data.tokens.length - 1, Math.max(0, state.cell.pos + moves[e.key][1]));
    pick(state.cell.side, r, p);
  });

  return {
    ui,
    lens,
    rowOf,
    draw,
    // New payloads (null: that side failed or is off); redraws and restores the selected cell.
    show(next) {
      Object.assign(lens, next);
      if (!state.compare) lens.b = null;
      paired = null;
      draw();
      return restoreCell().then(runCompare);
    },
    setStale(side, on) { ui(`grid-${side}`).classList.toggle("stale", on); },
    // No result on a side (an error, or nothing asked): no grid, and a title naming only the model asked for.
    fail(side, err, model = "") {
      lens[side] = null;
      ui(`grid-${side}`).innerHTML = "";
      ui(`legend-${side}`).innerHTML = "";
      ui(`source-${side}`).hidden = true;
      const tag = state.compare ? `${side.toUpperCase()} \u00b7 ` : "";
      ui(`title-${side}`).innerHTML = `${tag}${esc(model)} <span class="sub">${err ? "no result" : ""}</span>`;
      ui(`error-${side}`).textContent = err ? err.message : "";
      ui(`error-${side}`).hidden = !err;
    },
    clearError(side) { ui(`error-${side}`).hidden = true; },
    clear(message) { clearPanel(ui, message); },
    syncTraj() { setSeg(ui("traj-mode"), "v", state.traj); },
    layout,
    restoreCell,
    // What the PNG export paints: each grid shown (its scene and card title) and the legend.
    picture() {
      const grids = sides().map((s) => {
        const head = ui(`title-${s}`), sub = head.querySelector(".sub");
        const title = Array.from(head.childNodes).filter((n) => n !== sub).map((n) => n.textContent).join("").trim();
        return { scene: sceneOf(ui(`grid-${s}`).querySelector("svg")), title, sub: sub ? sub.textContent : "" };
      });
      return { grids: grids.filter((g) => g.scene), legend };
    },
    selectCell: pick,
  };
}
