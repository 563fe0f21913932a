// The lens workspace's markup: grid cards A and B, the per-layer KL card, the cell panel and a
// tooltip. One template for the viewer page and the notebook widget; parts are found with
// part(root, name). With ids (the viewer page, one workspace per document) each part also gets
// id=name, so links, styles and tests can name them.

const TEMPLATE = `
<div class="workspace" data-part="workspace">
  <div class="card grid-card card-a" data-part="card-a">
    <div class="card-head">
      <div class="title" data-part="title-a">Logit lens</div>
      <div class="legend" data-part="legend-a"></div>
      <div class="exports" data-part="head-extra"></div>
    </div>
    <div class="source" data-part="source-a" hidden></div>
    <div class="error" data-part="error-a" hidden></div>
    <div class="grid-scroll"><div class="grid" data-part="grid-a"></div></div>
  </div>
  <div class="card grid-card card-b" data-part="card-b" hidden>
    <div class="card-head">
      <div class="title" data-part="title-b">B</div>
      <div class="legend" data-part="legend-b"></div>
    </div>
    <div class="source" data-part="source-b" hidden></div>
    <div class="error" data-part="error-b" hidden></div>
    <div class="grid-scroll"><div class="grid" data-part="grid-b"></div></div>
  </div>
  <div class="card kl-card" data-part="kl-card" hidden>
    <div class="card-head"><div class="title" data-part="kl-title">KL between A and B by layer</div></div>
    <div class="error" data-part="error-kl" hidden></div>
    <div class="chart" data-part="kl-chart"></div>
    <div class="hint kl-note" data-part="kl-note"></div>
  </div>
  <aside class="card panel" data-part="panel">
    <div class="panel-empty" data-part="panel-empty">Click a cell (or move with the arrow keys) to see its top tokens.</div>
    <div data-part="panel-body" hidden>
      <div class="panel-head">
        <div class="cell-title" data-part="cell-title"></div>
        <div class="stats" data-part="cell-stats"></div>
      </div>
      <div class="topk-head"><span>top-k at this layer</span><span class="sub" data-part="rank-note">rank change vs layer below</span></div>
      <ol class="topk" data-part="topk-list"></ol>
      <div class="traj-head">
        <span data-part="traj-title">trajectory across layers</span>
        <div class="seg small" data-part="traj-mode">
          <button data-v="prob" class="active">prob</button>
          <button data-v="rank">rank</button>
        </div>
      </div>
      <div class="chart small" data-part="traj-chart"></div>
    </div>
  </aside>
</div>
<div class="tooltip" data-part="tooltip" hidden></div>`;

// Fill root with the workspace; returns part(name) for it.
export function buildWorkspace(root, { ids = false } = {}) {
  root.innerHTML = TEMPLATE;
  if (ids) for (const node of root.querySelectorAll("[data-part]")) node.id = node.dataset.part;
  const cache = new Map();
  return (name) => {
    if (!cache.has(name)) cache.set(name, root.querySelector(`[data-part="${name}"]`));
    return cache.get(name);
  };
}
