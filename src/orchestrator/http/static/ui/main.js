// The dashboard: wires the header, the table, the detail view, the start form and the live feed.
// Views: "#/" (the table) and "#/workflow/ID" (one workflow).

import { ApiError, api, authRequired, forgetToken, onTokenNeeded, token } from "./api.js";
import { WorkflowDetail } from "./detail.js";
import { throttle } from "./dom.js";
import { StartForm } from "./form.js";
import { Header } from "./header.js";
import { follow } from "./stream.js";
import { WorkflowTable } from "./table.js";

const $ = (id) => document.getElementById(id);

let noticeTimer = null;
function notice(text, kind = "info") {
  const box = $("notice");
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    box.hidden = true;
  }, 8000);
}

function showError(error) {
  if (error instanceof ApiError) notice(`${error.message} (${error.status} ${error.code ?? ""})`, "error");
  else notice(`Cannot reach the server: ${error.message}`, "error");
}

// The token prompt: one dialog, whoever asks.
onTokenNeeded(
  (problem) =>
    new Promise((resolve) => {
      const dialog = $("token-dialog");
      const form = $("token-form");
      const input = $("token-input");
      $("token-problem").hidden = !problem;
      $("token-problem").textContent = problem || "";
      input.value = "";
      const submit = (event) => {
        event.preventDefault();
        const value = input.value.trim();
        if (!value) return;
        form.removeEventListener("submit", submit);
        dialog.close();
        $("forget-token").hidden = false;
        resolve(value);
      };
      form.addEventListener("submit", submit);
      // The dialog cannot be dismissed without a token: nothing works without one.
      dialog.addEventListener("cancel", (event) => event.preventDefault(), { once: true });
      dialog.showModal();
      input.focus();
    }),
);
if (authRequired) {
  $("forget-token").hidden = !token();
  $("forget-token").addEventListener("click", () => {
    forgetToken();
    window.location.reload();
  });
}

const header = new Header({ onPickStatus: (status) => showList(status) });
const table = new WorkflowTable({
  header,
  onOpen: (id) => {
    window.location.hash = `#/workflow/${id}`;
  },
  onError: showError,
});
let machine = null;
const detail = new WorkflowDetail({
  machine: null,
  onError: showError,
  onNotice: (text) => notice(text),
  onDeleted: (id) => {
    notice(`Workflow ${id} deleted.`);
    window.location.hash = "#/";
  },
});
new StartForm({ onStarted: () => table.refresh(), onError: showError });

function showList(status) {
  if (status !== undefined) table.filterStatus(status);
  if (window.location.hash.startsWith("#/workflow/")) window.location.hash = "#/";
}

async function route() {
  const match = /^#\/workflow\/([0-9]+)$/.exec(window.location.hash);
  $("list-view").hidden = Boolean(match);
  $("detail-view").hidden = !match;
  if (match) {
    if (machine === null) {
      machine = await api("/state-machine");
      detail.machine = machine;
    }
    await detail.open(Number(match[1]));
  } else {
    detail.close();
    await table.refresh();
  }
}
window.addEventListener("hashchange", () => route().catch(showError));

// The feed sends an event as soon as the log holds it; the reads come from the read models,
// which apply it a moment later (more under load). Before re-reading for an event, wait until
// they have reached it (GET /health says where they are), or a read could miss it for good.
let feedPosition = 0;
let readModelPosition = 0;
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function readModelsReached() {
  const wanted = feedPosition;
  for (let attempt = 1; readModelPosition < wanted && attempt <= 30; attempt += 1) {
    try {
      const health = await api("/health");
      readModelPosition = Math.max(readModelPosition, Number(health.projection_position) || 0);
    } catch {
      return; // degraded or away: read what there is
    }
    if (readModelPosition < wanted) await pause(Math.min(50 * attempt, 500));
  }
}

function afterReadModels(read) {
  return () => readModelsReached().then(read);
}

const refreshStats = throttle(
  afterReadModels(() => header.loadStats().then(() => table.render()).catch(showError)),
  1000,
);
const refreshTable = throttle(afterReadModels(() => table.refresh()), 400);
const refreshDetail = throttle(afterReadModels(() => detail.refresh()), 300);

function onEvent(event) {
  feedPosition = Math.max(feedPosition, event.position);
  const match = /^workflow-([0-9]+)$/.exec(event.stream_id);
  if (!match) return;
  const id = Number(match[1]);
  if (header.onEvent(event)) refreshStats();
  if (!$("list-view").hidden && table.concerns(event, id)) refreshTable();
  if (detail.onEvent(event)) refreshDetail();
}

async function loadAll() {
  await Promise.all([
    header.loadStats(),
    header.loadActivity(),
    $("detail-view").hidden ? table.refresh() : detail.refresh(),
  ]);
  table.render();
}

const connection = $("connection");
follow({
  onEvent,
  onState: (state) => {
    connection.dataset.state = state;
    connection.textContent = state === "live" ? "live" : `${state}…`;
  },
  onOpen: ({ first }) => {
    // First connect: load the view the address names; later ones (after a restart, say):
    // reload what is shown, whatever the feed replays.
    const loading = first
      ? Promise.all([header.loadStats(), header.loadActivity(), route()]).then(() => table.render())
      : loadAll();
    loading.catch(showError);
  },
});

// The chart's minutes move on, and running workflows' durations grow, without any event.
setInterval(() => table.tick(), 1000);
setInterval(() => header.renderChart(), 15000);
setInterval(() => header.loadActivity().catch(() => {}), 60000);
