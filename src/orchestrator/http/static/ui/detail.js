// One workflow: its state machine, transitions, task results, error, raw events, time travel
// (GET /workflow/{id}?at_version=N) and the actions allowed now (next, retry, cancel, delete).

import { ApiError, api } from "./api.js";
import { badge, duration, el, fullTime, secondsBetween, shortTime } from "./dom.js";
import { drawMachine } from "./machine.js";

const ACTIONS = ["next", "retry", "cancel", "delete"];
// What the result entries carry besides the task's own result (the original worker's wrapper).
const WRAPPER_KEYS = new Set(["success", "result", "task_type"]);

const $ = (id) => document.getElementById(id);

export class WorkflowDetail {
  constructor({ machine, onError, onNotice, onDeleted }) {
    this.machine = machine;
    this.onError = onError;
    this.onNotice = onNotice;
    this.onDeleted = onDeleted;
    this.id = null;
    this.current = null; // the workflow now
    this.shown = null; // what is drawn: now, or as of the travel version
    this.events = [];
    this.travel = null; // the version travelled to, or null for now
    this.busy = false;
    this.gone = false;
    this.loading = null;
    this.again = false;
    this.armedDelete = null;

    for (const button of $("actions").querySelectorAll("button")) {
      button.addEventListener("click", () => this.act(button.dataset.action, button));
    }
    const slider = $("travel-version");
    let moving = null;
    slider.addEventListener("input", () => {
      $("travel-label").textContent = `${slider.value} / ${slider.max}`;
      clearTimeout(moving);
      moving = setTimeout(() => this.travelTo(Number(slider.value)), 120);
    });
    $("travel-now").addEventListener("click", () => this.travelTo(null));
  }

  /** Show workflow `id` (loads it). */
  async open(id) {
    this.id = id;
    this.current = null;
    this.shown = null;
    this.events = [];
    this.travel = null;
    this.gone = false;
    $("machine").replaceChildren();
    $("detail-name").textContent = `Workflow ${id}`;
    $("detail-id").textContent = `#${id}`;
    await this.refresh();
  }

  close() {
    this.id = null;
  }

  /** Reload the workflow and its events; calls made while loading fold into one more. */
  refresh() {
    if (this.id === null || this.gone) return Promise.resolve();
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
    const id = this.id;
    let workflow;
    let events;
    try {
      [workflow, events] = await Promise.all([
        api(`/workflow/${id}`),
        api(`/workflow/${id}/events`),
      ]);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return this.showGone();
      throw error;
    }
    if (id !== this.id) return;
    this.current = workflow;
    this.events = events;
    if (this.travel === null) this.shown = workflow;
    this.render();
  }

  /** A feed event of any stream: true if it was this workflow's (and it was applied). */
  onEvent(event) {
    if (this.id === null || event.stream_id !== `workflow-${this.id}`) return false;
    if (event.type === "WorkflowDeleted") {
      this.showGone();
      return true;
    }
    if (!this.events.some((e) => e.position === event.position)) {
      this.events.push(event);
      this.renderEvents();
    }
    return true;
  }

  showGone() {
    this.gone = true;
    $("detail-status").replaceChildren(badge("DELETED"));
    $("detail-description").textContent = "This workflow was deleted; its events remain in the log.";
    for (const button of $("actions").querySelectorAll("button")) button.disabled = true;
  }

  async travelTo(version) {
    if (this.current === null) return;
    if (version === null || version >= this.current.version) {
      this.travel = null;
      this.shown = this.current;
    } else {
      const id = this.id;
      const then = await api(`/workflow/${id}?at_version=${version}`).catch((error) => {
        this.onError(error);
        return null;
      });
      if (then === null || id !== this.id) return;
      this.travel = version;
      this.shown = then;
    }
    this.render();
  }

  async act(action, button) {
    if (this.current === null || this.busy) return;
    if (action === "delete" && this.armedDelete === null) {
      // A second click confirms: no native dialog, which a test or a busy user may miss.
      button.textContent = "Confirm delete";
      button.classList.add("armed");
      this.armedDelete = setTimeout(() => this.disarmDelete(), 4000);
      return;
    }
    this.disarmDelete();
    const id = this.id;
    const paths = {
      next: [`/workflow/${id}/next`, "POST"],
      retry: [`/workflow/${id}/retry`, "POST"],
      cancel: [`/workflow/${id}/cancel`, "POST"],
      delete: [`/workflow/${id}`, "DELETE"],
    };
    const [path, method] = paths[action];
    this.busy = true;
    this.renderActions();
    try {
      const answer = await api(path, { method });
      if (action === "delete") {
        this.showGone();
        this.onDeleted(id);
        return;
      }
      this.onNotice(answer.message || `${action}: done`);
      await this.refresh();
    } catch (error) {
      this.onError(error);
    } finally {
      this.busy = false;
      this.renderActions();
    }
  }

  disarmDelete() {
    if (this.armedDelete !== null) clearTimeout(this.armedDelete);
    this.armedDelete = null;
    const button = $("actions").querySelector('[data-action="delete"]');
    button.textContent = "Delete";
    button.classList.remove("armed");
  }

  render() {
    const w = this.shown;
    const now = this.current;
    $("detail-name").textContent = now.name;
    $("detail-id").textContent = `#${now.workflow_id}`;
    $("detail-status").replaceChildren(badge(w.status));
    $("detail-description").textContent = w.description || "";
    const error = $("detail-error");
    error.hidden = !w.error_message;
    error.textContent = w.error_message ? `Error: ${w.error_message}` : "";
    this.renderStep(w);
    this.renderActions();
    this.renderTravel();
    if (this.machine) $("machine").replaceChildren(drawMachine(this.machine, w));
    this.renderFacts(w);
    this.renderTimeline(w);
    this.renderResults(w);
    this.renderEvents();
  }

  renderStep(w) {
    const box = $("detail-step");
    const step = w.current_step;
    box.hidden = !step;
    if (!step) return;
    const parts = [`${step.state}: task ${step.task ?? "?"} running`, `attempt ${step.attempt}`];
    if (step.progress !== null) parts.push(`${Math.round(step.progress * 100)}%`);
    if (step.progress_note) parts.push(step.progress_note);
    if (step.next_attempt_at) parts.push(`next attempt ${shortTime(step.next_attempt_at)}`);
    const bar = el("progress", { max: 1, value: step.progress ?? 0 });
    box.replaceChildren(el("span", { text: parts.join(" · ") }), bar);
  }

  renderActions() {
    const allowed = new Set(this.current && this.travel === null ? this.current.allowed_actions : []);
    for (const action of ACTIONS) {
      const button = $("actions").querySelector(`[data-action="${action}"]`);
      button.disabled = this.busy || this.gone || !allowed.has(action);
      button.title = allowed.has(action) ? "" : `${action} is not allowed now`;
    }
  }

  renderTravel() {
    const slider = $("travel-version");
    const version = this.current.version;
    slider.max = String(Math.max(1, version));
    slider.value = String(this.travel ?? version);
    slider.disabled = version <= 1;
    $("travel-label").textContent = `${slider.value} / ${version}`;
    $("travel-now").disabled = this.travel === null;
    const banner = $("travel-banner");
    banner.hidden = this.travel === null;
    if (this.travel !== null) {
      const event = this.events.find((e) => e.version === this.travel);
      const what = event ? ` (after ${event.type} at ${fullTime(event.recorded_at)})` : "";
      banner.textContent = `Showing the workflow as it was at version ${this.travel} of ${version}${what}.`;
    }
  }

  renderFacts(w) {
    const facts = [
      ["Status", w.status],
      ["Current state", w.current_state],
      ["Mode", w.auto_start ? "automatic" : "manual"],
      ["Retries", String(w.retries)],
      ["Version", String(w.version)],
      ["Created", fullTime(w.created_at)],
      ["Started", fullTime(w.started_at)],
      ["Completed", fullTime(w.completed_at)],
      ["Next trigger", w.next_trigger ?? "—"],
      ["Config", JSON.stringify(w.config)],
    ];
    $("facts").replaceChildren(
      ...facts.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]),
    );
  }

  renderTimeline(w) {
    let previous = w.started_at || w.created_at;
    const rows = w.transitions.map((t) => {
      const spent = secondsBetween(previous, t.timestamp);
      previous = t.timestamp;
      return el(
        "tr",
        { "data-to": t.to_state },
        el("td", { title: t.timestamp, text: fullTime(t.timestamp) }),
        el("td", {}, badge(t.from_state)),
        el("td", {}, badge(t.to_state)),
        el(
          "td",
          {},
          t.trigger,
          t.transition_metadata?.error ? el("div", { class: "reason", text: t.transition_metadata.error }) : null,
        ),
        el("td", { class: "num", text: duration(spent) }),
      );
    });
    $("timeline").tBodies[0].replaceChildren(...rows);
  }

  renderResults(w) {
    const entries = Object.entries(w.task_results);
    if (!entries.length) {
      $("results").replaceChildren(el("p", { class: "muted", text: "No task has finished yet." }));
      return;
    }
    $("results").replaceChildren(
      ...entries.map(([state, entry]) => {
        const own =
          entry.result && typeof entry.result === "object"
            ? entry.result
            : Object.fromEntries(Object.entries(entry).filter(([k]) => !WRAPPER_KEYS.has(k)));
        const task = entry.task_type ? ` (${entry.task_type})` : "";
        return el(
          "div",
          { class: "result", "data-state": state },
          el("h4", {}, badge(state), task),
          el("pre", { text: JSON.stringify(own, null, 2) }),
        );
      }),
    );
  }

  renderEvents() {
    const upTo = this.travel ?? Infinity;
    const sorted = [...this.events].sort((a, b) => a.version - b.version);
    $("events-count").textContent = `(${sorted.length})`;
    $("events").tBodies[0].replaceChildren(
      ...sorted.map((e) =>
        el(
          "tr",
          { class: e.version > upTo ? "later" : "", "data-version": e.version },
          el("td", { class: "num", text: e.version }),
          el("td", { class: "num", text: e.position }),
          el("td", { text: e.type }),
          el("td", { title: e.recorded_at, text: fullTime(e.recorded_at) }),
          el(
            "td",
            { class: "payload" },
            el(
              "details",
              {},
              el("summary", { text: summary(e.data) }),
              el("pre", { text: JSON.stringify(e.data, null, 2) }),
            ),
          ),
        ),
      ),
    );
  }
}

function summary(data) {
  const text = JSON.stringify(data);
  return text.length > 90 ? `${text.slice(0, 87)}…` : text;
}
