// The workflows table: the server filters by status, searches by name and pages (GET /workflows
// with status_filter, name, order, skip and limit); the page never holds more than one page.

import { api } from "./api.js";
import { STATES } from "./header.js";
import { RUNNING_STATES, badge, count, duration, el, shortTime, workflowSeconds } from "./dom.js";

export class WorkflowTable {
  constructor({ header, onOpen, onError }) {
    this.header = header;
    this.onOpen = onOpen;
    this.onError = onError;
    this.body = document.querySelector("#workflows tbody");
    this.empty = document.getElementById("empty");
    this.info = document.getElementById("page-info");
    this.status = document.getElementById("status-filter");
    this.name = document.getElementById("name-search");
    this.order = document.getElementById("order");
    this.size = document.getElementById("page-size");
    this.buttons = {
      first: document.getElementById("first-page"),
      prev: document.getElementById("prev-page"),
      next: document.getElementById("next-page"),
      last: document.getElementById("last-page"),
    };
    this.page = 0;
    this.rows = [];
    // The query the rows shown answer (the fields may have changed since): what render tells.
    this.shown = { status: "", name: "", order: "desc", limit: 25, page: 0 };
    this.hasNext = false;
    this.loading = null;
    this.again = false;

    for (const state of STATES) this.status.append(el("option", { value: state, text: state }));
    const restart = () => {
      this.page = 0;
      this.refresh();
    };
    this.status.addEventListener("change", restart);
    this.order.addEventListener("change", restart);
    this.size.addEventListener("change", restart);
    // The search a pause in typing applied: a refresh meanwhile (a live event) keeps the page
    // and the search it shows, instead of taking up half-typed text that the pause would then
    // send back to the first page.
    this.search = "";
    let typing = null;
    this.name.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        this.search = this.name.value.trim();
        restart();
      }, 250);
    });
    document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
    this.buttons.first.addEventListener("click", () => this.go(0));
    this.buttons.prev.addEventListener("click", () => this.go(this.shown.page - 1));
    this.buttons.next.addEventListener("click", () => this.go(this.shown.page + 1));
    this.buttons.last.addEventListener("click", () => this.go(this.lastPage()));
  }

  get limit() {
    return Number(this.size.value);
  }

  /** Show only `status` ("" for all), from the first page. */
  filterStatus(status) {
    this.status.value = status;
    this.page = 0;
    this.refresh();
  }

  /** The number of workflows the shown query matches, when the counters know it (no search). */
  matching() {
    if (this.shown.name) return null;
    return this.header.total(this.shown.status);
  }

  lastPage() {
    const total = this.matching();
    return total === null ? this.shown.page : Math.max(0, Math.ceil(total / this.shown.limit) - 1);
  }

  go(page) {
    this.page = Math.max(0, page);
    this.refresh();
  }

  /** Load the current page; calls made while one is loading fold into one more load. */
  refresh() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = this.load()
      .catch((error) => this.onError(error))
      .finally(() => {
        this.loading = null;
        if (this.again) {
          this.again = false;
          this.refresh();
        }
      });
    return this.loading;
  }

  async load() {
    const asked = {
      status: this.status.value,
      name: this.search,
      order: this.order.value,
      limit: this.limit,
      page: this.page,
    };
    const params = new URLSearchParams({
      skip: String(asked.page * asked.limit),
      limit: String(asked.limit + 1), // one more: is there a next page?
      order: asked.order,
    });
    if (asked.status) params.set("status_filter", asked.status);
    if (asked.name) params.set("name", asked.name);
    const found = await api(`/workflows?${params}`);
    if (found.length === 0 && asked.page > 0) {
      // The page emptied (deletions, or fewer matches): step back, to the last page if known.
      this.shown = asked;
      this.page = Math.max(0, Math.min(asked.page - 1, this.lastPage()));
      return this.load();
    }
    this.shown = asked;
    this.hasNext = found.length > asked.limit;
    this.rows = found.slice(0, asked.limit);
    this.render();
  }

  /** Whether a feed event may change what this page shows. */
  concerns(event, workflowId) {
    if (this.rows.some((w) => w.workflow_id === workflowId)) return true;
    // New or changed workflows land on the page that shows the newest, or on a page not full.
    const atEdge = this.shown.order === "desc" ? this.shown.page === 0 : !this.hasNext;
    return atEdge && (event.type.startsWith("Workflow") || this.rows.length < this.shown.limit);
  }

  render() {
    this.body.replaceChildren(...this.rows.map((w) => this.row(w)));
    this.empty.hidden = this.rows.length > 0;
    const { page, limit } = this.shown;
    const first = page * limit;
    const total = this.matching();
    const range = this.rows.length
      ? `${count(first + 1)}–${count(first + this.rows.length)}`
      : "none";
    const pages = count(Math.max(1, Math.ceil((total ?? 0) / limit)));
    this.info.textContent =
      total === null
        ? `Page ${count(page + 1)} · ${range}`
        : `Page ${count(page + 1)} of ${pages} · ${range} of ${count(total)}`;
    this.buttons.first.disabled = page === 0;
    this.buttons.prev.disabled = page === 0;
    this.buttons.next.disabled = !this.hasNext;
    this.buttons.last.disabled = total === null || page >= this.lastPage();
  }

  row(w) {
    const open = (event) => {
      event.preventDefault();
      this.onOpen(w.workflow_id);
    };
    const step = w.current_step;
    let state = w.current_state;
    if (step) {
      const progress = step.progress === null ? "" : ` ${Math.round(step.progress * 100)}%`;
      const attempt = step.attempt > 1 ? `, attempt ${step.attempt}` : "";
      const doing = step.state === "COMPLETE" ? "finalizing" : "running";
      state = `${w.current_state} · ${doing}${progress}${attempt}`;
    } else if (RUNNING_STATES.has(w.status) && !w.auto_start) {
      state = `${w.current_state} · waiting for next`;
    }
    return el(
      "tr",
      { "data-id": w.workflow_id, "data-status": w.status, class: "workflow-row" },
      el(
        "td",
        { class: "name" },
        el("a", { href: `#/workflow/${w.workflow_id}`, onclick: open, text: w.name }),
      ),
      el("td", { class: "num", text: w.workflow_id }),
      el("td", { class: "status" }, badge(w.status)),
      el("td", { class: "state", text: state }),
      el("td", { class: "num retries", text: w.retries }),
      el("td", { class: "started", title: w.started_at || "", text: shortTime(w.started_at) }),
      el("td", {
        class: "num duration",
        "data-running": RUNNING_STATES.has(w.status) ? "true" : "false",
        text: duration(workflowSeconds(w)),
      }),
    );
  }

  /** Advance the durations of running workflows (once a second, without a request). */
  tick() {
    for (const row of this.body.querySelectorAll('td.duration[data-running="true"]')) {
      const id = Number(row.parentElement.dataset.id);
      const workflow = this.rows.find((w) => w.workflow_id === id);
      if (workflow) row.textContent = duration(workflowSeconds(workflow));
    }
  }
}
