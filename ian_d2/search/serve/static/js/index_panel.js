// The index at a glance (counts, model, vector index) and indexing jobs: start one on files of
// the server's footage root, follow its progress by polling.

import { api, showMessage } from "./api.js";
import { $, el, fmtTime } from "./dom.js";

const POLL_JOB_MS = 1000;
const POLL_INDEX_MS = 15000; // shards appended by another process show up without a reload
let info = null;
let jobTimer = null;
let following = null; // the job id being polled
let onGrown = () => {};

/** `grown()` runs when the index gained detections (the page reloads its sources). */
export async function initIndexPanel(grown) {
  onGrown = grown;
  await refresh();
  setInterval(() => document.visibilityState === "visible" && refresh(true), POLL_INDEX_MS);
}

async function refresh(quiet = false) {
  let next;
  try {
    next = await api("/api/index", { quiet });
  } catch {
    return;
  }
  const grew = info && (next.detections !== info.detections || next.frames !== info.frames);
  info = next;
  render();
  if (grew) onGrown();
  const job = info.job;
  if (job && (job.state === "queued" || job.state === "running")) follow(job.id);
}

const short = (sha) => (sha ? sha.slice(0, 8) : "?");

function render(job = info && info.job) {
  const panel = $("index-panel");
  const m = info.model || {};
  const v = info.vector_index || {};
  const stats = el("span", { class: "stats" },
    el("b", { id: "count-detections" }, String(info.detections)), " detections · ",
    el("b", {}, String(info.sources)), ` sources (${info.videos} videos, ${info.images} photos) · `,
    el("b", {}, String(info.frames)), ` frames at ${info.fps ?? "?"} fps`);
  const model = el("span", {
    class: "muted small",
    title: `weights sha256 ${m.weights_sha256}\nconfig sha256 ${m.config_sha256}\nembedding ${info.embed_dim}-d`,
  }, `model ${m.weights || "?"} (${short(m.weights_sha256)}) · index ${v.kind || "?"}`);
  if (!$("add-footage")) panel.replaceChildren(el("span", { id: "index-stats" }), jobView(null), addForm());
  $("index-stats").replaceChildren(stats, model);
  if (!following) $("job").replaceWith(jobView(job));
}

function jobView(job) {
  if (!job) return el("span", { id: "job" });
  const running = job.state === "queued" || job.state === "running";
  const frac = job.items_total ? job.items_done / job.items_total : 0;
  const text = running
    ? `indexing ${job.items_done}/${job.items_total ?? "?"}${job.eta_s ? ` · ${fmtTime(job.eta_s)} left` : ""}`
    : `last job ${job.state}${job.errors && job.errors.length ? ` (${job.errors.length} errors)` : ""}`;
  return el("span", { id: "job", class: `job ${job.state}`, dataset: { jobId: job.id, state: job.state },
    title: (job.errors || []).join("\n") || (job.paths || []).join("\n") },
  running ? el("progress", { max: "1", value: String(frac) }) : null, text);
}

function addForm() {
  const paths = el("textarea", { id: "job-paths", rows: "3", placeholder: "paths relative to the footage root, one a line" });
  const root = el("input", { id: "job-root", type: "number", min: "0", value: "0", title: "which --footage-root" });
  const submit = async (ev) => {
    ev.preventDefault();
    const list = paths.value.split("\n").map((p) => p.trim()).filter(Boolean);
    if (!list.length) return;
    try {
      const job = await api("/api/index/jobs", { method: "POST", body: { root: Number(root.value) || 0, paths: list } });
      showMessage(`Indexing job ${job.id} queued.`, "info");
      paths.value = "";
      $("add-footage").open = false;
      follow(job.id);
    } catch {
      /* shown by api() */
    }
  };
  return el("details", { id: "add-footage", class: "add-footage" },
    el("summary", {}, "Add footage"),
    el("form", { onsubmit: submit },
      el("label", {}, "root ", root), paths, el("button", { type: "submit" }, "Index")));
}

function follow(jobId) {
  if (following === jobId) return;
  clearTimeout(jobTimer);
  following = jobId;
  const tick = async () => {
    let job;
    try {
      job = await api(`/api/index/jobs/${encodeURIComponent(jobId)}`, { quiet: true });
    } catch {
      following = null;
      return;
    }
    if (following !== jobId) return;
    const old = $("job");
    if (old) old.replaceWith(jobView(job));
    if (job.state === "queued" || job.state === "running") jobTimer = setTimeout(tick, POLL_JOB_MS);
    else {
      following = null;
      if (job.state === "failed") showMessage(`Indexing job ${job.id} failed: ${(job.errors || []).join("; ")}`);
      else showMessage(`Indexing job ${job.id} done.`, "info");
      refresh(true);
    }
  };
  tick();
}
