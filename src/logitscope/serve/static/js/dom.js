// DOM helpers shared by every module: one `$`, element building, parts of a mounted view.

// The element with this id in the page (the viewer's own controls only; mounted views use `part`).
export const $ = (id) => document.getElementById(id);

// The element marked data-part=name inside root (a mounted view never looks outside its root).
export const part = (root, name) => root.querySelector(`[data-part="${name}"]`);

// An element from a tag, attributes and children (strings become text nodes).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

// Mark the button of a segmented control whose data-<key> equals value.
export function setSeg(seg, key, value) {
  for (const b of seg.querySelectorAll("button")) b.classList.toggle("active", b.dataset[key] === value);
}

// Wire a segmented control: a click on an enabled button calls onPick(value) (after marking it).
export function bindSeg(seg, key, onPick) {
  for (const b of seg.querySelectorAll("button")) {
    b.addEventListener("click", () => {
      if (b.disabled) return;
      setSeg(seg, key, b.dataset[key]);
      onPick(b.dataset[key]);
    });
  }
}

// A short message at the bottom of the window (inside `root`, so a mounted view's styles apply).
export function toast(message, root = document.body) {
  let t = root.querySelector(":scope > .toast");
  if (!t) { t = el("div", { class: "toast", hidden: true }); if (root === document.body) t.id = "toast"; root.append(t); }
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 2200);
}

// An error box: shows err.message, or hides itself for null.
export function showError(box, err) {
  box.textContent = err ? err.message : "";
  box.hidden = !err;
}
