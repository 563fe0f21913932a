// logitscope serve: the page. State lives in the URL hash; every request goes through api.js,
// where a newer request on the same channel supersedes an older one. inputs.js wires the input
// card, viewer.js the lens tab (a lens view mounted into #tab-lens), tabs.js the other tabs.
import { getJSON, onBusy } from "./api.js";
import { $, el } from "./dom.js";
import { applyKind, bindInputs, clampNumbers, EXAMPLES, syncInputs } from "./inputs.js";
import { DEFAULTS, readURL, writeURL } from "./state.js";
import { runEmbed, runLogits } from "./tabs.js";
import { mountViewerLens } from "./viewer.js";

const app = {
  meta: null,
  state: readURL(),
  lens: null,
  model(name) { return app.meta.models.find((m) => m.name === name); },
  save(patch = {}) { Object.assign(app.state, patch); writeURL(app.state); },
  runTab() {
    app.save();
    if (app.state.tab === "lens") app.lens.run();
    else if (app.state.tab === "logits") runLogits(app.state, app.save);
    else runEmbed(app.state);
  },
};

function fillDefaults() {
  const { state, meta } = app;
  if (!app.model(state.model)) state.model = meta.models[0].name;
  if (state.modelB && !app.model(state.modelB)) state.modelB = "";
  if (!meta.metrics[state.metric]) state.metric = DEFAULTS.metric;
  clampNumbers(app);
  const m = app.model(state.model);
  if (!state.text) state.text = m.kind === "masked" ? EXAMPLES.masked(m.mask_token) : EXAMPLES[m.kind] || "";
}

async function init() {
  app.meta = await getJSON("/api/models");
  for (const id of ["model", "model-b"]) {
    $(id).replaceChildren(...app.meta.models.map((m) => el("option", { value: m.name }, m.name)));
  }
  app.lens = mountViewerLens(app);
  fillDefaults();
  applyKind(app);
  syncInputs(app);
  onBusy((n) => { $("busy").hidden = n === 0; });
  bindInputs(app);
  app.runTab();
  window.addEventListener("hashchange", () => { // a link pasted into the address bar of an open page
    Object.assign(app.state, readURL()); // the lens view holds this same state object
    fillDefaults();
    applyKind(app);
    syncInputs(app);
    app.runTab();
  });
}

init().catch((err) => { document.body.prepend(el("div", { class: "error" }, `logitscope could not start: ${err.message}`)); });
