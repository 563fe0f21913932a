// A grid scene (grid.js) and a colour legend painted straight onto a 2D canvas: the PNG export
// draws what the page's SVG shows without rasterizing the SVG (that took seconds on long prompts).
import { FONT, SANS } from "./grid.js";
import { legendParts } from "./colors.js";

const ALIGN = { middle: "center", end: "right" };

function setFont(ctx, { italic, weight, size, family }) {
  const font = `${italic ? "italic " : ""}${weight || 400} ${size}px ${family}`;
  if (ctx.font !== font) ctx.font = font; // parsing a font is the costly part: set it only on a change
}

function box(ctx, x, y, w, h, rx) {
  ctx.beginPath();
  if (rx && ctx.roundRect) ctx.roundRect(x, y, w, h, rx);
  else ctx.rect(x, y, w, h);
}

function paintText(ctx, it) {
  setFont(ctx, it);
  ctx.fillStyle = it.fill;
  ctx.textAlign = ALIGN[it.anchor] || "left";
  ctx.textBaseline = it.central ? "middle" : "alphabetic";
  if (!it.rotate) { ctx.fillText(it.s, it.x, it.y); return; }
  ctx.save();
  ctx.translate(it.x, it.y);
  ctx.rotate((it.rotate * Math.PI) / 180);
  ctx.fillText(it.s, 0, 0);
  ctx.restore();
}

// Paint `scene` with its top-left corner at (x0, y0).
export function paintScene(ctx, scene, x0, y0) {
  ctx.save();
  ctx.translate(x0, y0);
  for (const it of scene.items) {
    if (it.kind === "text") { paintText(ctx, it); continue; }
    if (it.kind === "cell") {
      ctx.fillStyle = it.bg;
      box(ctx, it.x, it.y, it.w, it.h, 2);
      ctx.fill();
      paintText(ctx, { x: it.x + it.w / 2, y: it.y + it.h / 2 + 0.75, s: it.s, family: FONT, size: 11.5, fill: it.fg, weight: it.bold ? 700 : 400, anchor: "middle", central: true });
      continue;
    }
    box(ctx, it.x, it.y, it.w, it.h, it.rx);
    if (it.fill !== "none") { ctx.fillStyle = it.fill; ctx.fill(); }
    if (it.stroke) {
      ctx.strokeStyle = it.stroke;
      ctx.lineWidth = it.lineWidth;
      ctx.setLineDash(it.dash || []);
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }
  ctx.restore();
}

export const LEGEND_H = 22;

// The colour legend (low value, bar, high value, metric name) on one line from (x, y); returns its width.
export function paintLegend(ctx, spec, limits, x, y) {
  const [lo, hi, name] = legendParts(spec, limits);
  const mid = y + LEGEND_H / 2, barW = 160, barH = 10;
  setFont(ctx, { size: 11, family: SANS });
  ctx.fillStyle = "#4a5263";
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  ctx.fillText(lo, x, mid);
  let at = x + ctx.measureText(lo).width + 8;
  const grad = ctx.createLinearGradient(at, 0, at + barW, 0);
  for (const [t, c] of spec.colorscale) grad.addColorStop(t, c);
  ctx.fillStyle = grad;
  box(ctx, at, mid - barH / 2, barW, barH, 2);
  ctx.fill();
  at += barW + 8;
  ctx.fillStyle = "#4a5263";
  ctx.fillText(hi, at, mid);
  at += ctx.measureText(hi).width + 12;
  ctx.fillStyle = "#6b7385";
  ctx.fillText(name, at, mid);
  return at + ctx.measureText(name).width - x;
}
