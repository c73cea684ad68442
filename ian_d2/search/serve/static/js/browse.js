// Browse the footage: the sources, the indexed frames of one (a time slider for a video), a frame
// with its detections as clickable boxes, drawing a box to search, and searching with a photo.

import { api, urls, showMessage } from "./api.js";
import { $, el, fmtTime, fmtDuration, placeBox } from "./dom.js";
import { renderBoxes, enableDrawing } from "./frame_view.js";
import { getState, setState } from "./state.js";

const PAGE = 50;
let sources = []; // GET /api/sources
const frameCache = new Map(); // source id -> {total, pages: Map(offset -> frames)}
let shown = null; // {kind: "frame"|"upload", id, width, height, detections}
let upload = null; // the last uploaded image {id, width, height}
let ticket = 0; // drops answers that arrive after a newer request

export const getSources = () => sources;
export const sourceById = (id) => sources.find((s) => s.id === id);

/** A source's name; with the start of its id when another source has the same file name. */
export function sourceLabel(id, name) {
  const same = sources.filter((s) => s.name === name).length;
  return same > 1 ? `${name} ·${id.slice(0, 4)}` : name;
}

/** (Re)load the source list; returns it. */
export async function loadSources() {
  const res = await api("/api/sources");
  sources = res.sources;
  frameCache.clear();
  renderSourceList();
  return sources;
}

function renderSourceList() {
  const { src } = getState();
  const list = $("sources");
  list.replaceChildren(
    ...sources.map((s) =>
      el("li", {},
        el("button", {
          type: "button",
          class: `source ${s.id === src ? "current" : ""}`,
          dataset: { sourceId: s.id },
          title: s.name,
          onclick: () => setState({ src: s.id, fi: 0 }),
        },
        el("span", { class: `kind ${s.kind}` }, s.kind === "video" ? "▶" : "▣"),
        el("span", { class: "name" }, sourceLabel(s.id, s.name)),
        el("span", { class: "muted small", title: `${s.frames} indexed frames, ${s.detections} detections` },
          s.kind === "video" ? `${fmtDuration(s.duration_s)} · ${s.detections} det.` : `${s.detections} det.`))),
    ),
  );
  if (!sources.length) list.append(el("li", { class: "muted" }, "The index holds no footage yet."));
}

async function framesPage(sourceId, offset) {
  let entry = frameCache.get(sourceId);
  if (!entry) frameCache.set(sourceId, (entry = { total: null, pages: new Map() }));
  const start = Math.floor(offset / PAGE) * PAGE;
  if (!entry.pages.has(start)) {
    const res = await api(`/api/sources/${encodeURIComponent(sourceId)}/frames?offset=${start}&limit=${PAGE}`);
    entry.total = res.total;
    entry.pages.set(start, res.frames);
  }
  return { total: entry.total, frame: entry.pages.get(start)[offset - start] };
}

/** Show what the state asks for: a source's frame, else the uploaded image of the query. */
export async function renderBrowse(state) {
  renderSourceList();
  const my = ++ticket;
  if (state.src) {
    const source = sourceById(state.src);
    if (!source) {
      $("frame-panel").hidden = true;
      return;
    }
    let page;
    try {
      page = await framesPage(state.src, Math.min(state.fi, Math.max(0, source.frames - 1)));
    } catch {
      return; // shown by api()
    }
    if (my !== ticket) return;
    const { total, frame } = page;
    if (!frame) {
      $("frame-panel").hidden = true;
      return;
    }
    shown = { kind: "frame", id: frame.id, width: frame.width, height: frame.height, detections: frame.detections };
    const slider = $("frame-slider");
    $("frame-nav").hidden = source.kind !== "video" || total < 2;
    slider.max = String(total - 1);
    slider.value = String(state.fi);
    $("frame-time").textContent = `${fmtTime(frame.time_s)} / ${fmtDuration(source.duration_s)}`;
    const what = source.kind === "video" ? `frame ${frame.frame} · ${fmtTime(frame.time_s)}` : "photo";
    $("frame-title").textContent = `${sourceLabel(source.id, source.name)} · ${what} · ${frame.detections.length} detections`;
    showPicture(urls.frame(frame.id));
  } else {
    const q = state.query;
    if (q && q.upload_id && (!upload || upload.id !== q.upload_id)) upload = { id: q.upload_id, width: null, height: null };
    if (!upload) {
      $("frame-panel").hidden = true;
      shown = null;
      return;
    }
    shown = { kind: "upload", id: upload.id, width: upload.width, height: upload.height, detections: [] };
    $("frame-nav").hidden = true;
    $("frame-title").textContent = "Your photo: drag a box around the person";
    showPicture(urls.upload(upload.id));
  }
  drawOverlays();
}

function showPicture(url) {
  $("frame-panel").hidden = false;
  const img = $("frame-image");
  if (img.getAttribute("src") !== url) img.src = url;
}

/** Detections and the query's box over the shown picture. */
function drawOverlays() {
  if (!shown || !shown.width) return;
  const q = getState().query;
  const layer = $("frame-boxes");
  renderBoxes(layer, shown.detections, shown.width, shown.height, {
    selected: q && q.detection_id,
    onPick: (id) => search({ detection_id: id }),
  });
  const mine = q && ((q.frame_id && q.frame_id === shown.id) || (q.upload_id && q.upload_id === shown.id));
  if (mine) layer.append(placeBox(el("div", { class: "box query" }), q.box, shown.width, shown.height));
}

function search(query) {
  setState({ query, page: 0, open: null }, { push: true });
}

function step(delta) {
  const { src, fi } = getState();
  const source = sourceById(src);
  if (!source) return;
  const next = Math.min(Math.max(fi + delta, 0), source.frames - 1);
  if (next !== fi) setState({ fi: next });
}

async function uploadFile(file) {
  const form = new FormData();
  form.append("file", file);
  try {
    const res = await api("/api/uploads", { method: "POST", body: form });
    upload = { id: res.id, width: res.width, height: res.height };
    setState({ src: null });
    renderBrowse(getState());
    showMessage("Photo uploaded: drag a box around the person to search.", "info");
  } catch {
    /* shown by api() */
  } finally {
    $("upload-input").value = "";
  }
}

export function initBrowse() {
  const img = $("frame-image");
  img.addEventListener("load", () => {
    // an uploaded photo's size may be known only now (after a reload); frames come with theirs
    if (shown && !shown.width) {
      shown.width = img.naturalWidth;
      shown.height = img.naturalHeight;
      if (upload && upload.id === shown.id) Object.assign(upload, { width: shown.width, height: shown.height });
      drawOverlays();
    }
  });
  img.addEventListener("error", () => {
    if (shown && shown.kind === "upload") {
      showMessage("The uploaded photo is gone (the server restarted?): upload it again.");
      upload = null;
      $("frame-panel").hidden = true;
    }
  });
  enableDrawing($("frame-view"), $("draw-box"), () => (shown && shown.width ? shown : null), {
    onPick: (id) => search({ detection_id: id }),
    onDraw: (box) => {
      if (!shown) return;
      search(shown.kind === "upload" ? { upload_id: shown.id, box } : { frame_id: shown.id, box });
    },
  });
  let timer = null;
  $("frame-slider").addEventListener("input", (ev) => {
    clearTimeout(timer);
    const fi = Number(ev.target.value);
    timer = setTimeout(() => setState({ fi }), 80);
  });
  $("frame-prev").addEventListener("click", () => step(-1));
  $("frame-next").addEventListener("click", () => step(1));
  $("upload-input").addEventListener("change", (ev) => ev.target.files[0] && uploadFile(ev.target.files[0]));
}

/** Repaint the overlays after the query changed (the selected / drawn box). */
export const refreshOverlays = drawOverlays;
