// Downloads of the current view: JSON / CSV / HTML from the server (what the CLI writes), PNG of the grid(s).
import { post } from "./api.js";

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

// The grid SVGs (A, and B in compare mode) stacked into one PNG at 2x.
export async function exportPNG(svgs, name) {
  const scale = 2, pad = 16;
  const sizes = svgs.map((s) => [Number(s.getAttribute("width")), Number(s.getAttribute("height"))]);
  const width = Math.max(...sizes.map((s) => s[0])) + 2 * pad;
  const height = sizes.reduce((h, s) => h + s[1] + pad, pad);
  const canvas = Object.assign(document.createElement("canvas"), { width: width * scale, height: height * scale });
  const ctx = canvas.getContext("2d");
  ctx.scale(scale, scale);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, width, height);
  let y = pad;
  for (const [i, svg] of svgs.entries()) {
    const text = new XMLSerializer().serializeToString(svg);
    const img = new Image();
    const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
    await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = url; });
    ctx.drawImage(img, pad, y, sizes[i][0], sizes[i][1]);
    URL.revokeObjectURL(url);
    y += sizes[i][1] + pad;
  }
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  download(blob, name);
}
