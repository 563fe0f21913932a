// Token text for display, as logitscope.render.text does: whitespace made visible.
const SPECIAL = { "\n": "\u23ce", "\t": "\u21e5", "\r": "\\r" };

export function visible(text, space = "\u2423") {
  if (text === null || text === undefined) return "";
  if (text === "") return "\u2205";
  let out = "";
  for (const ch of text) {
    if (ch === " " && space !== null) out += space;
    else if (SPECIAL[ch]) out += SPECIAL[ch];
    else if (/[\u0000-\u001f\u007f]/.test(ch)) out += "\\x" + ch.charCodeAt(0).toString(16).padStart(2, "0");
    else out += ch;
  }
  return out;
}

export function shorten(text, max) {
  const chars = Array.from(text);
  return chars.length <= max ? text : chars.slice(0, Math.max(max - 1, 1)).join("") + "\u2026";
}

export const label = (text, max = 9) => shorten(visible(text), max);

export function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function fmtP(p) {
  if (p === null || p === undefined || Number.isNaN(p)) return "\u2013";
  if (p >= 0.001) return p.toFixed(3);
  if (p === 0) return "0";
  return p.toExponential(1);
}

export function fmtNum(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "\u2013";
  return Number(x).toFixed(digits);
}
