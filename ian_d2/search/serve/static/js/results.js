// The results of a query: the query, the filters, a grid of crops (similarity, source, time),
// paging, an explicit empty state, and ← / → to step through them.

import { api, urls } from "./api.js";
import { $, el, fmtTime, fmtNum, cropThumb, typing } from "./dom.js";
import { getSources, sourceLabel } from "./browse.js";
import { markOf, onMarks } from "./marks.js";
import { getState, setState, searchBody, DEFAULTS } from "./state.js";

let hits = [];
let total = 0;
let ticket = 0;
let lastRes = null; // the last answer, to redraw the grid when a mark changes
let pendingOpen = null; // "first" | "last": open that hit once the next page has arrived
const hitListeners = [];

export const getHits = () => hits;
export const hitById = (id) => hits.find((h) => h.detection_id === id) || null;
/** Called with the hits after each search. */
export const onHits = (fn) => hitListeners.push(fn);

const filtersActive = (s) =>
  s.sources.length > 0 || [s.time_min, s.time_max, s.min_score, s.min_similarity].some((v) => v !== null);

/** Run the state's search and draw the grid. */
export async function runSearch(state) {
  renderQuery(state);
  const my = ++ticket;
  if (!state.query) {
    hits = [];
    total = 0;
    lastRes = null;
    renderGrid(state, null);
    return;
  }
  $("results").setAttribute("aria-busy", "true");
  let res;
  try {
    res = await api("/api/search", { method: "POST", body: searchBody(state) });
  } catch (e) {
    if (my === ticket) {
      hits = [];
      total = 0;
      renderGrid(state, null, e.message);
    }
    return;
  } finally {
    if (my === ticket) $("results").removeAttribute("aria-busy");
  }
  if (my !== ticket) return;
  hits = res.hits;
  total = res.total;
  lastRes = res;
  renderGrid(state, res);
  for (const fn of hitListeners) fn(hits);
  if (pendingOpen && hits.length) {
    const hit = pendingOpen === "first" ? hits[0] : hits[hits.length - 1];
    pendingOpen = null;
    setState({ open: hit.detection_id });
  }
}

function renderQuery(state) {
  const q = state.query;
  const thumb = $("query-thumb");
  const text = $("query-text");
  thumb.replaceChildren();
  if (!q) {
    text.textContent = "No query yet.";
    return;
  }
  if (q.detection_id) {
    thumb.append(el("img", { src: urls.crop(q.detection_id), alt: "query" }));
    text.replaceChildren(el("strong", {}, "Query "), el("span", { class: "mono" }, q.detection_id));
    api(`/api/detections/${encodeURIComponent(q.detection_id)}`, { quiet: true })
      .then((d) => {
        if (getState().query === q)
          text.replaceChildren(el("strong", {}, "Query "), `${d.source} · ${fmtTime(d.time_s)}`,
            el("span", { class: "muted mono small" }, ` ${d.id}`));
      })
      .catch(() => {});
  } else if (q.frame_id) {
    api(`/api/frames/${encodeURIComponent(q.frame_id)}`, { quiet: true })
      .then((f) => {
        if (getState().query !== q) return;
        thumb.replaceChildren(cropThumb(urls.frame(f.id), q.box, f.width, f.height));
        text.replaceChildren(el("strong", {}, "Query "), `box drawn on ${f.source} · ${fmtTime(f.time_s)}`);
      })
      .catch(() => (text.textContent = "Query: a box on a frame that is no longer indexed"));
  } else if (q.upload_id) {
    const img = new Image();
    img.onload = () => {
      if (getState().query === q) thumb.replaceChildren(cropThumb(img.src, q.box, img.naturalWidth, img.naturalHeight));
    };
    img.src = urls.upload(q.upload_id);
    text.replaceChildren(el("strong", {}, "Query "), "box drawn on your photo");
  }
}

function card(hit, open) {
  const mark = markOf(hit.detection_id);
  return el("article", {
    class: `card ${open ? "open" : ""} ${mark ? `marked-${mark}` : ""}`,
    dataset: { detectionId: hit.detection_id, rank: hit.rank },
    tabindex: "-1",
    title: `${hit.source} · ${fmtTime(hit.time_s)} · score ${fmtNum(hit.score)}`,
    onclick: () => setState({ open: hit.detection_id }, { push: !getState().open }),
  },
  el("div", { class: "crop" },
    el("img", { src: urls.crop(hit.detection_id), alt: "", loading: "lazy" }),
    mark ? el("span", { class: `badge ${mark}` }, mark === "same" ? "✓" : "✗") : null),
  el("div", { class: "card-line" },
    el("span", { class: "rank" }, `#${hit.rank}`),
    el("span", { class: "sim", title: "cosine similarity to the query" }, fmtNum(hit.similarity))),
  el("div", { class: "card-line small" },
    el("span", { class: "src" }, sourceLabel(hit.source_id, hit.source)),
    el("span", { class: "time mono" }, fmtTime(hit.time_s))),
  hit.track && hit.track.tracked
    ? el("div", { class: "card-line small", title: "the track: first and last time, detections" },
      el("span", { class: "track mono" },
        `${fmtTime(hit.track.first_time_s)}–${fmtTime(hit.track.last_time_s)} · ${hit.track.num_detections} det`))
    : null);
}

function renderGrid(state, res, error = null) {
  const grid = $("results");
  grid.replaceChildren(...hits.map((h) => card(h, h.detection_id === state.open)));
  const empty = $("empty-state");
  empty.replaceChildren();
  delete empty.dataset.reason;
  empty.hidden = hits.length > 0;
  if (!state.query) {
    empty.append(el("p", {}, "Pick a person: open a source on the left and click a box, drag a box on the picture, or search with a photo."));
  } else if (error) {
    empty.append(el("p", {}, `The search failed: ${error}`));
  } else if (!hits.length && total > 0) {
    empty.append(el("p", {}, "No result on this page."), el("button", { type: "button", onclick: () => setState({ page: 0 }) }, "First page"));
  } else if (!hits.length && filtersActive(state)) {
    empty.dataset.reason = "filters";
    empty.append(el("p", { class: "empty-title" }, "No result passes these filters."),
      el("button", { type: "button", onclick: clearFilters }, "Clear filters"));
  } else if (!hits.length) {
    empty.append(el("p", {}, "No result: the index holds no detection."));
  }
  const status = $("results-status");
  if (res) {
    const t = res.timings || {};
    const ms = (t.embed_ms || 0) + (t.search_ms || 0);
    status.textContent = total
      ? `${total} result${total === 1 ? "" : "s"}${state.group === "source_window" ? ` (one per source within ${state.window_s} s)` : state.group === "tracks" ? " (one per track)" : ""} · ${ms < 1 ? "<1" : ms.toFixed(0)} ms`
      : "";
  } else status.textContent = "";
  const pages = Math.ceil(total / state.top_k);
  $("pager").hidden = pages <= 1;
  $("page-info").textContent = total ? `${state.page * state.top_k + 1}–${state.page * state.top_k + hits.length} of ${total}` : "";
  $("page-prev").disabled = state.page <= 0;
  $("page-next").disabled = state.page >= pages - 1;
}

/** Highlight the opened card (no new search). */
export function markOpen(state) {
  for (const node of $("results").children) {
    const open = node.dataset.detectionId === state.open;
    node.classList.toggle("open", open);
    if (open) node.scrollIntoView({ block: "nearest" });
  }
}

function clearFilters() {
  setState({ sources: [], time_min: null, time_max: null, min_score: null, min_similarity: null, page: 0 });
}

/** Open the previous (-1) or next (+1) result; crosses pages. */
export function stepResult(delta) {
  const state = getState();
  if (!hits.length) return;
  const i = hits.findIndex((h) => h.detection_id === state.open);
  const j = i < 0 ? (delta > 0 ? 0 : hits.length - 1) : i + delta;
  if (j >= 0 && j < hits.length) {
    setState({ open: hits[j].detection_id }, { push: !state.open });
  } else if (j < 0 && state.page > 0) {
    pendingOpen = "last";
    setState({ page: state.page - 1 });
  } else if (j >= hits.length && (state.page + 1) * state.top_k < total) {
    pendingOpen = "first";
    setState({ page: state.page + 1 });
  }
}

/** Put the state's filters into the form. */
export function renderFilters(state) {
  const box = $("filter-sources");
  const legend = box.querySelector("legend");
  const ids = getSources().map((s) => s.id);
  const shown = [...box.querySelectorAll("input")].map((i) => i.value);
  if (JSON.stringify(ids) !== JSON.stringify(shown)) {
    box.replaceChildren(legend,
      ...getSources().map((s) =>
        el("label", { class: "chip", title: s.name },
          el("input", { type: "checkbox", value: s.id, dataset: { sourceId: s.id } }),
          sourceLabel(s.id, s.name))));
  }
  for (const input of box.querySelectorAll("input")) input.checked = state.sources.includes(input.value);
  legend.textContent = state.sources.length ? `Sources (${state.sources.length})` : "Sources (all)";
  const put = (id, v) => {
    const node = $(id);
    if (document.activeElement !== node) node.value = v === null || v === undefined ? "" : String(v);
  };
  put("f-time-min", state.time_min);
  put("f-time-max", state.time_max);
  put("f-min-score", state.min_score);
  put("f-min-sim", state.min_similarity);
  put("f-group", state.group);
  put("f-window", state.window_s);
  put("f-top-k", state.top_k);
  if (![...$("f-top-k").options].some((o) => o.value === String(state.top_k)))
    $("f-top-k").append(el("option", { value: state.top_k, selected: true }, String(state.top_k)));
  $("f-window-label").hidden = state.group !== "source_window";
}

function readFilters() {
  const n = (id) => {
    const v = $(id).value.trim();
    return v === "" || !isFinite(Number(v)) ? null : Number(v);
  };
  return {
    sources: [...$("filter-sources").querySelectorAll("input:checked")].map((i) => i.value),
    time_min: n("f-time-min"),
    time_max: n("f-time-max"),
    min_score: n("f-min-score"),
    min_similarity: n("f-min-sim"),
    group: $("f-group").value,
    window_s: n("f-window") ?? DEFAULTS.window_s,
    top_k: Number($("f-top-k").value),
    page: 0,
  };
}

export function initResults() {
  const form = $("filters");
  form.addEventListener("change", () => setState(readFilters()));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setState(readFilters());
  });
  $("f-clear").addEventListener("click", clearFilters);
  $("page-prev").addEventListener("click", () => setState({ page: Math.max(0, getState().page - 1) }));
  $("page-next").addEventListener("click", () => setState({ page: getState().page + 1 }));
  document.addEventListener("keydown", (ev) => {
    if (typing(ev) || document.querySelector("dialog[open]")) return;
    if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
      ev.preventDefault();
      stepResult(ev.key === "ArrowRight" ? 1 : -1);
    }
  });
  onMarks(() => lastRes && renderGrid(getState(), lastRes));
}
