// Same / not-same marks of results, kept in the browser (localStorage): they survive reloads and
// "find similar" hops, and the confirmed ones ("same") are exported as JSON or CSV.

import { download } from "./dom.js";

const KEY = "ian_d2.search.marks";
const listeners = [];
let marks = load();

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY)) || {};
  } catch {
    return {};
  }
}

function save() {
  try {
    localStorage.setItem(KEY, JSON.stringify(marks));
  } catch {
    /* private mode: marks last as long as the page */
  }
  for (const fn of listeners) fn();
}

export const onMarks = (fn) => listeners.push(fn);
export const markOf = (detectionId) => (marks[detectionId] ? marks[detectionId].mark : null);

/** Mark a hit "same" or "not" (the same mark again removes it). */
export function toggleMark(hit, mark) {
  if (marks[hit.detection_id] && marks[hit.detection_id].mark === mark) delete marks[hit.detection_id];
  else {
    const { detection_id, source, source_id, kind, frame, time_s, box, score, similarity } = hit;
    marks[hit.detection_id] = { mark, detection_id, source, source_id, kind, frame, time_s, box, score, similarity };
  }
  save();
}

export function clearMarks() {
  marks = {};
  save();
}

/** The confirmed hits, by source then time. */
export function confirmed() {
  return Object.values(marks)
    .filter((m) => m.mark === "same")
    .sort((a, b) => a.source.localeCompare(b.source) || (a.time_s ?? -1) - (b.time_s ?? -1));
}

const round = (v, d = 3) => (v === null || v === undefined ? null : Math.round(v * 10 ** d) / 10 ** d);

export function exportJson() {
  const rows = confirmed().map((m) => ({
    source: m.source,
    source_id: m.source_id,
    kind: m.kind,
    frame: m.frame,
    time_s: round(m.time_s),
    box: m.box.map((v) => round(v, 1)),
    similarity: round(m.similarity, 4),
    detection_id: m.detection_id,
  }));
  download("confirmed.json", JSON.stringify(rows, null, 2) + "\n", "application/json");
}

const csvCell = (v) => {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

export function exportCsv() {
  const lines = [["source", "time_s", "frame", "x1", "y1", "x2", "y2", "similarity", "detection_id"].join(",")];
  for (const m of confirmed()) {
    const row = [m.source, round(m.time_s), m.frame, ...m.box.map((v) => round(v, 1)), round(m.similarity, 4), m.detection_id];
    lines.push(row.map(csvCell).join(","));
  }
  download("confirmed.csv", lines.join("\n") + "\n", "text/csv");
}
