// Downloads of the current view: JSON / CSV / HTML from the server (what the CLI writes), PNG of the grid(s).
import { post } from "./api.js";
import { SANS } from "./grid.js";
import { LEGEND_H, paintLegend, paintScene } from "./paint.js";

export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

export async function exportFile(format, lensBody, metric) {
  const blob = await post("export", "/api/export", { ...lensBody, format, metric }, { asFile: true });
  const stem = `logitscope-${lensBody.model.replace(/[^A-Za-z0-9._-]/g, "_")}`;
  download(blob, format === "html" ? `${stem}-${metric}.html` : `${stem}.${format}`);
}

// The PNG of a canvas. Chromium's asynchronous encoders (toBlob, convertToBlob) wait for the page to
// go idle first, up to 1 s after a click; below 4M pixels the synchronous toDataURL is done sooner.
async function encodePNG(canvas) {
  if (canvas.width * canvas.height > 4e6 || !canvas.toDataURL) {
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    if (!blob) throw new Error("the browser could not encode the image");
    return blob;
  }
  const bytes = atob(canvas.toDataURL("image/png").split(",")[1]);
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes.charCodeAt(i);
  return new Blob([out], { type: "image/png" });
}

// The grid(s) (A, and B in compare mode) stacked into one PNG, each under its title, with the shared
// colour legend at the bottom: picture = {grids: [{scene, title, sub}], legend: {spec, limits}} (lensview.js).
// Painted straight onto the canvas (paint.js) at 2x, less where that passes 16M pixels (a long prompt: allocating,
// filling and encoding a canvas costs time by the pixel) or the browser's 32k-pixel side.
export async function exportPNG(picture, name) {
  const pad = 16, titleH = 22;
  const { grids, legend } = picture;
  const width = Math.max(...grids.map((g) => g.scene.width), 420) + 2 * pad;
  const height = grids.reduce((h, g) => h + titleH + g.scene.height + pad, pad) + (legend ? LEGEND_H + pad : 0);
  const scale = Math.min(2, 32000 / width, 32000 / height, Math.sqrt(16e6 / (width * height)));
  const canvas = Object.assign(document.createElement("canvas"), { width: Math.round(width * scale), height: Math.round(height * scale) });
  const ctx = canvas.getContext("2d");
  ctx.scale(scale, scale);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, width, height);
  let y = pad;
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  for (const { scene, title, sub } of grids) {
    ctx.font = `600 13px ${SANS}`;
    ctx.fillStyle = "#1d2330";
    ctx.fillText(title, pad, y + titleH / 2 - 2);
    const at = pad + ctx.measureText(title).width + 10;
    ctx.font = `400 12px ${SANS}`;
    ctx.fillStyle = "#6b7385";
    ctx.fillText(sub || "", at, y + titleH / 2 - 2);
    y += titleH;
    paintScene(ctx, scene, pad, y);
    y += scene.height + pad;
  }
  if (legend) paintLegend(ctx, legend.spec, legend.limits, pad + 62, y);
  download(await encodePNG(canvas), name);
}
