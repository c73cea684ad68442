// Small DOM helpers shared by the views.

/** `el("div", {class: "x", dataset: {id: 1}, onclick: f}, child, "text")` */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

export const $ = (id) => document.getElementById(id);

/** Seconds as m:ss.s (h:mm:ss above an hour); "photo" for a still image. */
export function fmtTime(t) {
  if (t === null || t === undefined || Number.isNaN(t)) return "photo";
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = t % 60;
  const ss = s.toFixed(1).padStart(4, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** A duration as m:ss (h:mm:ss above an hour). */
export function fmtDuration(t) {
  if (t === null || t === undefined || Number.isNaN(t)) return "–";
  const s = Math.round(t);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export const fmtNum = (v, digits = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

/** Position `node` over an image of `width` x `height` pixels at `box` (percent: scales with it). */
export function placeBox(node, box, width, height) {
  const [x1, y1, x2, y2] = box;
  node.style.left = `${(100 * x1) / width}%`;
  node.style.top = `${(100 * y1) / height}%`;
  node.style.width = `${(100 * (x2 - x1)) / width}%`;
  node.style.height = `${(100 * (y2 - y1)) / height}%`;
  return node;
}

/** A CSS-cropped view of `box` of an image URL (no canvas, no extra request). */
export function cropThumb(url, box, width, height, outW = 64, outH = 96) {
  const [x1, y1, x2, y2] = box;
  const scale = Math.min(outW / Math.max(1, x2 - x1), outH / Math.max(1, y2 - y1));
  const w = (x2 - x1) * scale;
  const h = (y2 - y1) * scale;
  return el("div", {
    class: "css-crop",
    style: {
      width: `${w}px`,
      height: `${h}px`,
      backgroundImage: `url("${url}")`,
      backgroundSize: `${width * scale}px ${height * scale}px`,
      backgroundPosition: `${-x1 * scale}px ${-y1 * scale}px`,
    },
  });
}

/** True when a key press belongs to a form field (shortcuts stay out of its way). */
export const typing = (ev) =>
  ev.ctrlKey || ev.metaKey || ev.altKey ||
  ["INPUT", "SELECT", "TEXTAREA"].includes(ev.target.tagName) || ev.target.isContentEditable;

/** Download `text` as a file (a Blob URL; nothing leaves the machine). */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
