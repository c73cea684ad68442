// A picture with boxes over it (absolutely positioned, in percent: they scale with the picture),
// and drawing a new box with the mouse. Used by the browser and by the detail view.

import { el, placeBox, fmtNum } from "./dom.js";

/**
 * Draw `detections` ([{id, box, score}]) of an image of `width` x `height` pixels into `layer`.
 * Smaller boxes go on top, so every box keeps a clickable centre. `onPick(id)`: clickable.
 */
export function renderBoxes(layer, detections, width, height, { selected = null, onPick = null, cls = "" } = {}) {
  layer.replaceChildren();
  const area = (d) => (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]);
  const sorted = [...detections].sort((a, b) => area(b) - area(a));
  for (const d of sorted) {
    const node = el("div", {
      class: `box ${cls} ${d.id === selected ? "selected" : ""} ${onPick ? "pickable" : ""}`,
      dataset: { detectionId: d.id },
      title: d.score !== undefined ? `score ${fmtNum(d.score)}${onPick ? " · click to search" : ""}` : null,
      role: onPick ? "button" : null,
      tabindex: onPick ? "0" : null,
      onkeydown: onPick ? (ev) => ev.key === "Enter" && onPick(d.id) : null,
    });
    layer.append(placeBox(node, d.box, width, height));
  }
}

/**
 * Mouse on `view`: a drag draws a box (`onDraw([x1, y1, x2, y2])` in image pixels), a click on a
 * box picks it (`onPick(id)`). `size()` gives the image's pixel size {width, height} or null.
 */
export function enableDrawing(view, rubber, size, { onDraw, onPick }) {
  let start = null;
  const toImage = (ev) => {
    const r = view.getBoundingClientRect();
    const { width, height } = size();
    const x = Math.min(Math.max(ev.clientX - r.left, 0), r.width);
    const y = Math.min(Math.max(ev.clientY - r.top, 0), r.height);
    return { x: (x / r.width) * width, y: (y / r.height) * height, px: x, py: y };
  };
  const rect = (a, b) => [Math.min(a.x, b.x), Math.min(a.y, b.y), Math.max(a.x, b.x), Math.max(a.y, b.y)];

  view.addEventListener("mousedown", (ev) => {
    if (ev.button !== 0 || !size()) return;
    ev.preventDefault();
    start = { ...toImage(ev), target: ev.target };
  });
  window.addEventListener("mousemove", (ev) => {
    if (!start) return;
    const p = toImage(ev);
    if (Math.abs(p.px - start.px) + Math.abs(p.py - start.py) < 4) return;
    const { width, height } = size();
    rubber.hidden = false;
    placeBox(rubber, rect(start, p), width, height);
  });
  window.addEventListener("mouseup", (ev) => {
    if (!start) return;
    const p = toImage(ev);
    const s = start;
    start = null;
    rubber.hidden = true;
    const dragged = Math.abs(p.px - s.px) >= 4 || Math.abs(p.py - s.py) >= 4;
    if (!dragged) {
      const box = s.target.closest && s.target.closest("[data-detection-id]");
      if (box && onPick) onPick(box.dataset.detectionId);
      return;
    }
    const r = rect(s, p);
    if (r[2] - r[0] < 2 || r[3] - r[1] < 2) return;
    onDraw(r.map((v) => Math.round(v * 10) / 10));
  });
}
