// The viewer page's lens tab: requests to the server, pins, compare and exports around the
// mounted lens view (lensview.js). `app` holds the page's state, meta and save().
import { post, Superseded } from "./api.js";
import { $, el, toast } from "./dom.js";
import { exportFile, exportPNG } from "./exporting.js";
import { createLensView } from "./lensview.js";
import { renderPins } from "./pins.js";

export function lensBody(app, side) {
  const { state } = app;
  const b = side === "b";
  const body = {
    model: b ? state.modelB || state.model : state.model,
    text: b ? state.textB : state.text,
    top_k: state.topK,
    track: state.pins,
  };
  const target = b ? state.targetB : state.target;
  if (target && app.model(body.model).kind !== "masked") body.target = target;
  if (state.stride) body.stride = state.stride;
  if (state.sublayers) body.sublayers = true;
  if (state.lens === "tuned" || state.lens === "jacobian") body.lens = state.lens;
  return body;
}

// One side of /api/compare: the input that side's grid was computed from.
function compareSide(data) {
  const body = data.request;
  return { model: body.model, text: body.text, ...(body.target ? { target: body.target } : {}) };
}

// The page's lens tab: returns {view, run(), pin(p), drawPins()}.
export function mountViewerLens(app) {
  let pinAdded = null;
  const source = {
    column(side, data, r, p) {
      // the input the grid was computed from (the text box may already hold the next one)
      const body = { ...data.request, position: p, ids: [...new Set([...data.top_ids[r][p], ...data.tracked_ids])] };
      delete body.top_k; delete body.track; delete body.stride;
      return post("column", "/api/column", body);
    },
    compare(pos, lens) {
      return post("compare", "/api/compare", { a: { ...compareSide(lens.a), position: pos.a }, b: { ...compareSide(lens.b), position: pos.b } });
    },
  };
  const view = createLensView($("tab-lens"), {
    ids: true,
    metrics: app.meta.metrics,
    missing: app.meta.missing,
    state: app.state,
    source,
    onChange: () => app.save(),
    onPin: (token, id) => pin(id),
    mask: (data) => app.model(data.model_name)?.mask_token,
    toast: (m) => toast(m),
    active: () => app.state.tab === "lens",
  });

  const exports = [
    ["json", "JSON", "LensResult JSON, as logitscope lens -o x.json"],
    ["csv", "CSV", "one row per (layer, position)"],
    ["png", "PNG", "the grid as an image"],
    ["html", "HTML", "self-contained interactive heatmap, as --plot x.html"],
  ];
  view.ui("head-extra").replaceChildren(
    ...exports.map(([fmt, name, title]) => el("button", { class: "small ghost", dataset: { export: fmt }, title, onclick: () => exportAs(fmt) }, name)),
    el("button", { class: "small", id: "copy-link", title: "copy a link to this view", onclick: copyLink }, "copy link"),
  );

  async function copyLink() {
    app.save();
    try { await navigator.clipboard.writeText(location.href); toast("link copied"); }
    catch { toast("copy the address bar: it holds this view"); }
  }

  function drawPins() {
    const names = view.lens.a ? view.lens.a.tracked_tokens : [];
    renderPins($("pins"), app.state.pins, names, (i) => { app.state.pins.splice(i, 1); app.save(); drawPins(); run(); });
  }

  // A pin the server refused (not one token, unknown id) is taken back, with its message.
  function rejectPin(err) {
    if (!pinAdded || !/track|vocabulary|pinned/.test(err.message)) return false;
    app.state.pins = app.state.pins.filter((p) => p !== pinAdded);
    pinAdded = null;
    toast(err.message);
    app.save();
    drawPins();
    run();
    return true;
  }

  function pin(p) {
    const { state, meta } = app;
    if (state.pins.includes(p)) return;
    if (state.pins.length >= meta.limits.max_track) { toast(`at most ${meta.limits.max_track} pinned tokens`); return; }
    state.pins.push(p);
    pinAdded = p;
    app.save();
    drawPins();
    run();
  }

  async function run() {
    const { state } = app;
    app.save();
    if (state.tab !== "lens") return;
    view.layout();
    if (!state.text) { // nothing to show: no grid, no old error, no old title
      for (const s of ["a", "b"]) view.fail(s, null, lensBody(app, s).model);
      view.clear("Type a prompt.");
      return;
    }
    const sides = state.compare ? ["a", "b"] : ["a"];
    for (const s of sides) view.setStale(s, true);
    const bodies = Object.fromEntries(sides.map((s) => [s, lensBody(app, s)]));
    const results = await Promise.allSettled(sides.map((s) => post(`lens-${s}`, "/api/lens", bodies[s])));
    if (results.some((r) => r.status === "rejected" && r.reason instanceof Superseded)) return;
    const next = { a: null, b: null };
    results.forEach((r, i) => {
      const s = sides[i];
      view.setStale(s, false);
      if (r.status === "fulfilled") { next[s] = Object.assign(r.value, { request: bodies[s] }); view.clearError(s); }
      else view.fail(s, r.reason, lensBody(app, s).model);
    });
    const failed = results.find((r) => r.status === "rejected");
    if (failed && rejectPin(failed.reason)) return;
    view.lens.a = next.a; view.lens.b = next.b;
    drawPins();
    await view.show(next);
  }

  async function exportAs(fmt) {
    const { state } = app;
    try {
      if (fmt === "png") {
        const picture = view.picture();
        if (!picture.grids.length) throw new Error("no grid to export yet");
        await exportPNG(picture, `logitscope-${state.model.replace(/[^A-Za-z0-9._-]/g, "_")}-${state.metric}.png`);
      } else await exportFile(fmt, lensBody(app, "a"), state.metric);
    } catch (err) {
      if (!(err instanceof Superseded)) toast(`export failed: ${err.message}`);
    }
  }

  return { view, run, pin, drawPins, exportAs };
}
