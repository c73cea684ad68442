// An opened result: its frame with the box, for a video the player seeked to the hit's time,
// "find similar", same / not-same marks and the export of the confirmed ones.

import { api, urls } from "./api.js";
import { $, el, fmtTime, fmtNum, typing } from "./dom.js";
import { renderBoxes } from "./frame_view.js";
import { sourceLabel } from "./browse.js";
import { hitById } from "./results.js";
import { markOf, onMarks, toggleMark, confirmed, exportJson, exportCsv, clearMarks } from "./marks.js";
import { getState, setState } from "./state.js";

let current = null; // the opened hit (a search hit, or GET /api/detections/{id} + kind)
let ticket = 0;

/** The hit with this detection id: from the results page, else asked from the server. */
async function fetchHit(id) {
  const hit = hitById(id);
  if (hit) return hit;
  const d = await api(`/api/detections/${encodeURIComponent(id)}`);
  return {
    detection_id: d.id,
    source_id: d.source_id,
    source: d.source,
    kind: d.time_s === null || d.time_s === undefined ? "image" : "video",
    frame_id: d.frame_id,
    frame: d.frame,
    time_s: d.time_s,
    box: d.box,
    score: d.score,
    similarity: null,
    rank: null,
  };
}

/** Show the state's opened result (or hide the panel). */
export async function renderDetail(state) {
  const panel = $("detail");
  const my = ++ticket;
  if (!state.open) {
    current = null;
    panel.hidden = true;
    document.body.classList.remove("detail-open");
    pauseVideo();
    return;
  }
  let hit;
  try {
    hit = await fetchHit(state.open);
  } catch {
    if (my === ticket) setState({ open: null });
    return;
  }
  if (my !== ticket) return;
  const same = current && current.detection_id === hit.detection_id;
  current = hit;
  panel.hidden = false;
  panel.dataset.detectionId = hit.detection_id;
  document.body.classList.add("detail-open");
  $("detail-title").textContent = sourceLabel(hit.source_id, hit.source);
  renderMeta(hit);
  renderMarks();
  if (!same) {
    showFrame(hit);
    showVideo(hit);
  }
}

function renderMeta(hit) {
  const item = (label, value, cls = "") => el("span", { class: `meta-item ${cls}` }, el("span", { class: "muted" }, label), value);
  const video = hit.kind === "video";
  $("detail-meta").replaceChildren(
    el("div", { class: "meta-line" },
      item("time", video ? fmtTime(hit.time_s) : "photo", "mono"),
      video && hit.frame !== null && hit.frame !== undefined ? item("frame", String(hit.frame), "mono") : null,
      hit.similarity !== null ? item("similarity", fmtNum(hit.similarity, 3), "mono detail-sim") : null,
      item("score", fmtNum(hit.score), "mono"),
      hit.rank ? item("rank", `#${hit.rank}`, "mono") : null),
    el("div", { class: "meta-line small muted mono", title: "detection id · box x1, y1, x2, y2 (pixels)" },
      `${hit.detection_id} · box ${hit.box.map((v) => Math.round(v)).join(", ")}`));
}

function showFrame(hit) {
  const img = $("detail-image");
  const layer = $("detail-boxes");
  layer.replaceChildren();
  // The frame's size comes with the image; the box is placed once it is known.
  const draw = () =>
    renderBoxes(layer, [{ id: hit.detection_id, box: hit.box }], img.naturalWidth, img.naturalHeight, { selected: hit.detection_id });
  const url = urls.frame(hit.frame_id);
  if (img.getAttribute("src") === url && img.complete && img.naturalWidth) {
    img.onload = null;
    draw();
  } else {
    img.onload = draw;
    img.src = url;
  }
}

function pauseVideo() {
  const video = $("detail-video");
  if (!video.paused) video.pause();
}

/** Seek the player to the hit's time once the video's metadata is known. */
function showVideo(hit) {
  const video = $("detail-video");
  if (hit.kind !== "video") {
    pauseVideo();
    video.hidden = true;
    video.removeAttribute("src");
    video.load();
    return;
  }
  video.hidden = false;
  const t = hit.time_s || 0;
  video.dataset.targetTime = String(t);
  const seek = () => {
    if (Number(video.dataset.targetTime) !== t) return;
    pauseVideo();
    video.currentTime = Math.min(t, Number.isFinite(video.duration) ? video.duration : t);
  };
  const src = urls.video(hit.source_id);
  if (video.getAttribute("src") !== src) {
    video.addEventListener("loadedmetadata", seek, { once: true });
    video.src = src;
    video.load();
  } else if (video.readyState >= 1) seek();
  else video.addEventListener("loadedmetadata", seek, { once: true });
}

function renderMarks() {
  const mark = current ? markOf(current.detection_id) : null;
  $("mark-same").classList.toggle("active", mark === "same");
  $("mark-not").classList.toggle("active", mark === "not");
  $("mark-same").setAttribute("aria-pressed", String(mark === "same"));
  $("mark-not").setAttribute("aria-pressed", String(mark === "not"));
  const n = confirmed().length;
  $("confirmed-count").textContent = `${n} confirmed`;
  $("export-json").disabled = !n;
  $("export-csv").disabled = !n;
  $("clear-marks").disabled = !n && !document.querySelector(".card.marked-not");
}

function findSimilar() {
  if (current) setState({ query: { detection_id: current.detection_id }, page: 0, open: null }, { push: true });
}

export function initDetail() {
  $("detail-close").addEventListener("click", () => setState({ open: null }));
  $("detail-similar").addEventListener("click", findSimilar);
  $("mark-same").addEventListener("click", () => current && toggleMark(current, "same"));
  $("mark-not").addEventListener("click", () => current && toggleMark(current, "not"));
  $("export-json").addEventListener("click", exportJson);
  $("export-csv").addEventListener("click", exportCsv);
  $("clear-marks").addEventListener("click", () => {
    if (confirm("Forget every same / not-same mark?")) clearMarks();
  });
  onMarks(renderMarks);
  document.addEventListener("keydown", (ev) => {
    if (typing(ev) || !current || document.querySelector("dialog[open]")) return;
    if (ev.key === "Escape") setState({ open: null });
    else if (ev.key === "s") toggleMark(current, "same");
    else if (ev.key === "x") toggleMark(current, "not");
    else if (ev.key === "f") findSimilar();
  });
}
