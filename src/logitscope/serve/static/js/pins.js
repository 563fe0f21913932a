// Pinned tokens as chips (one colour each, as in the trajectory chart), with an unpin button.
import { PALETTE } from "./charts.js";
import { el } from "./dom.js";
import { visible } from "./text.js";

// box: the chips' container; pins: strings or ids; names: display strings of the pinned ids.
export function renderPins(box, pins, names, onUnpin) {
  box.replaceChildren(...pins.map((pin, i) => {
    const color = PALETTE[i % PALETTE.length];
    return el("span", { class: "chip", style: `border-color:${color}` },
      el("span", { class: "dot", style: `background:${color}` }),
      visible(typeof pin === "number" ? names[i] ?? `#${pin}` : pin),
      el("button", { title: "unpin", "aria-label": "unpin", onclick: () => onUnpin(i) }, "\u00d7"));
  }));
}
