// Small plotly charts (plotly.js is served from the installed plotly wheel, never a CDN).
import { lineChart } from "./lines.js";
import { visible } from "./text.js";

export const PALETTE = ["#4f46e5", "#e8590c", "#0f9d58", "#d6336c", "#1c7ed6", "#f59f00", "#7048e8", "#0ca678"];
const CONFIG = { displayModeBar: false, responsive: true };
const FONT = { family: "system-ui, DejaVu Sans, Arial, sans-serif", size: 11.5, color: "#1d2330" };

function base(extra = {}) {
  return {
    margin: { l: 48, r: 12, t: 10, b: 40 },
    font: FONT,
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#ffffff",
    hoverlabel: { font: { family: "ui-monospace, DejaVu Sans Mono, monospace" } },
    legend: { orientation: "h", y: -0.22, x: 0, font: { family: "ui-monospace, DejaVu Sans Mono, monospace", size: 11 } },
    ...extra,
  };
}

const ready = () => typeof window.Plotly !== "undefined";

// Probability (or rank) of some tokens at every layer of one position.
// series: [{token, values, color, pinned}], layerNames: x categories, mode: "prob" | "rank".
export function trajectoryChart(node, layerNames, series, mode, selectedLayer) {
  const blocks = layerNames.filter((n) => !n.includes(".")); // sub-layer points sit between, unlabelled
  if (!ready()) {
    lineChart(node, {
      x: layerNames, ticks: blocks, vline: selectedLayer, log: mode === "rank", reversed: mode === "rank",
      range: mode === "rank" ? null : [0, 1.02], xTitle: "layer", yTitle: mode === "rank" ? "rank (1 = top)" : "probability",
      series: series.map((s) => ({
        name: visible(s.token), color: s.color, width: s.pinned ? 2.6 : 1.4, dash: !s.pinned,
        y: s.values.map((v) => (v === null ? null : mode === "rank" ? v + 1 : v)),
      })),
    });
    return;
  }
  const traces = series.map((s) => ({
    x: layerNames,
    y: mode === "rank" ? s.values.map((r) => r + 1) : s.values,
    name: visible(s.token),
    type: "scatter",
    mode: "lines+markers",
    line: { color: s.color, width: s.pinned ? 2.6 : 1.4, dash: s.pinned ? "solid" : "dot" },
    marker: { size: s.pinned ? 6 : 4 },
    hovertemplate: `${visible(s.token).replace(/%/g, "%%")} · layer %{x}: ${mode === "rank" ? "rank %{y}" : "p=%{y:.4f}"}<extra></extra>`,
  }));
  const layout = base({
    xaxis: {
      type: "category", title: { text: "layer", standoff: 4 }, gridcolor: "#f0f1f4", tickfont: { size: 10 },
      tickvals: blocks, ticktext: blocks, tickangle: 0,
    },
    yaxis:
      mode === "rank"
        ? { type: "log", autorange: "reversed", title: { text: "rank (1 = top)", standoff: 2 }, gridcolor: "#eceef2" }
        : { range: [0, 1.02], title: { text: "probability", standoff: 2 }, gridcolor: "#eceef2" },
    shapes:
      selectedLayer !== null && selectedLayer !== undefined
        ? [{ type: "line", x0: selectedLayer, x1: selectedLayer, y0: 0, y1: 1, yref: "paper", line: { color: "#9aa1b0", dash: "dot", width: 1 } }]
        : [],
    showlegend: true,
  });
  window.Plotly.react(node, traces, layout, CONFIG);
}

// Per-layer KL between two sides of a comparison.
export function klChart(node, cmp) {
  const a = cmp.a, b = cmp.b;
  const x = cmp.pairs.map(([la]) => a.layer_names[la]);
  if (!ready()) {
    lineChart(node, {
      x, xTitle: cmp.alignment === "identity" ? "layer" : "layer of A (B aligned by fraction of depth)", yTitle: "KL (nats)",
      series: [{ name: "KL(A \u2016 B)", y: cmp.kl_ab, color: PALETTE[0], width: 2.4 }, { name: "KL(B \u2016 A)", y: cmp.kl_ba, color: PALETTE[1], width: 2.4 }].filter((s) => s.y),
    });
    return;
  }
  const hover = cmp.pairs.map(([la, lb]) => `A ${a.layer_names[la]} (${visible(a.top1_tokens[la])}) vs B ${b.layer_names[lb]} (${visible(b.top1_tokens[lb])})`);
  const trace = (y, name, color) => ({
    x, y, name, type: "scatter", mode: "lines+markers", line: { color, width: 2.4 }, marker: { size: 6 },
    customdata: hover, hovertemplate: "%{customdata}<br>" + name + " = %{y:.4f} nats<extra></extra>",
  });
  const layout = base({
    xaxis: { type: "category", title: { text: cmp.alignment === "identity" ? "layer" : "layer of A (B aligned by fraction of depth)", standoff: 4 }, gridcolor: "#f0f1f4" },
    yaxis: { title: { text: "KL (nats)", standoff: 2 }, rangemode: "tozero", gridcolor: "#eceef2" },
    legend: { orientation: "h", y: 1.12, x: 0 },
    margin: { l: 52, r: 12, t: 26, b: 44 },
  });
  const traces = [trace(cmp.kl_ab, "KL(A \u2016 B)", PALETTE[0])];
  if (cmp.kl_ba) traces.push(trace(cmp.kl_ba, "KL(B \u2016 A)", PALETTE[1]));
  window.Plotly.react(node, traces, layout, CONFIG);
}

// Horizontal bars of the top-k probabilities of one row of the logits tab.
export function barsChart(node, tokens, probs, title) {
  if (!ready()) return;
  const labels = tokens.map((t, i) => `${i + 1}. ${visible(t)}`).reverse();
  const trace = {
    type: "bar", orientation: "h", x: [...probs].reverse(), y: labels,
    marker: { color: "#818cf8" }, text: [...probs].reverse().map((p) => p.toFixed(3)), textposition: "outside",
    hovertemplate: "%{y}: %{x:.4f}<extra></extra>", cliponaxis: false,
  };
  const layout = base({
    margin: { l: 120, r: 40, t: 30, b: 36 },
    title: { text: title, font: { size: 12.5 }, x: 0, xref: "paper", xanchor: "left" },
    xaxis: { range: [0, Math.min(1, Math.max(...probs) * 1.2 + 0.02)], title: { text: "probability" }, gridcolor: "#eceef2" },
    yaxis: { tickfont: { family: "ui-monospace, DejaVu Sans Mono, monospace", size: 12 }, automargin: true },
  });
  window.Plotly.react(node, [trace], layout, CONFIG);
}
