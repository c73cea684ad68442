// The page's state lives in the URL hash (reload-safe, shareable, back/forward work):
//   #q=d:<detection id>            a stored detection
//   #q=f:<frame id>@x1,y1,x2,y2     a box drawn on an indexed frame
//   #q=u:<upload id>@x1,y1,x2,y2    a box drawn on an uploaded image (lives as long as the server)
//   &sources=<id>,<id>&tmin=&tmax=&score=&sim=&group=source_window|tracks&win=10&k=20&page=0
//   &open=<detection id>  the opened result;  &src=<source id>&fi=<frame index>  the browsed frame

export const DEFAULTS = Object.freeze({
  query: null,
  sources: [],
  time_min: null,
  time_max: null,
  min_score: null,
  min_similarity: null,
  group: "none",
  window_s: 10,
  top_k: 20,
  page: 0,
  open: null,
  src: null,
  fi: 0,
});

/** Keys whose change asks for a new search. */
export const SEARCH_KEYS = [
  "query", "sources", "time_min", "time_max", "min_score", "min_similarity",
  "group", "window_s", "top_k", "page",
];

const num = (v) => (v === null || v === "" || v === undefined || !isFinite(Number(v)) ? null : Number(v));
const fmtBox = (box) => box.map((v) => Math.round(v * 10) / 10).join(",");

export function encodeQuery(q) {
  if (!q) return null;
  if (q.detection_id) return `d:${q.detection_id}`;
  if (q.frame_id) return `f:${q.frame_id}@${fmtBox(q.box)}`;
  if (q.upload_id) return `u:${q.upload_id}@${fmtBox(q.box)}`;
  return null;
}

export function decodeQuery(text) {
  if (!text) return null;
  const kind = text.slice(0, 2);
  const rest = text.slice(2);
  if (kind === "d:") return { detection_id: rest };
  const at = rest.lastIndexOf("@");
  if (at < 0) return null;
  const box = rest.slice(at + 1).split(",").map(Number);
  if (box.length !== 4 || box.some((v) => !isFinite(v))) return null;
  if (kind === "f:") return { frame_id: rest.slice(0, at), box };
  if (kind === "u:") return { upload_id: rest.slice(0, at), box };
  return null;
}

export function parseHash(hash) {
  const p = new URLSearchParams(hash.replace(/^#/, ""));
  const s = { ...DEFAULTS };
  s.query = decodeQuery(p.get("q"));
  s.sources = (p.get("sources") || "").split(",").filter(Boolean);
  s.time_min = num(p.get("tmin"));
  s.time_max = num(p.get("tmax"));
  s.min_score = num(p.get("score"));
  s.min_similarity = num(p.get("sim"));
  s.group = ["source_window", "tracks"].includes(p.get("group")) ? p.get("group") : "none";
  s.window_s = num(p.get("win")) ?? DEFAULTS.window_s;
  s.top_k = Math.min(500, Math.max(1, num(p.get("k")) ?? DEFAULTS.top_k));
  s.page = Math.max(0, Math.floor(num(p.get("page")) ?? 0));
  s.open = p.get("open") || null;
  s.src = p.get("src") || null;
  s.fi = Math.max(0, Math.floor(num(p.get("fi")) ?? 0));
  return s;
}

export function toHash(s) {
  const p = new URLSearchParams();
  const put = (key, value) => {
    if (value !== null && value !== undefined && value !== "") p.set(key, String(value));
  };
  put("q", encodeQuery(s.query));
  if (s.sources.length) p.set("sources", s.sources.join(","));
  put("tmin", s.time_min);
  put("tmax", s.time_max);
  put("score", s.min_score);
  put("sim", s.min_similarity);
  if (s.group !== "none") {
    p.set("group", s.group);
    if (s.group === "source_window") put("win", s.window_s);
  }
  if (s.top_k !== DEFAULTS.top_k) put("k", s.top_k);
  if (s.page) put("page", s.page);
  put("open", s.open);
  put("src", s.src);
  if (s.src && s.fi) put("fi", s.fi);
  const text = p.toString();
  return text ? `#${text}` : "";
}

/** The request body of POST /api/search for a state. */
export function searchBody(s) {
  return {
    query: s.query,
    filters: {
      sources: s.sources.length ? s.sources : null,
      time_min: s.time_min,
      time_max: s.time_max,
      min_score: s.min_score,
      min_similarity: s.min_similarity,
    },
    top_k: s.top_k,
    offset: s.page * s.top_k,
    group: s.group,
    window_s: s.window_s,
  };
}

let current = parseHash(location.hash);
const listeners = [];

export const getState = () => current;

/** Listen to state changes: `fn(state, changedKeys: Set)`. */
export function subscribe(fn) {
  listeners.push(fn);
}

function changedKeys(a, b) {
  return new Set(Object.keys(DEFAULTS).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])));
}

/**
 * Merge `patch` into the state and write the URL (`push`: a new history entry, for a new query
 * or an opened result; else replace). Listeners hear about the keys that changed.
 */
export function setState(patch, { push = false } = {}) {
  const next = { ...current, ...patch };
  const changed = changedKeys(current, next);
  if (!changed.size) return;
  current = next;
  const url = `${location.pathname}${location.search}${toHash(next)}`;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
  for (const fn of listeners) fn(current, changed);
}

// back / forward / an edited URL
window.addEventListener("popstate", () => {
  const next = parseHash(location.hash);
  const changed = changedKeys(current, next);
  current = next;
  if (changed.size) for (const fn of listeners) fn(current, changed);
});
