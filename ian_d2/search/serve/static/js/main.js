// Wires the views to the state in the URL: each change of the state redraws what depends on it.

import { showMessage } from "./api.js";
import { initBrowse, loadSources, renderBrowse, refreshOverlays } from "./browse.js";
import { initDetail, renderDetail } from "./detail.js";
import { initIndexPanel } from "./index_panel.js";
import { initResults, markOpen, renderFilters, runSearch } from "./results.js";
import { getState, subscribe, SEARCH_KEYS } from "./state.js";

function onChange(state, changed) {
  const has = (...keys) => keys.some((k) => changed.has(k));
  if (has(...SEARCH_KEYS)) {
    renderFilters(state);
    runSearch(state).then(() => renderDetail(getState()));
  }
  if (has("src", "fi")) renderBrowse(state);
  else if (has("query")) refreshOverlays();
  if (has("open")) {
    markOpen(state);
    if (!has(...SEARCH_KEYS)) renderDetail(state);
  }
}

async function start() {
  initBrowse();
  initResults();
  initDetail();
  subscribe(onChange);
  const reload = async () => {
    await loadSources().catch(() => {});
    renderFilters(getState());
    renderBrowse(getState());
  };
  initIndexPanel(async () => {
    await reload();
    if (getState().query) showMessage("New footage is indexed: search again to include it.", "info");
  });
  await reload();
  const state = getState();
  await runSearch(state);
  renderDetail(getState());
  document.body.dataset.ready = "1"; // the page has drawn the state of its URL (tests wait on it)
}

start();
